"""Naming a backend is enough: ``backend="ray"`` works in a process that never imported
``msa_core.backends`` (the package's own import stays free of Ray and torch)."""

import subprocess
import sys

SCRIPT = """
import sys
from msa_core.errors import MSAInputError
from msa_core.estimators.runner import resolve_backend
assert "msa_core.backends" not in sys.modules
assert type(resolve_backend("ray")).__name__ == "RayBackend"
try:
    resolve_backend("dask")
except MSAInputError as err:
    assert "allowed: None, 'local', 'ray'" in str(err), err
else:
    raise AssertionError("dask was accepted")
"""


def test_ray_is_found_by_its_name_in_a_fresh_process():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
