"""Leverage-score sampling for the paired Shapley regression (Musco & Witter, ICLR 2025).

The Shapley regression of ``kernel.py`` solved on coalitions drawn in proportion to their leverage
scores. Musco & Witter show the leverage score of coalition S in that regression is
``1 / C(N, |S|)``: every size carries the same total, so sizes are sampled uniformly (kernel
sampling favours the small and large sizes instead, in proportion to the Shapley kernel). With
leverage sampling the least-squares solution is accurate to ``1 + eps`` of the best fit after
``O(N log N + N / eps)`` evaluations, and it was measured better than optimised KernelSHAP.

Everything else is the kernel estimator's: sizes the sampler would draw at least exhaustively are
enumerated, the rest drawn in complement pairs, efficiency imposed exactly, and the standard error
from a delete-a-group jackknife (t quantiles).
"""

from __future__ import annotations

from msa_core.estimators.kernel import KernelEstimator


class LeverageEstimator(KernelEstimator):
    """Paired regression with pairs spread evenly over sizes (leverage scores ``1 / C(N, |S|)``)."""

    name = "leverage"
    stderr_kind = (
        "delete-a-group jackknife over interleaved groups of leverage-sampled pairs "
        "(t, groups - 1 degrees of freedom)"
    )
    size_power = 0.0
    border_power = 0.0
