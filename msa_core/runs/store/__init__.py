"""The run store: finished results, checkpoints, locks and progress in diskcache, shared by
processes.

Layout under one directory (default ``$MSA_CACHE_DIR``, else ``$XDG_CACHE_HOME/msa-dashboard``, else
``~/.cache/msa-dashboard``):``results/`` (finished results and family base checkpoints; the least
recently used go past ``size_limit`` bytes) and ``work/`` (never evicted), see ``caches``. Each key
namespace has one owner module, which alone spells its prefix (``namespace.Namespace``):

=========================  ===========  =====================================================
keys                       folder       owner
=========================  ===========  =====================================================
``<fingerprint>``          results/     ``results``: finished results (npz bytes)
``base:<family>``          results/     ``checkpoints.BASES``: a family's base checkpoint
``ix:<sha>``               results/     ``interactions.INTERACTIONS``: interaction results
``index:<fingerprint>``    work/        ``index.INDEX``: what ``list`` shows (JSON)
``ixindex:<sha>``          work/        ``interactions.INTERACTION_INDEX`` (JSON)
``ckpt:<owner>``           work/        ``checkpoints.CHECKPOINTS``: checkpoints (npz bytes)
``progress:<owner>``       work/        ``progress.PROGRESS``: progress records (JSON)
``lock:<owner>``           work/        ``locks.LOCKS``: who computes a run (JSON)
``analysis:<fp>:<name>``   work/        ``analyses.ANALYSES``: kept analyses of a run (JSON)
=========================  ===========  =====================================================

``RunStore`` (``run_store``) is the one class callers use; ``msa_core.runs.repair`` reads rows
through the same namespaces. Only bytes, strings and numbers are stored, and the disk layer
(``disk``) refuses anything else, so nothing is ever unpickled. Every row and file name read is
checked (``msa_core.runs.rows``): a row the store did not write, or cannot read, costs that one
entry and a warning naming it, never a file outside the store. ``RunStore(directory,
readonly=True)`` (what ``list``, ``show`` and ``export`` use) reads through read-only connections
and never writes.

>>> import tempfile
>>> store = RunStore(tempfile.mkdtemp())
>>> store.list(), store.get("0" * 64) is None
([], True)
"""

from msa_core.runs.store.disk import UNREADABLE
from msa_core.runs.store.interactions import INTERACTIONS
from msa_core.runs.store.problems import FULL_DISK_ADVICE, store_problem
from msa_core.runs.store.run_store import RunStore
from msa_core.runs.store.space import free_files

INTERACTION_KEY = INTERACTIONS.prefix  # what ``msa_core.runs.interaction_runs`` keys start with

__all__ = [
    "FULL_DISK_ADVICE",
    "INTERACTION_KEY",
    "UNREADABLE",
    "RunStore",
    "free_files",
    "store_problem",
]
