"""``<fingerprint>`` rows (``results/``): finished results as the bytes of a ``ModesResult``
(npz), keyed by their run's fingerprint (64 hex digits), the request and store format in their
metadata."""

from __future__ import annotations

import io
import re

from msa_core.errors import MSAInputError
from msa_core.result import ModesResult
from msa_core.runs.formats import check_format
from msa_core.runs.request import STORE_FORMAT, RunRequest

FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


def is_result_key(key: object) -> bool:
    """Whether ``key`` (any row key) is a finished result's: a fingerprint."""
    return isinstance(key, str) and FINGERPRINT.match(key) is not None


def result_bytes(result: ModesResult, fingerprint: str, request: RunRequest) -> bytes:
    """The stored form of a finished result: its bytes, with the store format, fingerprint and
    request recorded in its metadata (``result.meta`` is updated)."""
    result.meta.update(
        store_format=STORE_FORMAT, fingerprint=fingerprint, request=request.to_dict()
    )
    buffer = io.BytesIO()
    result.save(buffer)
    return buffer.getvalue()


def result_of(blob: object, fingerprint: str | None) -> ModesResult:
    """A stored result from its bytes, checked: written in this store format (``NewerFormat`` when
    by a newer msa_core), and the result of run ``fingerprint`` (None: of any run).

    Raises:
        MSAInputError: the bytes are not a result of this format and run (``UNREADABLE`` errors
            too, from a damaged npz).
    """
    if not isinstance(blob, bytes):
        raise MSAInputError(f"its value is a {type(blob).__name__}, not the bytes of a result")
    result = ModesResult.load(io.BytesIO(blob))
    check_format(result.meta.get("store_format"), STORE_FORMAT, f"run {str(fingerprint)[:12]}")
    stored = result.meta.get("fingerprint")
    if not is_result_key(stored) or fingerprint not in (None, stored):
        raise MSAInputError(f"it holds run {str(stored)[:12]}")
    return result
