"""The store-format check every stored entry passes before it is read.

An entry of an older format is unreadable (the store recomputes it); one of a newer format was
written by a newer msa_core sharing the store, and is never read, replaced or deleted by this one.
"""

from __future__ import annotations

from msa_core.errors import MSAInputError


class NewerFormat(MSAInputError):
    """A stored entry written by a newer msa_core: kept as it is, neither read nor deleted."""


def check_format(found: object, reads: int, what: str) -> None:
    """Pass when ``found`` (an entry's ``store_format``) is ``reads``.

    Args:
        found: the format the entry records.
        reads: the format this version reads and writes.
        what: the entry, for the message (e.g. "run 1a2b3c4d5e6f").

    Raises:
        NewerFormat: ``found`` is a larger whole number (the message names both versions).
        MSAInputError: any other mismatch (an older or malformed entry).
    """
    if isinstance(found, int) and not isinstance(found, bool) and found > reads:
        raise NewerFormat(
            f"{what} was written by a newer msa_core (store format {found}; this version reads "
            f"{reads}); it is kept as it is: upgrade msa_core to read it, or use another "
            "--cache-dir / $MSA_CACHE_DIR"
        )
    if found != reads:
        raise MSAInputError(f"format {found}, this version reads {reads}")
