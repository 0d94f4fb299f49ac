import pytest

from msa_core.runs import RunStore


@pytest.fixture
def store(tmp_path) -> RunStore:
    """A fresh run store in a temporary folder."""
    return RunStore(tmp_path / "cache")
