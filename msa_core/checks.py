"""Argument checks shared across the package; each failure is an ``MSAInputError`` naming what is allowed.

>>> positive_int_or_none(3, "workers"), positive_int_or_none(None, "workers")
(3, None)
>>> positive_int_or_none(0, "workers")
Traceback (most recent call last):
...
msa_core.errors.MSAInputError: workers must be a positive integer or None; got 0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from msa_core.errors import MSAInputError


def is_int(value: Any) -> bool:
    """True for a Python or numpy integer, False for a bool (``True`` is not a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def positive_int_or_none(value: Any, name: str, meaning: str = "") -> int | None:
    """``value`` when it is None or an integer >= 1, else an error naming ``name``.

    Args:
        value: the argument as given.
        name: how the error names it (e.g. ``"batch_size"`` or ``"RayBackend workers"``).
        meaning: optional unit shown after "a positive integer", e.g. ``" (coalitions per game call)"``.

    Returns:
        ``value`` unchanged.

    Raises:
        MSAInputError: when ``value`` is neither None nor a positive integer.
    """
    if value is not None and (not is_int(value) or value < 1):
        raise MSAInputError(f"{name} must be a positive integer{meaning} or None; got {value!r}")
    return value
