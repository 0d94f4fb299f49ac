"""``ModesResult``: Shapley modes of every unit, their standard errors, and how they were
obtained."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from msa_core.errors import MSAInputError

NPZ_KEYS = ("modes", "stderr", "v_full", "v_empty", "player_names", "meta")
SCORE_STDERR_KEY = "score_stderr"  # optional: results saved before it existed lack it


def interval_multiplier(dof: float | None, level: float = 0.95) -> float:
    """Half-width of a two-sided ``level`` interval in standard errors.

    Student-t with ``dof`` degrees of freedom; the normal quantile for None.

    >>> round(interval_multiplier(None), 3), round(interval_multiplier(15), 3)
    (1.96, 2.131)
    """
    from scipy.stats import norm, t  # scipy comes with scikit-learn; imported only where needed

    upper = 0.5 + level / 2
    return float(norm.ppf(upper) if dof is None else t.ppf(upper, dof))


@dataclass
class ModesResult:
    """Shapley modes ``[N, *out]`` with their standard errors and the end values ``[*out]``.

    ``n_evaluations`` counts the coalitions whose values entered the result (full and empty
    included); ``n_permutations`` is 0 for methods that do not sample permutations.
    ``score_stderr`` ``[N]``: the standard error of each unit's mode averaged over every output
    element (its Shapley value for the mean output, the score ``analysis.ranking`` ranks by), from
    the estimator's own variance of that mean; None where the run did not record it (results saved
    before it existed, interaction runs): readers then bound it by the mean of the elements'
    standard errors (``score_stderr_or_bound``).
    """

    modes: np.ndarray
    stderr: np.ndarray
    v_full: np.ndarray
    v_empty: np.ndarray
    n_evaluations: int
    n_permutations: int
    player_names: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    score_stderr: np.ndarray | None = None

    @property
    def n_players(self) -> int:
        return self.modes.shape[0]

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.modes.shape[1:]

    def interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided confidence interval ``(low, high)``, each ``[N, *out]``, at 0 < ``level`` < 1.

        ``modes +- q * stderr`` with q the Student-t quantile for ``meta["stderr_dof"]`` degrees
        of freedom, or the normal quantile where that is None or absent (results saved before it
        existed).

        Raises:
            MSAInputError: ``level`` outside (0, 1).
        """
        if not 0 < level < 1:
            raise MSAInputError(f"level must lie strictly between 0 and 1; got {level!r}")
        half = interval_multiplier(self.meta.get("stderr_dof"), level) * self.stderr
        return self.modes - half, self.modes + half

    def score_stderr_or_bound(self) -> tuple[np.ndarray, bool]:
        """``(stderr [N], is_bound)``: the recorded ``score_stderr``, or, where the run recorded
        none, the mean of each unit's elements' standard errors (an upper bound: the standard
        deviation of a mean is at most the mean of the standard deviations), ``is_bound`` True.
        A single output's standard error is its score's, never a bound."""
        if self.score_stderr is not None:
            return np.asarray(self.score_stderr, dtype=float), False
        errors = np.asarray(self.stderr, dtype=float).reshape(self.n_players, -1)
        return errors.mean(axis=1), errors.shape[1] > 1

    def efficiency_gap(self) -> float:
        """Largest absolute deviation of ``modes.sum(0)`` from ``v_full - v_empty``."""
        return float(
            np.max(np.abs(self.modes.sum(axis=0) - (self.v_full - self.v_empty)), initial=0.0)
        )

    def save(self, path: str | Path | BinaryIO) -> None:
        """Write the ``.npz`` of DESIGN.md (meta as a JSON string, counts inside meta)."""
        meta = {
            **self.meta,
            "n_evaluations": self.n_evaluations,
            "n_permutations": self.n_permutations,
        }
        arrays: dict[str, Any] = {  # (Any: numpy types savez_compressed by keyword)
            "modes": self.modes,
            "stderr": self.stderr,
            "v_full": self.v_full,
            "v_empty": self.v_empty,
            "player_names": np.array(self.player_names, dtype=str),
            "meta": np.array(json.dumps(meta)),
        }
        if self.score_stderr is not None:
            arrays[SCORE_STDERR_KEY] = self.score_stderr
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> ModesResult:
        """Read a result written by ``save`` (no pickle is ever loaded)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [key for key in NPZ_KEYS if key not in data.files]
                if missing:
                    raise MSAInputError(
                        f"{path} is not an MSA result: it lacks {missing}; expected keys "
                        f"{list(NPZ_KEYS)}"
                    )
                keys = (*NPZ_KEYS, SCORE_STDERR_KEY)
                arrays = {key: data[key] for key in keys if key in data.files}
        except (OSError, ValueError) as err:
            if isinstance(err, MSAInputError):
                raise
            raise MSAInputError(f"cannot read {path} as an MSA result .npz: {err}") from err
        try:
            meta = json.loads(str(arrays["meta"]))
        except ValueError as err:
            raise MSAInputError(f"{path} has unreadable meta data: {err}") from err
        problem = inconsistency(arrays, meta)
        if problem:
            raise MSAInputError(f"{path} is not a consistent MSA result: {problem}")
        return cls(
            modes=arrays["modes"],
            stderr=arrays["stderr"],
            v_full=arrays["v_full"],
            v_empty=arrays["v_empty"],
            n_evaluations=int(meta.pop("n_evaluations", 0)),
            n_permutations=int(meta.pop("n_permutations", 0)),
            player_names=[str(name) for name in arrays["player_names"]],
            meta=meta,
            score_stderr=arrays.get(SCORE_STDERR_KEY),
        )


def inconsistency(arrays: dict[str, np.ndarray], meta: Any) -> str | None:
    """What is wrong with the arrays and meta of a result ``.npz`` (None when they fit together).

    Args:
        arrays: ``modes [N, *out]``, ``stderr [N, *out]``, ``v_full [*out]``, ``v_empty [*out]``,
            ``player_names [N]``, optionally ``score_stderr [N]``.
        meta: the decoded ``meta`` JSON.
    """
    modes, names = arrays["modes"], arrays["player_names"]
    for key in ("modes", "stderr", "v_full", "v_empty"):
        if arrays[key].dtype.kind not in "fiu":
            return f"{key} has dtype {arrays[key].dtype}; expected real numbers"
    if modes.ndim < 1 or modes.shape[0] < 1:
        return f"modes has shape {list(modes.shape)}; expected [N >= 1 players, *out]"
    if arrays["stderr"].shape != modes.shape:
        return f"stderr has shape {list(arrays['stderr'].shape)} but modes {list(modes.shape)}"
    for key in ("v_full", "v_empty"):
        if arrays[key].shape != modes.shape[1:]:
            return (
                f"{key} has shape {list(arrays[key].shape)}; expected the output shape "
                f"{list(modes.shape[1:])}"
            )
    if names.ndim != 1 or names.shape[0] != modes.shape[0] or names.dtype.kind not in "U":
        return (
            f"player_names has shape {list(names.shape)} ({names.dtype}); expected "
            f"{modes.shape[0]} names"
        )
    score_stderr = arrays.get(SCORE_STDERR_KEY)
    if score_stderr is not None and (
        score_stderr.dtype.kind not in "fiu" or score_stderr.shape != modes.shape[:1]
    ):
        return (
            f"score_stderr has shape {list(score_stderr.shape)} ({score_stderr.dtype}); expected "
            f"{modes.shape[0]} real numbers"
        )
    if not isinstance(meta, dict):
        return "meta is not a JSON object"
    for key in ("n_evaluations", "n_permutations"):
        count = meta.get(key, 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return f"meta {key} is {count!r}; expected a whole number >= 0"
    return None
