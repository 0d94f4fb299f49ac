"""``ModelGame.with_gradients``: a model game's values with their derivatives in every unit's gate
(``msa_core.lesion.gradients``), and the gradient control variate on a small LM game.

Values come out of the same float32 operations as the game's own passes on the whole model, so
they are compared exactly with a whole-model game's; derivatives are checked where the model is
linear in the gates (then the derivative is the marginal contribution itself)."""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from test_lesion_moe import INPUTS, build  # noqa: E402

from msa_core import MSAInputError, shapley_modes  # noqa: E402
from msa_core.coalitions import from_ranks  # noqa: E402
from msa_core.lesion import ModelGame  # noqa: E402
from msa_core.units import Experts, Heads, Layers, Neurons  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WHOLE = dict(prefix_reuse=False, push_forward=False)


def some_coalitions(n: int, count: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    ranks = rng.random((count, n)).argsort(1).argsort(1)
    return from_ranks(ranks, rng.integers(0, n + 1, count))


@pytest.mark.parametrize(
    ("units", "lesion"),
    [
        (Heads("model.layers.*.self_attn"), "zero"),
        (Layers("model.layers"), "mean"),
        (Experts("model.layers.*.mlp"), "zero"),
        (Experts("model.layers.*.mlp"), "mean"),
    ],
)
def test_row_zero_holds_the_games_own_values(units, lesion):
    model = build("mixtral")
    game = ModelGame(model, INPUTS, units, output="target_logprob", lesion=lesion, **WHOLE)
    coalitions = some_coalitions(game.n_players)
    rows = game.with_gradients()(coalitions)
    assert rows.shape == (len(coalitions), game.n_players + 1, *game.output_shape)
    torch.testing.assert_close(rows[:, 0], game(coalitions), rtol=0, atol=0)
    assert torch.isfinite(rows).all() and rows[:, 1:].abs().sum() > 0


@pytest.mark.parametrize("lesion", ["zero", "mean"])
def test_where_the_model_is_linear_in_the_gates_the_derivative_is_the_contribution(lesion):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    game = ModelGame(model, torch.randn(7, 5), Neurons("1"), lesion=lesion)
    coalitions = some_coalitions(6, 8)
    rows = game.with_gradients()(coalitions)
    for c, coalition in enumerate(coalitions):
        for unit in range(6):
            on, off = coalition.copy(), coalition.copy()
            on[unit], off[unit] = True, False
            contribution = game(np.stack([on, off]))
            torch.testing.assert_close(
                rows[c, 1 + unit], contribution[0] - contribution[1], rtol=1e-5, atol=1e-6
            )


def test_gates_without_a_derivative_and_wide_outputs_are_refused():
    with pytest.raises(MSAInputError, match="mode='remove'"):
        ModelGame(
            build("mixtral"), INPUTS, Experts("model.layers.*.mlp", mode="reroute"), **WHOLE
        ).with_gradients()
    with pytest.raises(MSAInputError, match="per sample"):
        ModelGame(build("mixtral"), INPUTS, Heads("model.layers.*.self_attn")).with_gradients()


def test_the_gradient_estimate_of_an_lm_game_is_unbiased():
    """Issue 22's check: 8 heads of a tiny Mixtral, per-token target log-probs [4, 7]; the mean
    over 40 seeded runs of 4 orders equals the exact modes (all 256 coalitions) within its
    standard error."""
    game = ModelGame(
        build("mixtral"), INPUTS, Heads("model.layers.*.self_attn"), output="target_logprob"
    )
    truth = shapley_modes(game, method="exact").modes
    runs = np.stack(
        [
            shapley_modes(game, method="gradient", n_permutations=4, seed=seed).modes
            for seed in range(40)
        ]
    )
    z = (runs.mean(0) - truth) / (runs.std(0, ddof=1) / np.sqrt(len(runs)))
    # 224 elements: the largest |z| of 224 standard normals is below 4.5 but for 1 in 600, and
    # the mean of z^2 is 1 within a few tenths
    assert np.abs(z).max() < 4.5, np.abs(z).max()
    assert 0.6 < float(np.mean(z**2)) < 1.6, float(np.mean(z**2))
