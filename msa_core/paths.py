"""Where msa_core keeps its files: one home below both the runs layer and the zoo (torch-free), so
``runs/request -> zoo -> zoo/fetch`` no longer imports back into ``runs/store``."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$MSA_CACHE_DIR``, else ``$XDG_CACHE_HOME/msa-dashboard``, else
    ``~/.cache/msa-dashboard``: the run store, and the model store in its ``models/``."""
    if os.environ.get("MSA_CACHE_DIR"):
        return Path(os.environ["MSA_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "msa-dashboard"
