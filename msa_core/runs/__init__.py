"""Runs of bundled models: requests and their fingerprints, the shared disk store (results,
checkpoints, progress), background jobs, and export. The app and the CLI both go through here."""

from msa_core.paths import default_cache_dir
from msa_core.runs.execute import execute, fingerprint_of
from msa_core.runs.export import FORMATS, export
from msa_core.runs.jobs import JobManager, JobStatus
from msa_core.runs.request import RunRequest
from msa_core.runs.store import RunStore

__all__ = [
    "FORMATS",
    "JobManager",
    "JobStatus",
    "RunRequest",
    "RunStore",
    "default_cache_dir",
    "execute",
    "export",
    "fingerprint_of",
]
