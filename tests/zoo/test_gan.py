"""The bundled conditional DCGANs (study 3): cards, default inputs, lesion game, quality,
determinism.
"""

import numpy as np
import pytest
import torch
from tolerances import assert_within_ulps

from msa_core import shapley_modes
from msa_core.errors import MSAInputError
from msa_core.lesion import ModelGame
from msa_core.zoo import gan, list_models, load_model

NAMES = [gan.name_of(seed) for seed in gan.SEEDS]


def test_every_seed_is_bundled_with_its_layers_as_granularities():
    bundled = {card.name for card in list_models()}
    assert set(NAMES) <= bundled
    card = load_model(NAMES[0]).card
    assert card.family == "gan" and card.outputs == ("image",)
    assert list(card.granularities) == [
        "channels of every layer",
        "channels of up4",
        "channels of up8",
        "channels of up16",
        "channels of out",
    ]


def test_default_inputs_are_fixed_latents_with_cycling_labels():
    inputs, labels = gan.default_inputs()
    again, _ = gan.default_inputs()
    assert inputs.shape == (32, gan.LATENT + gan.CLASSES) and torch.equal(inputs, again)
    assert labels.tolist() == [i % 10 for i in range(32)]
    assert torch.equal(inputs[:, gan.LATENT :].argmax(1), labels)


@pytest.mark.parametrize("name", NAMES)
def test_the_judge_agrees_with_the_requested_label_on_90_percent(name):
    """500 samples (50 per digit) from latents the training never saw."""
    assert gan.agreement(load_model(name).model) >= 0.9


def test_the_judge_classifies_real_held_out_digits():
    _, _, images, labels = gan.digits_32()
    assert gan.judge_accuracy(images, labels) >= 0.95


def test_batch_norm_runs_in_eval_mode_with_running_statistics():
    model = load_model(NAMES[0]).model
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 3 and not any(m.training for m in norms)
    inputs, _ = gan.default_inputs()
    with torch.inference_mode():
        # no batch statistics leak between samples (a leak changes values by O(1)); a batch of 1 and
        # of 32 may take different conv kernels, so the same sample agrees to float32 rounding only
        assert_within_ulps(model(inputs[:1]), model(inputs)[:1], ulps=16)


def test_players_sit_after_each_relu_and_the_output_activation():
    game = load_model(NAMES[0]).game("channels of every layer")
    assert game.n_players == sum(gan.WIDTHS) + 1
    assert game.player_names[0] == "up4.relu.c0" and game.player_names[-1] == "out.act.c0"
    assert game.plan.name == "prefix reuse + push-forward"
    assert game.output_shape == (32, 1, 32, 32)


def test_the_shortcut_plan_gives_the_whole_model_values():
    loaded = load_model(NAMES[0])
    inputs, units = loaded.inputs[:4], list(loaded.units("channels of every layer"))
    fast = ModelGame(loaded.model, inputs, units, output="image")
    whole = ModelGame(
        loaded.model, inputs, units, output="image", prefix_reuse=False, push_forward=False
    )
    assert (fast.plan.name, whole.plan.name) == ("prefix reuse + push-forward", "whole model")
    coalitions = np.random.default_rng(0).random((16, fast.n_players)) < 0.7
    torch.testing.assert_close(fast(coalitions), whole(coalitions), atol=1e-5, rtol=0)


@pytest.mark.parametrize("granularity", list(gan.granularities()))
def test_summed_modes_are_the_generated_images_minus_the_all_lesioned_image(granularity):
    loaded = load_model(NAMES[0])
    inputs, labels = loaded.inputs[:8], loaded.labels[:8]
    result = shapley_modes(
        loaded.game(granularity, inputs=inputs, labels=labels),
        method="permutation",
        n_permutations=2,
        seed=0,
    )
    with torch.inference_mode():
        generated = loaded.model(inputs).double().numpy()
    np.testing.assert_allclose(result.v_full, generated, atol=1e-6)
    if "out" in granularity or granularity == "channels of every layer":
        assert np.all(result.v_empty == 0)  # the output channel lesioned: a black image
    np.testing.assert_allclose(result.modes.sum(0), generated - result.v_empty, atol=1e-5)


def test_an_unknown_granularity_names_the_allowed_ones():
    with pytest.raises(MSAInputError, match="channels of every layer"):
        load_model(NAMES[0]).game("neurons")


def test_training_is_deterministic():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the training CLI does (and fast on a loaded machine)
    try:
        first, second = gan.train(0, steps=3), gan.train(0, steps=3)
    finally:
        torch.set_num_threads(threads)
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
