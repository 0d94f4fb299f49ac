"""Style and types are part of the suite: ruff (lint rules and formatting, pyproject.toml) on the
whole repository and mypy on ``msa_core``, so `.ci/run` fails on a lint or type error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    "command",
    [("ruff", "check", "."), ("ruff", "format", "--check", ".")],
    ids=["ruff check", "ruff format"],
)
def test_ruff_is_clean(command):
    done = run(*command)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean_on_the_engine():
    done = run("mypy")  # files and settings: pyproject.toml
    assert done.returncode == 0, done.stdout + done.stderr
