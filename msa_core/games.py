"""Games: callables mapping a ``[C, N]`` bool coalition matrix to ``[C, *out]`` values.

``Game`` is the base class for games that know their players and output shape; any plain callable
can be wrapped with ``as_game``. ``AdditiveGame`` and ``UnanimityGame`` have closed-form Shapley
values and serve as ground truth in tests and benchmarks.

>>> import numpy as np
>>> game = AdditiveGame(np.array([[1.0, 0.0], [2.0, 5.0]]))
>>> game(np.array([[True, False], [True, True]])).tolist()
[[1.0, 0.0], [3.0, 5.0]]
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from msa_core.checks import is_int
from msa_core.coalitions import check_coalitions
from msa_core.errors import MSAInputError


class Game(ABC):
    """A cooperative game over ``n_players`` units whose value is a tensor of shape
    ``output_shape``.

    Subclasses implement ``evaluate(coalitions [C, N] bool) -> values [C, *out]``; calling the game
    checks the coalition matrix first.
    """

    n_players: int
    player_names: list[str]
    output_shape: tuple[int, ...] | None = None  # None until known (e.g. after a forward pass)

    def __call__(self, coalitions: np.ndarray) -> Any:
        return self.evaluate(check_coalitions(coalitions, self.n_players))

    @abstractmethod
    def evaluate(self, coalitions: np.ndarray) -> Any:
        """Values ``[C, *out]`` (numpy array or torch tensor) of a checked bool ``[C, N]``
        matrix."""


class FunctionGame(Game):
    """Wrap a plain callable ``fn(coalitions [C, N] bool) -> values [C, *out]`` as a ``Game``."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        n_players: int,
        player_names: Sequence[str] | None = None,
    ):
        self.fn = fn
        self.n_players = check_n_players(n_players)
        self.player_names = default_player_names(self.n_players, player_names)

    def evaluate(self, coalitions: np.ndarray) -> Any:
        return self.fn(coalitions)


class GameFactory:
    """A picklable recipe ``build() -> game`` (a ``Game`` or a callable with ``n_players`` given to
    the run).

    What a distributed backend ships to its workers instead of the game: a game holding a large
    model is built once per worker. ``msa_core.zoo.recipe.ZooGame`` is the recipe of a bundled
    model's game.
    """

    def __init__(self, build: Callable[[], Any]):
        self._build = build

    def build(self) -> Any:
        """The game, built in this process."""
        return self._build()


def check_n_players(n_players: object) -> int:
    """``n_players`` as an int >= 1, or a clear error."""
    if not is_int(n_players) or n_players < 1:
        raise MSAInputError(f"n_players must be an integer >= 1; got {n_players!r}")
    return int(n_players)


def default_player_names(n_players: int, names: Sequence[str] | None) -> list[str]:
    """``names`` as a list of ``n_players`` strings, defaulting to ``u0, u1, ...``."""
    if names is None:
        return [f"u{i}" for i in range(n_players)]
    names = [str(name) for name in names]
    if len(names) != n_players:
        raise MSAInputError(
            f"player_names has {len(names)} entries but the game has {n_players} players"
        )
    return names


def as_game(game: object, n_players: int | None = None) -> Game:
    """A ``Game`` from a ``Game`` or a bare callable (which then needs ``n_players``)."""
    if isinstance(game, Game):
        if n_players is not None and check_n_players(n_players) != game.n_players:
            raise MSAInputError(
                f"n_players={n_players} contradicts the game, which has {game.n_players} players"
            )
        return game
    if not callable(game):
        raise MSAInputError(
            "game must be callable (coalitions [C, N] bool -> values [C, *out]); got "
            f"{type(game).__name__}"
        )
    if n_players is None:
        raise MSAInputError(
            "n_players is required when the game is a bare callable (it has no n_players attribute)"
        )
    return FunctionGame(game, n_players, getattr(game, "player_names", None))


def values_as_array(
    raw: Any, n_coalitions: int, output_shape: tuple[int, ...] | None
) -> np.ndarray:
    """A game's values as a finite float32/float64 numpy array ``[C, *out]``, or a clear error.

    float32 and float64 keep their precision (estimators accumulate in float64); other real types
    become float64. ``output_shape`` is the shape seen on earlier calls (None on the first call).
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(raw, torch.Tensor):
        raw = raw.detach()
        if raw.dtype not in (torch.float32, torch.float64):
            raw = raw.to(torch.float64)
        raw = raw.cpu().numpy()
    elif not isinstance(raw, np.ndarray):
        raise MSAInputError(
            "the game must return a numpy array or torch tensor of shape [C, *out] with C = "
            f"{n_coalitions}; got {type(raw).__name__}"
        )
    if raw.dtype.kind not in "biuf":
        raise MSAInputError(f"game values must be real numbers; got dtype {raw.dtype}")
    if raw.ndim < 1 or raw.shape[0] != n_coalitions:
        raise MSAInputError(
            f"the game returned values of shape {list(raw.shape)} for {n_coalitions} coalitions; "
            f"the leading dimension must be the number of coalitions ({n_coalitions})"
        )
    if output_shape is not None and raw.shape[1:] != output_shape:
        raise MSAInputError(
            f"the game returned values of per-coalition shape {list(raw.shape[1:])} but earlier "
            f"calls returned {list(output_shape)}; every call must return the same output shape"
        )
    values = raw if raw.dtype in (np.float32, np.float64) else raw.astype(np.float64)
    # finite row sums mean finite values (one read, no temporary; einsum's sum, several times
    # faster than a reduction and, unlike a BLAS product, never threaded); only an inf/NaN sum
    # needs the check of every element (a sum of finite values can overflow)
    flat = values.reshape(n_coalitions, -1)
    if (
        flat.size
        and not np.isfinite(np.einsum("ij->i", flat)).all()
        and not (np.isfinite(values).all())
    ):
        bad = np.flatnonzero(~np.isfinite(values.reshape(n_coalitions, -1)).all(axis=1))
        raise MSAInputError(
            f"the game returned NaN or inf for {bad.size} of {n_coalitions} coalitions "
            f"(first at row {bad[0]} of this batch); values must be finite"
        )
    return values


class AdditiveGame(Game):
    """v(S) = baseline + sum of ``weights[i]`` over intact units i; Shapley modes = ``weights``.

    weights: ``[N, *out]``; baseline: ``[*out]`` (default 0).
    """

    output_shape: tuple[int, ...]

    def __init__(self, weights: np.ndarray, baseline: np.ndarray | float = 0.0):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.n_players = self.weights.shape[0]
        self.player_names = default_player_names(self.n_players, None)
        self.output_shape = self.weights.shape[1:]
        self.baseline = np.broadcast_to(np.asarray(baseline, dtype=np.float64), self.output_shape)

    def evaluate(self, coalitions: np.ndarray) -> np.ndarray:
        flat = self.weights.reshape(self.n_players, -1)
        return (self.baseline.reshape(-1) + coalitions @ flat).reshape(-1, *self.output_shape)

    def shapley_values(self) -> np.ndarray:
        """Closed-form modes ``[N, *out]``."""
        return self.weights.copy()


class UnanimityGame(Game):
    """A sum of unanimity games: v(S) = sum over terms t of ``coefficients[t]`` if ``supports[t]``
    is in S.

    supports: bool ``[T, N]`` (each row a non-empty set of units); coefficients: ``[T, *out]``.
    Every game is such a sum (its Harsanyi dividends), so sparse ones are realistic ground truth.
    Closed form: unit i's mode is the sum of ``coefficients[t] / |support t|`` over terms containing
    i.
    """

    output_shape: tuple[int, ...]

    def __init__(self, supports: np.ndarray, coefficients: np.ndarray):
        self.supports = np.asarray(supports, dtype=bool)
        self.coefficients = np.asarray(coefficients, dtype=np.float64)
        if self.supports.ndim != 2 or not self.supports.any(axis=1).all():
            raise MSAInputError("supports must be a bool [T, N] matrix whose rows are non-empty")
        if self.coefficients.shape[0] != self.supports.shape[0]:
            raise MSAInputError(
                f"coefficients has {self.coefficients.shape[0]} rows but supports has "
                f"{self.supports.shape[0]}"
            )
        self.n_players = self.supports.shape[1]
        self.player_names = default_player_names(self.n_players, None)
        self.output_shape = self.coefficients.shape[1:]
        self._sizes = self.supports.sum(axis=1)

    def evaluate(self, coalitions: np.ndarray) -> np.ndarray:
        # term t is active in S iff |S ∩ T| == |T|
        active = (coalitions.astype(np.int32) @ self.supports.T.astype(np.int32)) == self._sizes
        flat = self.coefficients.reshape(len(self.coefficients), -1)
        return (active.astype(np.float64) @ flat).reshape(-1, *self.output_shape)

    def shapley_values(self) -> np.ndarray:
        """Closed-form modes ``[N, *out]``."""
        flat = self.coefficients.reshape(len(self.coefficients), -1)
        shares = self.supports.T.astype(np.float64) / self._sizes  # [N, T]
        return (shares @ flat).reshape(self.n_players, *self.output_shape)

    def pair_interactions(self) -> np.ndarray:
        """Closed-form Shapley interaction modes ``[N, N, *out]`` (zero diagonal): pair i, j gets
        the sum of ``coefficients[t] / (|support t| - 1)`` over the terms holding both."""
        flat = self.coefficients.reshape(len(self.coefficients), -1)
        both = self.supports.astype(np.float64)
        shares = np.where(self._sizes > 1, 1.0 / np.maximum(self._sizes - 1, 1), 0.0)  # [T]
        pairs = np.einsum("ti,tj,t,td->ijd", both, both, shares, flat)
        pairs[np.arange(self.n_players), np.arange(self.n_players)] = 0.0
        return pairs.reshape(self.n_players, self.n_players, *self.output_shape)

    @classmethod
    def random(
        cls,
        n_players: int,
        n_terms: int,
        max_order: int,
        output_shape: tuple[int, ...] = (),
        seed: int = 0,
    ) -> UnanimityGame:
        """A random sparse sum: ``n_terms`` supports of sizes 1..max_order, Gaussian
        coefficients."""
        rng = np.random.default_rng(seed)
        orders = rng.integers(1, max_order + 1, size=n_terms)
        supports = np.zeros((n_terms, n_players), dtype=bool)
        for t, order in enumerate(orders):
            supports[t, rng.choice(n_players, size=order, replace=False)] = True
        return cls(supports, rng.normal(size=(n_terms, *output_shape)))
