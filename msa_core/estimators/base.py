"""The estimator interface and the streaming statistics the samplers share.

An estimator is a deterministic sequence of coalition *blocks* (fixed by the seed and the block
index, never by the batch size or backend) plus the running sums those blocks feed. The runner
evaluates blocks in batches and hands each finished block back in block order, so the same seed
gives the same result whatever the batching.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

# A block holds at most BLOCK_ROWS coalitions (checkpoints fall between blocks) and its values stay
# below BLOCK_VALUES numbers (float64, cache-sized on CPU); a sample larger than that is one block.
BLOCK_ROWS = 256
BLOCK_VALUES = 1 << 18


def block_rng(seed: int, block: int) -> np.random.Generator:
    """The random generator of one block: independent streams derived from (seed, block)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(block,)))


def samples_per_block(rows_per_sample: int, n_outputs: int) -> int:
    """Samples per block within ``BLOCK_ROWS`` coalitions and ``BLOCK_VALUES`` numbers (at least
    1)."""
    rows = min(BLOCK_ROWS, BLOCK_VALUES // max(1, n_outputs))
    return max(1, rows // rows_per_sample)


@dataclass(frozen=True)
class ScoreEstimate:
    """Scores a sampler tracks for a target (``stopping.TopK``): means and standard errors
    ``[N, G]`` over ``count`` samples (``dof`` degrees of freedom), ``per_block`` samples per
    block."""

    mean: np.ndarray
    stderr: np.ndarray
    dof: float
    count: int
    per_block: int


class Estimator(ABC):
    """One way to turn game evaluations into Shapley modes.

    Built after the full and empty coalitions are evaluated (``v_full``, ``v_empty``: ``[D]``, the
    output flattened). ``budget`` is the number of further coalitions it may ask for.
    """

    name: ClassVar[str]
    stderr_kind: ClassVar[str]  # how ``stderr`` is obtained, stored in the result's meta
    state_fields: ClassVar[tuple[str, ...]]  # attributes that hold everything absorbed so far
    # state fields a checkpoint written before they existed lacks: left empty on loading it
    optional_state: ClassVar[tuple[str, ...]] = ()
    # True when the first blocks do not depend on the budget, so a run can be extended from a
    # checkpoint
    extendable: ClassVar[bool] = False
    # True when a coalition's values arrive with their derivatives in every unit's gate,
    # ``[N + 1, *out]`` (``msa_core.lesion.gradients``): the run plays ``game.with_gradients()``
    needs_gradients: ClassVar[bool] = False

    def __init__(
        self, n_players: int, v_full: np.ndarray, v_empty: np.ndarray, seed: int, budget: int
    ):
        self.n_players = n_players
        self.v_full = v_full
        self.v_empty = v_empty
        self.n_outputs = v_full.shape[0]
        self.seed = seed
        self.budget = budget

    n_blocks: int
    n_permutations: int = 0  # permutations absorbed so far (permutation-type samplers)

    @classmethod
    def modes_shape(cls, output_shape: tuple[int, ...]) -> tuple[int, ...]:
        """One player's modes' shape for a coalition's values of ``output_shape``: the same, but
        where the values carry more than the game's output (``needs_gradients``)."""
        return output_shape

    @abstractmethod
    def block(self, k: int) -> np.ndarray:
        """Coalitions of block ``k``: bool ``[c_k, N]``, never the full or empty coalition."""

    @abstractmethod
    def absorb(self, k: int, values: np.ndarray) -> None:
        """Fold block ``k``'s values ``[c_k, D]`` into the running sums (called in block order)."""

    @abstractmethod
    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """Current modes and standard errors, both float64 ``[N, D]``."""

    def max_stderr(self) -> float | None:
        """Largest standard error now, or None where it cannot be told at this block."""
        return None

    def score_estimate(self) -> ScoreEstimate | None:
        """Scores kept for a top-k target, or None where this sampler keeps none."""
        return None

    def score_stderr(self) -> np.ndarray | None:
        """Standard error ``[N]`` of each unit's score, its mode averaged over every output element
        (``ModesResult.score_stderr``), from the sampler's own variance of that linear functional;
        None where it cannot tell (results then bound it by the mean of the elements' standard
        errors)."""
        return None

    def stderr_dof(self) -> float:
        """Degrees of freedom of ``estimate()``'s standard error.

        Intervals use Student-t quantiles with this many (``inf``: the normal quantile).
        """
        return math.inf

    def extra_arguments(self) -> tuple[np.ndarray, ...]:
        """Constructor arguments after ``budget`` (a copy built with them plays the same blocks,
        e.g. on a Ray worker); none for the estimators of modes."""
        return ()

    def planned_evaluations(self) -> int:
        """Coalitions all blocks together ask for."""
        return self.budget

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the running sums (``state_fields``), as numpy arrays keyed by field name."""
        state: dict[str, np.ndarray] = {}
        for name in self.state_fields:
            value = getattr(self, name)
            if value is None:  # not kept by this run (e.g. scores without a target)
                continue
            if isinstance(value, RunningMoments):
                state.update({f"{name}.{key}": part for key, part in value.state_dict().items()})
            else:
                state[name] = np.array(value, copy=True)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore running sums saved by ``state_dict`` (same method, players and outputs)."""
        for name in self.state_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, RunningMoments):
                parts = {
                    key[len(name) + 1 :]: part
                    for key, part in state.items()
                    if key.startswith(f"{name}.")
                }
                if parts or name not in self.optional_state:
                    value.load_state_dict(parts)
            elif isinstance(value, np.ndarray):
                value[...] = state[name]  # in place: views of it (e.g. torch) stay valid
            else:
                setattr(self, name, int(state[name]))

    @classmethod
    @abstractmethod
    def min_budget(cls, n_players: int) -> int:
        """Fewest coalitions besides the two ends that give an estimate with a standard error."""


class GroupedEstimator(Estimator):
    """An estimator whose standard error is the spread of ``n_groups`` cross-fitted group
    estimates (batch means): told once each full round of sampled blocks has reached every group.
    """

    n_groups: int
    sampled_blocks_done: int

    @abstractmethod
    def group_counts(self) -> np.ndarray:
        """``[n_groups]`` samples each group holds so far."""

    def stderr_dof(self) -> float:
        return float(max(int(np.count_nonzero(self.group_counts())) - 1, 1))

    def max_stderr(self) -> float | None:
        """Told after each full round of sampled blocks over the groups."""
        done = self.sampled_blocks_done
        if done < self.n_groups or done % self.n_groups:
            return None
        return float(self.estimate()[1].max())


class RunningMoments:
    """Streaming per-element mean and variance from shifted sums, float64.

    Sums run over ``x - shift`` with ``shift`` = the first sample, so the variance does not suffer
    cancellation when the mean is large against the spread (and is exactly 0 for constant data).
    Samples may come in float32; they are shifted into float64 (exactly: both are float32 numbers
    when the first sample was), so the sums do not depend on which samples came first in float32.

    >>> m = RunningMoments((2,))
    >>> m.add(np.array([[1.0, 2.0], [3.0, 2.0]])); m.add(np.array([[5.0, 2.0]]))
    >>> m.mean.tolist(), m.stderr().round(6).tolist()
    ([3.0, 2.0], [1.154701, 0.0])
    """

    def __init__(self, shape: tuple[int, ...]):
        self.count = 0
        self.shift = np.zeros(shape)
        self.sum = np.zeros(shape)
        self.sum_sq = np.zeros(shape)
        self._scratch = np.empty(shape)
        self._shifted = np.empty((0, *shape))  # float64 copies of float32 samples, reused

    def add(self, samples: np.ndarray) -> None:
        """Add samples ``[m, *shape]`` (float32 or float64; float64 ones are overwritten as scratch
        space)."""
        if self.count == 0:
            self.shift[...] = samples[0]
        if samples.dtype == np.float64:
            shifted = np.subtract(samples, self.shift, out=samples)
        else:
            if self._shifted.shape[0] < samples.shape[0]:
                self._shifted = np.empty(samples.shape)
            shifted = np.subtract(samples, self.shift, out=self._shifted[: samples.shape[0]])
        self.sum += np.sum(shifted, axis=0, out=self._scratch)
        self.sum_sq += np.einsum("m...,m...->...", shifted, shifted, out=self._scratch)
        self.count += samples.shape[0]

    @property
    def mean(self) -> np.ndarray:
        return self.shift + self.sum / max(self.count, 1)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {
            "count": np.array(self.count),
            "shift": self.shift.copy(),
            "sum": self.sum.copy(),
            "sum_sq": self.sum_sq.copy(),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.count = int(state["count"])
        self.shift[...], self.sum[...], self.sum_sq[...] = (
            state["shift"],
            state["sum"],
            state["sum_sq"],
        )

    def stderr(self) -> np.ndarray:
        """Standard error of the mean per element (NaN before two samples)."""
        if self.count < 2:
            return np.full_like(self.sum, np.nan)
        m2 = np.maximum(self.sum_sq - self.sum**2 / self.count, 0.0)
        return np.sqrt(m2 / ((self.count - 1) * self.count))
