"""Lesion sets from unit scores: which units to knock out (or keep) by rank or at random.

Every function returns or takes coalitions as bool ``[C, N]`` (True = intact), the form a game
evaluates. The studies and the Lesion lab build their lesions from these: ``rank_curves`` evaluates
the usual rank curves (top-k removed, only the top-k kept, bottom-k removed) in one call, and
``pruning_curves`` keeps the top-k by one or more rankings against k random units.

>>> scores = np.array([0.1, 0.9, -0.5, 0.7])
>>> rank_order(scores).tolist()
[1, 3, 0, 2]
>>> keep_only(rank_order(scores), [0, 2], 4).astype(int).tolist()
[[0, 0, 0, 0], [0, 1, 0, 1]]
>>> ks, curves = rank_curves(scores, [0, 1], lambda c: c.sum(1), ("lesion_top", "keep_top"))
>>> ks.tolist(), curves["lesion_top"].tolist(), curves["keep_top"].tolist()
([0, 1], [4, 3], [0, 1])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from msa_core.errors import MSAInputError

TOP_FRACTION = 0.2  # "the top 20% of units" of the studies' pass criteria
RANK_SETS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "lesion_top": lambda order, ks, n: ~keep_only(order, ks, n),  # the top-k by score knocked out
    "keep_top": lambda order, ks, n: keep_only(order, ks, n),  # only the top-k intact
    "lesion_bottom": lambda order, ks, n: ~keep_only(order[::-1], ks, n),  # bottom-k knocked out
}


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Unit indices ``[N]`` from the highest score to the lowest (ties: lower index first)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def top_k_count(n_units: int, fraction: float = TOP_FRACTION) -> int:
    """How many units "the top ``fraction``" of ``n_units`` is: rounded, at least 1."""
    return max(1, int(round(fraction * n_units)))


def unit_counts(
    ks: Sequence[int] | np.ndarray | None, n_units: int, what: str = "unit"
) -> np.ndarray:
    """``ks`` as an int array ``[M]`` checked to lie in 0..N (default: every count 0..N).

    Raises:
        MSAInputError: a count outside 0..N, or no count.
    """
    counts = np.arange(n_units + 1) if ks is None else np.asarray(ks, dtype=int)
    if counts.size == 0 or counts.min() < 0 or counts.max() > n_units:
        raise MSAInputError(
            f"ks must be {what} counts between 0 and {n_units}; got {counts.tolist()}"
        )
    return counts


def keep_only(order: np.ndarray, ks: Sequence[int] | np.ndarray, n_units: int) -> np.ndarray:
    """Coalitions ``[len(ks), N]`` keeping only the first k units of ``order [N]`` intact."""
    coalitions = np.zeros((len(ks), n_units), dtype=bool)
    for row, k in enumerate(ks):
        coalitions[row, order[:k]] = True
    return coalitions


def random_keep_only(ks: np.ndarray, n_units: int, n_random: int, seed: int) -> np.ndarray:
    """``[len(ks) * n_random, N]`` coalitions keeping k random units intact, ``n_random`` draws per
    k (k-major)."""
    rng = np.random.default_rng(seed)
    draws = np.stack(
        [keep_only(rng.permutation(n_units), ks, n_units) for _ in range(n_random)], axis=1
    )
    return draws.reshape(-1, n_units)


def lesion_sets(scores: np.ndarray, k: int, n_random: int = 5, seed: int = 0) -> np.ndarray:
    """Coalitions ``[1 + n_random, N]``: the ``k`` top-scoring units lesioned, then ``n_random``
    draws of ``k`` random units lesioned (reproducible by ``seed``).

    Raises:
        MSAInputError: ``k`` outside 0..N.
    """
    n = len(scores)
    if not 0 <= k <= n:
        raise MSAInputError(f"k must be between 0 and the number of units {n}; got {k}")
    coalitions = np.ones((1 + n_random, n), dtype=bool)
    coalitions[0, rank_order(scores)[:k]] = False
    rng = np.random.default_rng(seed)
    for row in range(1, 1 + n_random):
        coalitions[row, rng.choice(n, size=k, replace=False)] = False
    return coalitions


def rank_curves(
    scores: np.ndarray,
    ks: Sequence[int] | np.ndarray | None,
    value_of: Callable[[np.ndarray], np.ndarray],
    sets: Sequence[str],
    what: str = "unit",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Values of rank lesions: for each k of ``ks``, each of ``sets`` (keys of ``RANK_SETS``).

    Args:
        scores: one score per unit ``[N]``; ranks from the highest.
        ks: unit counts ``[M]`` in 0..N (None: every count 0..N).
        value_of: coalitions ``[C, N]`` -> one value per coalition ``[C]``; called once with every
            set.
        sets: which lesions, e.g. ``("lesion_top", "keep_top")``.
        what: how the error names the units ("expert", ...).

    Returns:
        ``(ks [M], {set name: values [M]})``.

    Raises:
        MSAInputError: a count outside 0..N.
    """
    n = len(scores)
    counts = unit_counts(ks, n, what)
    order = rank_order(scores)
    values = value_of(np.concatenate([RANK_SETS[name](order, counts, n) for name in sets]))
    return counts, {
        name: values[i * len(counts) : (i + 1) * len(counts)] for i, name in enumerate(sets)
    }


def pruning_curves(
    rankings: Sequence[np.ndarray],
    fractions: Sequence[float],
    value_of: Callable[[np.ndarray], np.ndarray],
    n_random: int,
    seed: int,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Values of keeping only k units, for k = ``fractions`` of N: the top-k of each ranking, and k
    at random.

    Args:
        rankings: score vectors ``[N]`` (e.g. Shapley values, weight magnitudes); ranks from the
            highest.
        fractions: shares of N to keep (each rounded by ``top_k_count``; repeated counts once).
        value_of: coalitions ``[C, N]`` -> one value per coalition ``[C]``; called once with every
            set.
        n_random: random draws per k; seed: their generator's seed.

    Returns:
        ``(ks [M], [values [M] per ranking], random values [M, n_random])``.
    """
    n = len(rankings[0])
    ks = np.unique([top_k_count(n, fraction) for fraction in fractions])
    values = value_of(
        np.concatenate(
            [
                *(keep_only(rank_order(scores), ks, n) for scores in rankings),
                random_keep_only(ks, n, n_random, seed),
            ]
        )
    )
    m = len(ks)
    ranked = [values[i * m : (i + 1) * m] for i in range(len(rankings))]
    return ks, ranked, values[len(rankings) * m :].reshape(m, n_random)
