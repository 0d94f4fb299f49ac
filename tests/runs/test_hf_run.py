"""A local Hugging Face checkpoint folder runs through the store like a bundled model
(``hf:<folder>``).
"""

import numpy as np
import pytest
import torch

from msa_core.errors import MSAInputError
from msa_core.runs import RunRequest, execute
from msa_core.zoo import load_model

transformers = pytest.importorskip("transformers")


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny Mixtral (2 layers x 4 experts, top-2) saved as config.json + safetensors."""
    config = transformers.MixtralConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).eval().save_pretrained(
        tmp_path / "tiny-mixtral"
    )
    return tmp_path / "tiny-mixtral"


def test_a_checkpoint_run_is_stored_and_returned_at_once(checkpoint, store):
    request = RunRequest(
        model=f"hf:{checkpoint}",
        units="experts (all layers)",
        method="permutation",
        n_permutations=6,
    )
    first = execute(request, store)
    assert first.player_names == [
        f"L{layer}.E{expert}" for layer in range(2) for expert in range(4)
    ]
    assert first.efficiency_gap() < 1e-5
    assert [entry["request"]["model"] for entry in store.list()] == [f"hf:{checkpoint}"]
    again = execute(request, store)
    np.testing.assert_array_equal(again.modes, first.modes)
    assert again.meta["model_digest"] == load_model(f"hf:{checkpoint}").digest


def test_a_folder_that_is_not_a_checkpoint_is_a_clear_error(tmp_path, store):
    with pytest.raises(MSAInputError, match="no config.json"):
        execute(RunRequest(model=f"hf:{tmp_path}"), store)
