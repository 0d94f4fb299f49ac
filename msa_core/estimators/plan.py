"""The run plan: which estimator runs, on what budget, and whether a saved state can resume it.

``RunPlan.make`` checks a request (method, budget, seed) against the game's number of players before
anything is evaluated; ``RunPlan.for_outputs`` settles ``auto``'s last choice once the size of one
coalition's value is known. One plan serves both kinds of run: the Shapley modes of every player
(``RunPlan.make``) and the pairwise interactions among chosen ``players``
(``RunPlan.make_interactions``); ``dispatch`` plays either through the same stages. A checkpoint's
state is a flat dict of numpy arrays: ``run.*`` (which
run wrote it and how far it got) and ``est.*`` (the estimator's running sums). This module is the
only one that reads or writes those keys: ``RunPlan.state`` writes a state, ``CheckpointSummary.of``
reads one, ``RunPlan.resume`` reads one and checks that this run may continue from it.

New estimators register in ``ESTIMATORS`` (one entry each).

>>> plan = RunPlan.make("auto", n_players=4, n_permutations=None, max_evaluations=None, seed=0)
>>> plan.method, plan.budget, plan.estimator_class.__name__
('exact', 16, 'ExactEstimator')
>>> RunPlan.make("auto", 30, 10, None, seed=0).budget  # 2 + 10 permutations x 29 evaluations
292
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from msa_core.checks import check_method, check_positive_int, is_int
from msa_core.errors import MSAInputError
from msa_core.estimators.antithetic import AntitheticEstimator
from msa_core.estimators.base import Estimator
from msa_core.estimators.checkpoint import State
from msa_core.estimators.exact import EXACT_MAX_PLAYERS, ExactEstimator
from msa_core.estimators.gradient import GradientControlEstimator
from msa_core.estimators.kernel import KernelEstimator
from msa_core.estimators.leverage import LeverageEstimator
from msa_core.estimators.pairs import (
    DEFAULT_SAMPLES,
    INTERACTION_ESTIMATORS,
    MIN_SAMPLES,
    PROBE_SAMPLES,
    SampledInteractions,
    check_players,
)
from msa_core.estimators.permutation import PermutationEstimator
from msa_core.estimators.regression_adjusted import RegressionAdjustedEstimator
from msa_core.estimators.runner import Tally
from msa_core.estimators.stopping import TopK
from msa_core.memory import check_fits
from msa_core.names import INTERACTION_METHODS, METHODS

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls
    for cls in (
        ExactEstimator,
        PermutationEstimator,
        AntitheticEstimator,
        KernelEstimator,
        LeverageEstimator,
        RegressionAdjustedEstimator,
        GradientControlEstimator,
    )
}
if set(METHODS) != {
    "auto",
    *ESTIMATORS,
}:  # msa_core.names lists them for torch-free callers (the CLI)
    raise ImportError(
        f"msa_core.names.METHODS {METHODS} differs from the estimators {list(ESTIMATORS)}"
    )
SAMPLED_METHODS = tuple(name for name in ESTIMATORS if name != "exact")
SAMPLED_TEXT = f"a sampled method: {', '.join(SAMPLED_METHODS)} (or 'auto')"
TARGET_METHODS = ("exact", "permutation", "antithetic")  # those that keep a top-k target's scores
BEST_SAMPLER = (
    "regression_adjusted"  # lowest error per evaluation on every game of bench/bench_estimators.py
)
# auto: above N x |out| values, kernel's per-coalition regression update
KERNEL_MAX_VALUES = 1 << 20
#   (O(N x |out|), against O(|out|) for permutation) costs more wall time than its lower error saves
#   (measured: 113 GAN channels x 32,768 pixels, kernel 3.3x slower at equal evaluations)
DEFAULT_PERMUTATIONS = 1000  # the paper's budget, used when neither budget is given


def uses_permutations(method: str) -> bool:
    """Whether a budget in permutations applies to ``method``: every method but exact, which
    evaluates all 2^N coalitions whatever the budget (``exact_budget``)."""
    return method != "exact"


def exact_budget(
    n: int, n_permutations: int | None, max_evaluations: int | None, instead: str
) -> int:
    """The exact method's budget, 2^N evaluations (every coalition), once it may run.

    Args:
        n: players.
        n_permutations: must be None (permutations do not apply to exact).
        max_evaluations: a cap of at least 2^N, or None.
        instead: what the errors suggest instead (the sampled methods of the run's kind).

    Raises:
        MSAInputError: N above ``EXACT_MAX_PLAYERS``, a budget in permutations, or a cap below 2^N.
    """
    if n > EXACT_MAX_PLAYERS:
        raise MSAInputError(
            "method='exact' enumerates all 2^N coalitions and is limited to N <= "
            f"{EXACT_MAX_PLAYERS} players; this game has {n}. Use {instead}"
        )
    if n_permutations is not None:
        raise MSAInputError(
            "n_permutations does not apply to method='exact'; give max_evaluations or neither"
        )
    if max_evaluations is not None and max_evaluations < 2**n:
        raise MSAInputError(
            f"method='exact' needs 2^{n} = {2**n} evaluations but "
            f"max_evaluations={max_evaluations}; raise the budget or use {instead}"
        )
    return 2**n


def request_budget(
    method: str, n: int, n_permutations: int | None, max_evaluations: int | None
) -> int:
    """Evaluations a request of ``method`` may use, ends included, as its plan counts them: 2^N for
    exact, else ``evaluation_budget`` (the method's own limits are ``RunPlan.make``'s to check)."""
    if uses_permutations(method):
        return evaluation_budget(n, n_permutations, max_evaluations)
    return 2**n


def evaluation_budget(n: int, n_permutations: Any, max_evaluations: Any) -> int:
    """Total evaluations a run may use, full and empty coalitions included.

    Args:
        n: players.
        n_permutations: a permutation costs ``n - 1`` evaluations (None: no cap from it).
        max_evaluations: hard cap (None: no cap from it).

    Returns:
        The smaller cap, or ``2 + DEFAULT_PERMUTATIONS * (n - 1)`` when neither is given.

    Raises:
        MSAInputError: when a cap is not a positive integer or None.
    """
    check_positive_int(n_permutations, "n_permutations", optional=True)
    check_positive_int(max_evaluations, "max_evaluations", optional=True)
    caps = [2 + n_permutations * (n - 1)] if n_permutations is not None else []
    caps += [max_evaluations] if max_evaluations is not None else []
    return int(min(caps)) if caps else 2 + DEFAULT_PERMUTATIONS * (n - 1)


@dataclass(frozen=True)
class RunPlan:
    """What a run does, fixed before its first evaluation: the estimator, its budget, its seed.

    ``requested`` is the method asked for (``"auto"`` allowed), ``method`` the estimator that runs
    (never ``"auto"``); ``budget`` counts evaluations with the full and empty coalitions (``2^N``
    for exact), except for a sampled interaction run, where it counts samples (``evaluations``).
    An interaction run (``make_interactions``) has ``players``; a run of modes has None.
    """

    requested: str
    method: str
    n_players: int
    budget: int
    seed: int
    target: TopK | None = None  # a top-k target: its scores are part of the estimator's state
    players: tuple[int, ...] | None = None  # an interaction run: the pairs among these units
    # a sampled interaction run given only a cap: ``for_outputs`` counts the samples it buys
    # (``budget`` is 0 until then)
    evaluation_cap: int | None = None

    @classmethod
    def make(
        cls,
        method: str,
        n_players: int,
        n_permutations: int | None,
        max_evaluations: int | None,
        seed: int,
        target: TopK | None = None,
    ) -> RunPlan:
        """The plan of a request, checked against the game's size.

        Args:
            method: ``"auto"`` or a key of ``ESTIMATORS``.
            n_players: players N of the game.
            n_permutations, max_evaluations: the budget, as in ``shapley_modes``.
            seed: the estimator's seed.
            target: a top-k target (``stopping.TopK``): ``auto`` then means exact where it fits,
                else permutation sampling, the samplers that keep the target's scores.

        Returns:
            The plan; under ``auto`` the method may still change in ``for_outputs``.

        Raises:
            MSAInputError: an unknown method, a budget that is not a positive integer, exact beyond
                ``EXACT_MAX_PLAYERS`` or under ``2^N``, an odd antithetic budget, too small a
                budget, or a target with another method or too few players.
        """
        check_method(method)
        budget = evaluation_budget(n_players, n_permutations, max_evaluations)
        chosen = _resolve_method(method, n_players, budget)
        if target is not None:
            target.check_players(n_players)
            if chosen == BEST_SAMPLER and method == "auto":
                chosen = "permutation"
            if chosen not in TARGET_METHODS:
                raise MSAInputError(
                    f"a top-k target needs a method that keeps its scores: "
                    f"{', '.join(TARGET_METHODS)} or 'auto'; got {method!r}"
                )
        if chosen == "exact":
            # permutations are refused only when exact was asked for (auto took it as they fit)
            permutations = n_permutations if method == "exact" and n_players > 1 else None
            budget = exact_budget(n_players, permutations, max_evaluations, SAMPLED_TEXT)
        _check_budget(ESTIMATORS[chosen], n_players, budget, n_permutations)
        return cls(method, chosen, n_players, budget, seed, target)

    @classmethod
    def make_interactions(
        cls,
        method: str,
        n_players: int,
        players: Sequence[int] | None,
        n_samples: int | None,
        max_evaluations: int | None,
        seed: int,
    ) -> RunPlan:
        """The plan of an interaction run: the pairs among ``players`` (K >= 2 checked indices).

        Args:
            method: ``"auto"`` (exact when 2^N evaluations fit the budget, else sampled),
                ``"exact"`` or ``"sampled"``.
            n_players: players N of the game.
            players: the K >= 2 distinct units whose pairs are computed (None: all N).
            n_samples, max_evaluations: the budget, as in ``interaction_modes``.
            seed: the estimator's seed.

        Raises:
            MSAInputError: an unknown method, bad players, a bad budget, or exact beyond its
                limits.
        """
        check_method(method, INTERACTION_METHODS)
        units = tuple(int(unit) for unit in check_players(players, n_players))
        samples = _sample_budget(n_samples, max_evaluations)
        k = len(units)
        chosen = method
        if method == "auto":
            exact_fits = (
                n_players <= EXACT_MAX_PLAYERS
                and (max_evaluations is None or 2**n_players <= max_evaluations)
                and (n_samples is None or 2**n_players <= 2 + samples * (k * (k + 1) // 2))
            )
            chosen = "exact" if exact_fits else "sampled"
        if chosen == "exact":
            budget = exact_budget(n_players, None, max_evaluations, "method='sampled' (or 'auto')")
            return cls(method, chosen, n_players, budget, seed, None, units)
        if n_samples is None and max_evaluations is not None:
            return cls(method, chosen, n_players, 0, seed, None, units, max_evaluations)
        return cls(method, chosen, n_players, samples, seed, None, units)

    @property
    def estimator_class(self) -> type[Estimator]:
        if self.players is None:
            return ESTIMATORS[self.method]
        return INTERACTION_ESTIMATORS[self.method]

    @property
    def evaluations(self) -> int | None:
        """Evaluations the run may use, ends included: ``budget``, except for a sampled interaction
        run, whose budget counts samples (None: a sample costs what its coalitions' overlap makes
        it, known as the run goes)."""
        return None if self.players is not None and self.method == "sampled" else self.budget

    def check_fits(self, n_outputs: int) -> None:
        """Refuse a run whose estimate of ``n_outputs`` values per row (a player's modes or a
        pair's interactions) cannot fit in memory (``memory.check_fits``)."""
        if self.players is None:
            check_fits(self.n_players, n_outputs)
        else:
            k = len(self.players)
            check_fits(k * (k - 1) // 2, n_outputs, "Shapley interactions", "pairs")

    @property
    def extendable(self) -> bool:
        """Whether a run of this request with a larger budget may continue from this run's
        checkpoint: the method was named (``auto`` may choose another for another budget) and its
        first blocks do not depend on the budget."""
        return self.requested != "auto" and self.estimator_class.extendable

    def for_outputs(self, n_outputs: int) -> RunPlan:
        """The plan for values of ``n_outputs`` numbers per coalition: under ``auto``, permutation
        sampling instead of kernel when ``N x n_outputs > KERNEL_MAX_VALUES`` (the regression's
        O(N x out) update per coalition would dominate); for a sampled interaction run on an
        evaluation cap, the samples that cap buys at the cost per sample of this output size.

        Raises:
            MSAInputError: an evaluation cap that buys fewer than ``MIN_SAMPLES`` samples.
        """
        if self.evaluation_cap is not None:
            return replace(self, budget=self._samples_bought(n_outputs), evaluation_cap=None)
        if (
            self.requested == "auto"
            and self.target is None
            and self.method == BEST_SAMPLER
            and self.n_players * n_outputs > KERNEL_MAX_VALUES
        ):
            return replace(self, method="permutation")
        return self

    def estimator(
        self, v_full: np.ndarray, v_empty: np.ndarray, output_shape: tuple[int, ...] = ()
    ) -> Estimator:
        """A fresh estimator of this plan for end values ``v_full``, ``v_empty`` (each ``[D]``, the
        flattened ``output_shape``), keeping the target's scores where the plan has one."""
        if self.players is not None:
            players = np.array(self.players, dtype=np.int64)
            pairs = INTERACTION_ESTIMATORS[self.method]
            return pairs(self.n_players, v_full, v_empty, self.seed, self.budget, players)
        estimator = self.estimator_class(
            self.n_players, v_full, v_empty, self.seed, self.budget - 2
        )
        if self.target is not None:
            groups = self.target.n_groups(output_shape)  # checked for every method
            if isinstance(estimator, PermutationEstimator):
                estimator.track_scores(groups)
        return estimator

    def identity(self) -> State:
        """The ``run.*`` entries that say which run a state belongs to (``run.target`` only for a
        targeted run: other states are as before targets existed)."""
        return {
            "run.method": np.array(self.method),
            "run.n_players": np.array(self.n_players),
            "run.seed": np.array(self.seed),
            "run.budget": np.array(self.budget),
            **({} if self.target is None else {"run.target": np.array(self.target.to_json())}),
            **({} if self.players is None else {"run.players": np.array(self.players)}),
        }

    def _samples_bought(self, n_outputs: int) -> int:
        """Samples of ``evaluation_cap`` evaluations at the cost per sample measured on the first
        ``PROBE_SAMPLES`` of this plan's sampler (seeded: the same count on resume)."""
        assert self.evaluation_cap is not None and self.players is not None
        ends = np.zeros(n_outputs)
        probe = SampledInteractions(
            self.n_players, ends, ends, self.seed, PROBE_SAMPLES, np.array(self.players)
        )
        per_sample = probe.rows_per_sample()
        samples = int((self.evaluation_cap - 2) // per_sample)
        if samples < MIN_SAMPLES:
            raise MSAInputError(
                f"max_evaluations={self.evaluation_cap} buys {samples} samples of the "
                f"{probe.n_pairs} pairs (about {per_sample:.0f} evaluations each); "
                f"at least {MIN_SAMPLES} are needed"
            )
        return samples

    def state(
        self,
        estimator: Estimator,
        next_block: int,
        tally: Tally,
        v_full: np.ndarray,
        v_empty: np.ndarray,
        output_shape: tuple[int, ...],
    ) -> State:
        """The checkpoint state of this run before block ``next_block`` (``v_full``/``v_empty``:
        ``[D]``).
        """
        return {
            **self.identity(),
            **{f"est.{k}": v for k, v in estimator.state_dict().items()},
            "run.next_block": np.array(next_block),
            "run.used": np.array(tally.used),
            "run.game_seconds": np.array(tally.game_seconds),
            "run.v_full": v_full,
            "run.v_empty": v_empty,
            "run.output_shape": np.array(output_shape, dtype=np.int64),
        }

    def resume(self, state: State) -> tuple[RunPlan, CheckpointSummary]:
        """Read a saved state and check that this run may continue from it.

        Args:
            state: a checkpoint's state (``Checkpoint.load()``).

        Returns:
            ``(plan, summary)``: the plan settled for the state's output size, and the state read.

        Raises:
            MSAInputError: the state is incomplete, belongs to another run (method, players, seed),
                or has another budget (a smaller one is accepted for extendable methods).
        """
        summary = CheckpointSummary.of(state)
        plan = self.for_outputs(summary.v_full.size)
        saved, wanted = summary.plan, plan
        if _identity(saved) != _identity(wanted):
            raise MSAInputError(
                f"the checkpoint belongs to another run ({_describe(saved)}); this run is "
                f"{_describe(wanted, budget=False)}"
            )
        if saved.budget != wanted.budget and not (
            wanted.estimator_class.extendable and saved.budget < wanted.budget
        ):
            raise MSAInputError(
                f"the checkpoint was written with a budget of {saved.budget} evaluations and this "
                f"run asks for {wanted.budget}; only permutation-type runs can be extended to a "
                "larger budget"
            )
        return plan, summary


@dataclass(frozen=True)
class CheckpointSummary:
    """A saved state, read: the run that wrote it and how far it got.

    ``v_full``/``v_empty`` are the end values ``[D]`` (one coalition's value, flattened),
    ``output_shape`` their shape before flattening, ``estimator_state`` the estimator's running
    sums.
    """

    plan: RunPlan  # requested == method: a state records the estimator that ran
    next_block: int
    used: int  # evaluations whose values are in the state, ends included
    game_seconds: float
    v_full: np.ndarray
    v_empty: np.ndarray
    output_shape: tuple[int, ...]
    estimator_state: State

    @classmethod
    def of(cls, state: State) -> CheckpointSummary:
        """Read a state written by ``RunPlan.state``.

        Raises:
            MSAInputError: when an entry is missing or is not of the right kind.
        """
        try:
            method = str(state["run.method"])
            plan = RunPlan(
                method,
                method,
                int(state["run.n_players"]),
                int(state["run.budget"]),
                int(state["run.seed"]),
                TopK.from_json(str(state["run.target"])) if "run.target" in state else None,
                (
                    tuple(int(unit) for unit in state["run.players"])
                    if "run.players" in state
                    else None
                ),
            )
            return cls(
                plan,
                int(state["run.next_block"]),
                int(state["run.used"]),
                float(state["run.game_seconds"]),
                state["run.v_full"],
                state["run.v_empty"],
                tuple(int(size) for size in state["run.output_shape"]),
                {
                    key[len("est.") :]: value
                    for key, value in state.items()
                    if key.startswith("est.")
                },
            )
        except (KeyError, TypeError, ValueError) as err:
            raise MSAInputError(
                f"the checkpoint is incomplete or damaged ({type(err).__name__}: {err})"
            ) from err

    def estimator(self) -> Estimator:
        """The estimator as saved (its running sums loaded).

        Raises:
            MSAInputError: the state names an unknown method or its sums do not fit the estimator.
        """
        known = ESTIMATORS if self.plan.players is None else INTERACTION_ESTIMATORS
        if self.plan.method not in known:
            raise MSAInputError(
                f"the checkpoint was written by an unknown method {self.plan.method!r}"
            )
        estimator = self.plan.estimator(
            self.v_full.ravel(), self.v_empty.ravel(), self.output_shape
        )
        try:
            estimator.load_state_dict(self.estimator_state)
        except (KeyError, TypeError, ValueError) as err:
            raise MSAInputError(
                f"the checkpoint's estimator state does not fit {self.plan.method!r}: {err}"
            ) from err
        return estimator

    def max_stderr(self) -> float | None:
        """Largest standard error of the saved estimate (None where the estimator cannot tell
        yet)."""
        with np.errstate(all="ignore"):
            value = self.estimator().max_stderr()
        return value if value is not None and np.isfinite(value) else None


def _identity(plan: RunPlan) -> tuple[Any, ...]:
    """What a checkpoint must share with a run to continue it (the budget aside)."""
    return (plan.method, plan.n_players, plan.seed, plan.target, plan.players)


def _describe(plan: RunPlan, budget: bool = True) -> dict[str, Any]:
    return {
        "method": plan.method,
        "n_players": plan.n_players,
        "seed": plan.seed,
        **({"budget": plan.budget} if budget else {}),
        "target": _target_text(plan),
        **({} if plan.players is None else {"units": list(plan.players)}),
    }


def _target_text(plan: RunPlan) -> str | None:
    return None if plan.target is None else plan.target.to_json()


def _resolve_method(method: str, n: int, budget: int) -> str:
    if n == 1:
        return "exact"
    if method == "auto":
        return "exact" if n <= EXACT_MAX_PLAYERS and 2**n <= budget else BEST_SAMPLER
    return method


def _sample_budget(n_samples: Any, max_evaluations: Any) -> int:
    """Samples per pair asked for (default ``DEFAULT_SAMPLES``); both budgets checked."""
    for name, value, least in (
        ("n_samples", n_samples, MIN_SAMPLES),
        ("max_evaluations", max_evaluations, 2),
    ):
        if value is not None and (not is_int(value) or value < least):
            raise MSAInputError(f"{name} must be an integer >= {least} or None; got {value!r}")
    return int(n_samples) if n_samples is not None else DEFAULT_SAMPLES


def _check_budget(cls: type[Estimator], n: int, budget: int, n_permutations: Any) -> None:
    if cls is AntitheticEstimator and n_permutations is not None and n_permutations % 2:
        raise MSAInputError(
            "method='antithetic' samples permutations in pairs; n_permutations must be even, got "
            f"{n_permutations}"
        )
    needed = 2 + cls.min_budget(n) if n > 1 else 2
    if budget < needed:
        raise MSAInputError(
            f"a budget of {budget} evaluations is too small for method={cls.name!r} with {n} "
            f"players; it needs at least {needed} (full and empty coalitions included)"
        )
