"""Who the dashboard serves, from ``$MSA_DEPLOYMENT``, and what that allows (no streamlit here:
pages ask ``deployment()`` and render accordingly).

- ``local`` (default): one user on their own machine (``streamlit run app.py`` listens on localhost
  only, see ``.streamlit/config.toml``). Everything is allowed.
- ``shared``: served to other people on purpose (``--server.address 0.0.0.0`` or behind a proxy).
  Every visitor is treated as remote: no checkpoint is loaded from a server path (``hf:FOLDER``), no
  stored run is deleted from the app, a run's budget is capped at ``$MSA_MAX_RUN_EVALUATIONS``
  evaluations (default 200,000) on every page that launches runs, a task pasted or uploaded on the
  LLM page is capped at ``$MSA_MAX_TASK_BYTES`` bytes (default 256 KiB; refused before it is read
  or written to the store), and at most ``$MSA_MODEL_CACHE_ENTRIES`` models (default 4) stay loaded
  in memory. The operator does the rest with the CLI.

>>> deployment({"MSA_DEPLOYMENT": "shared"}).allows_local_paths
False
>>> deployment({}).max_run_evaluations is None
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from msa_core.errors import MSAInputError

DEPLOYMENTS = ("local", "shared")
SHARED_MAX_RUN_EVALUATIONS = (
    200_000  # about a minute of a bundled MLP on one core; minutes for the GAN
)
SHARED_MAX_TASK_BYTES = 256 << 10  # a few hundred examples; the task module's own cap is 4 MiB
SHARED_MODEL_CACHE_ENTRIES = 4
LOCAL_MODEL_CACHE_ENTRIES = 16


@dataclass(frozen=True)
class Deployment:
    """What the app allows: ``allows_local_paths`` (load ``hf:FOLDER`` checkpoints from server
    paths), ``allows_deletion`` (delete stored runs), ``max_run_evaluations`` (budget cap of a run
    launched from the app, None: no cap), ``model_cache_entries`` (models kept loaded per server
    process), ``max_task_bytes`` (size cap of a task pasted or uploaded in the app, None: only the
    task module's own)."""

    name: str
    allows_local_paths: bool
    allows_deletion: bool
    max_run_evaluations: int | None
    model_cache_entries: int
    max_task_bytes: int | None = None

    def check_budget(self, evaluations: int) -> None:
        """Raise ``MSAInputError`` when a run of ``evaluations`` evaluations exceeds this
        deployment's cap."""
        if self.max_run_evaluations is not None and evaluations > self.max_run_evaluations:
            raise MSAInputError(
                f"this shared dashboard runs at most {self.max_run_evaluations:,} evaluations per "
                f"run; this one asks for {evaluations:,}. Lower the budget, or run it with the "
                "command line on your own machine"
            )

    def check_task_bytes(self, size: int, name: str) -> None:
        """Raise ``MSAInputError`` when a task of ``size`` bytes pasted or uploaded in the app is
        over this deployment's cap (before it is read, parsed or stored)."""
        if self.max_task_bytes is not None and size > self.max_task_bytes:
            raise MSAInputError(
                f"this shared dashboard takes tasks of at most {self.max_task_bytes:,} bytes; "
                f"{name} has {size:,}. Use fewer or shorter examples, or run it with the command "
                "line on your own machine"
            )


def deployment(environ: Mapping[str, str] | None = None) -> Deployment:
    """The deployment ``$MSA_DEPLOYMENT`` names (default ``local``), with its limits from the
    environment.

    Args:
        environ: the environment to read (default ``os.environ``).
    Raises:
        MSAInputError: an unknown deployment or a limit that is not a positive whole number.
    """
    env = os.environ if environ is None else environ
    name = env.get("MSA_DEPLOYMENT", "local") or "local"
    if name not in DEPLOYMENTS:
        raise MSAInputError(
            f"MSA_DEPLOYMENT={name!r} is unknown; allowed: {', '.join(DEPLOYMENTS)}"
        )
    shared = name == "shared"
    return Deployment(
        name=name,
        allows_local_paths=not shared,
        allows_deletion=not shared,
        max_run_evaluations=_positive(env, "MSA_MAX_RUN_EVALUATIONS", SHARED_MAX_RUN_EVALUATIONS)
        if shared
        else None,
        max_task_bytes=_positive(env, "MSA_MAX_TASK_BYTES", SHARED_MAX_TASK_BYTES)
        if shared
        else None,
        model_cache_entries=_positive(
            env,
            "MSA_MODEL_CACHE_ENTRIES",
            SHARED_MODEL_CACHE_ENTRIES if shared else LOCAL_MODEL_CACHE_ENTRIES,
        ),
    )


def _positive(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise MSAInputError(f"{key} must be a positive whole number; got {raw!r}")
    return int(raw)
