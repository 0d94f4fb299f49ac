"""Shared pieces of the run-layer tests (imported by name: pytest puts this folder on sys.path): a
small bundled model, small budgets, a fresh store per test, the CLI in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

from msa_core.runs import RunRequest

MODEL = "mlp-digits-h32-none-s0"  # 32 hidden neurons; "correct" gives values [360 images]
ROOT = Path(__file__).resolve().parents[2]


def small_request(**changes) -> RunRequest:
    """A permutation run of the 32 hidden neurons on per-image correctness, 20 permutations."""
    fields = {
        "model": MODEL,
        "output": "correct",
        "method": "permutation",
        "n_permutations": 20,
        "seed": 0,
    }
    return RunRequest(**{**fields, **changes})


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "msa_core", *args]


def start_cli(*args: str, checkpoint_seconds: float | None = None) -> subprocess.Popen:
    """``python -m msa_core ARGS`` in a subprocess (stdout and stderr captured as text)."""
    env = {**os.environ}
    if checkpoint_seconds is not None:
        env["MSA_CHECKPOINT_SECONDS"] = str(checkpoint_seconds)
    return subprocess.Popen(
        cli_command(*args),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
