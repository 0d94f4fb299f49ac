"""Where msa_core keeps its files: one home below the runs layer, the zoo and the tasks
(torch-free), so none of them imports another for a path: the bundled ``ASSETS`` and the
``default_cache_dir``."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"  # bundled weights, tasks and data


def default_cache_dir() -> Path:
    """``$MSA_CACHE_DIR``, else ``$XDG_CACHE_HOME/msa-dashboard``, else
    ``~/.cache/msa-dashboard``: the run store, and the model store in its ``models/``."""
    if os.environ.get("MSA_CACHE_DIR"):
        return Path(os.environ["MSA_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "msa-dashboard"
