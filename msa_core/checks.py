"""Argument checks shared across the package; each failure is an ``MSAInputError`` naming what is
allowed.

>>> check_positive_int(3, "workers")  # passes (so does None, with optional=True)
>>> check_positive_int(0, "workers", optional=True)
Traceback (most recent call last):
...
msa_core.errors.MSAInputError: workers must be a positive integer or None; got 0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeGuard

import numpy as np

from msa_core.errors import MSAInputError
from msa_core.names import MAX_SEED, METHODS


def is_int(value: object) -> TypeGuard[int | np.integer]:
    """True for a Python or numpy integer, False for a bool (``True`` is not a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_positive_int(value: object, name: str, meaning: str = "", optional: bool = False) -> None:
    """Pass when ``value`` is an integer >= 1 (or None where ``optional``), else an error naming
    ``name``.

    Args:
        value: the argument as given.
        name: how the error names it (e.g. ``"batch_size"`` or ``"RayBackend workers"``).
        meaning: optional unit shown after "a positive integer", e.g.
            ``" (coalitions per game call)"``.
        optional: None is allowed (and the error says so).

    Raises:
        MSAInputError: when ``value`` is not a positive integer (nor None where allowed).
    """
    if optional and value is None:
        return
    if not is_int(value) or value < 1:
        raise MSAInputError(
            f"{name} must be a positive integer{meaning}{' or None' if optional else ''}; "
            f"got {value!r}"
        )


def check_seed(seed: object) -> int:
    """``seed`` when it is a whole number from 0 to ``MAX_SEED`` (checkpoints store it as int64).

    Raises:
        MSAInputError: any other value.
    """
    if not is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise MSAInputError(
            f"seed must be a whole number from 0 to 2^63 - 1 (checkpoints store it "
            f"as int64); got {seed!r}"
        )
    return int(seed)


def check_method(method: object, allowed: tuple[str, ...] = METHODS) -> str:
    """``method`` when it is one of ``allowed`` (default: the estimators of modes, ``METHODS``).

    Raises:
        MSAInputError: any other value, naming the allowed ones.
    """
    if not isinstance(method, str) or method not in allowed:
        raise MSAInputError(f"unknown method {method!r}; allowed: {', '.join(allowed)}")
    return method


def check_known_fields(data: Mapping[str, object], allowed: Iterable[str], what: str) -> None:
    """Refuse keys of ``data`` that are not ``allowed`` fields of a ``what`` (e.g. "run request").

    Raises:
        MSAInputError: naming the unknown fields and the allowed ones.
    """
    names = list(allowed)
    unknown = set(data) - set(names)
    if unknown:
        raise MSAInputError(f"unknown {what} fields {sorted(unknown)}; allowed: {names}")
