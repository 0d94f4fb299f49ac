"""Float tolerances that follow from the arithmetic, for tests that compare two float computations.

The same float32 computation run with another memory layout, batch size or CPU kernel sums its terms
in another order; each sum then differs by a few units in the last place (ulps) of the values'
scale, not bit for bit. Exact equality is only asserted where both sides run exactly the same
operations.
"""

from __future__ import annotations

import torch


def assert_within_ulps(actual: torch.Tensor, expected: torch.Tensor, ulps: int) -> None:
    """``actual`` equals ``expected`` up to ``ulps`` units in the last place of ``expected``'s
    scale.

    Args:
        actual, expected: float tensors of one shape and dtype.
        ulps: allowed error in units of ``eps * max|expected|`` (absolute) and ``eps`` (relative).
    """
    eps = torch.finfo(expected.dtype).eps
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=ulps * eps, atol=ulps * eps * scale)
