"""``Namespace``: one prefix of the run store's keys, and the only place that spells it.

Each module of this package declares the namespaces it owns: ``results.RESULTS``,
``checkpoints.CHECKPOINTS`` and ``checkpoints.BASES``, ``index.INDEX``, ``progress.PROGRESS``,
``locks.LOCKS``, ``interactions.INTERACTIONS`` and ``interactions.INTERACTION_INDEX``. Everything
else (``RunStore.clear``, ``space.free_files``, ``msa_core.runs.repair``) asks them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Namespace:
    """The keys ``<prefix><owner>`` of one kind of row (``owner``: a fingerprint or an ``ix:`` key).

    >>> checkpoints = Namespace("ckpt:")
    >>> checkpoints.key("ab"), checkpoints.owner("ckpt:ab"), checkpoints.owns("lock:ab")
    ('ckpt:ab', 'ab', False)
    """

    prefix: str

    def key(self, owner: str) -> str:
        """The row key of ``owner`` in this namespace."""
        return self.prefix + owner

    def owner(self, key: str) -> str:
        """The owner a key of this namespace belongs to."""
        return key[len(self.prefix) :]

    def owns(self, key: object) -> bool:
        """Whether ``key`` (any row key, perhaps not text) is in this namespace."""
        return isinstance(key, str) and key.startswith(self.prefix)
