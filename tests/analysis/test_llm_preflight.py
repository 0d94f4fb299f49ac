"""Before launch of an LLM task run: per-group intact checks (one forward), the top-k budget
estimate (its 1 / sqrt(permutations) scaling against a simulated game with known scores), on a
tiny random Llama; the real SmolLM2 in test_llm_preflight_smollm2.py."""

import os
from statistics import NormalDist

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")

from test_tasks import tiny_llama, word_tokenizer  # noqa: E402

from msa_core.analysis.llm_preflight import (  # noqa: E402
    LOW_LOGPROB,
    GroupCheck,
    GroupMeanGame,
    llm_preflight,
    needed_permutations,
    top_k_budget,
)
from msa_core.errors import MSAInputError  # noqa: E402
from msa_core.lesion import ModelGame  # noqa: E402
from msa_core.tasks import encode_task, task_from_rows, task_output_fn, task_values  # noqa: E402
from msa_core.units import Heads  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPTS = ["The capital of France is", "2 + 3 =", "The capital of Germany is", "a"]


def encoded_task(model):
    """Group "known": targets the model's own greedy next word; "unknown": targets it ranks
    last."""
    tokenizer = word_tokenizer()
    rows = []
    for prompt in PROMPTS:
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1]
        for group, token in (("known", logits.argmax()), ("unknown", logits.argmin())):
            rows.append(
                {"prompt": prompt, "target": " " + tokenizer.decode([int(token)]), "group": group}
            )
    return encode_task(task_from_rows(rows), tokenizer)


def test_group_checks_come_from_one_forward_and_flag_what_the_model_cannot_do():
    model = tiny_llama()
    encoded = encoded_task(model)
    forwards = []
    hook = model.register_forward_hook(lambda *a: forwards.append(1))
    try:
        found = llm_preflight(model, encoded, game_of(model, encoded), 100, k=None)
    finally:
        hook.remove()
    known, unknown = found.groups
    assert (known.group, known.accuracy, unknown.accuracy) == ("known", 1.0, 0.0)
    with torch.no_grad():
        raw = model(**encoded.inputs)
    logprob = task_values(raw, encoded, "task_logprob").numpy()
    index = encoded.task.group_index()
    assert known.logprob == pytest.approx(logprob[index == 0].mean(), abs=1e-5)
    assert unknown.logprob == pytest.approx(logprob[index == 1].mean(), abs=1e-5)
    assert found.flagged == [unknown] and "none of its 4 examples" in (unknown.problem or "")
    assert found.seconds == pytest.approx(100 * found.seconds_per_evaluation)
    # the probe_game timing ran more forwards; the checks themselves: exactly one
    assert forwards and found.top_k is None
    lines = found.lines()
    assert len(lines) == 3 and "cannot do" in lines[1] and "cannot do" not in lines[0]
    assert "100 evaluations" in lines[2]
    low = GroupCheck("g", 3, LOW_LOGPROB - 0.1, 1 / 3)
    assert "probability on average" in (low.problem or "")
    assert GroupCheck("g", 3, LOW_LOGPROB + 0.1, 1 / 3).problem is None


def game_of(model, encoded):
    return ModelGame(
        model,
        encoded.inputs,
        Heads("model.layers.*.self_attn"),
        output=task_output_fn(encoded, "task_logprob"),
    )


def test_the_probe_runs_the_group_means_and_sizes_a_run():
    model = tiny_llama()
    encoded = encoded_task(model)
    game = game_of(model, encoded)
    grouped = GroupMeanGame(game, encoded.task.group_index(), 2)
    rows = np.random.default_rng(0).random((5, game.n_players)) < 0.5
    values = game(rows).numpy()
    index = encoded.task.group_index()
    np.testing.assert_allclose(
        grouped(rows).numpy(),
        np.stack([values[:, index == g].mean(1) for g in range(2)], 1),
        rtol=1e-6,
        atol=1e-6,
    )
    found = llm_preflight(model, encoded, game, 100, k=2, probe_permutations=3)
    budget = found.top_k
    assert budget is not None and found.seconds_per_evaluation == budget.seconds_per_evaluation
    assert "Resolving each group's top 2 units" in found.lines()[-1]
    assert len(budget.permutations) == 2 and min(budget.permutations) >= 3
    assert budget.seconds_per_evaluation > 0 and budget.evaluations >= 2 + 3 * (game.n_players - 1)
    with pytest.raises(MSAInputError, match="at least 2"):
        top_k_budget(game, encoded, probe_permutations=1)


def test_needed_permutations_scale_as_the_square_of_the_stderr():
    scores = np.array([[5.0], [4.0], [2.0], [1.0]])  # top 2: boundary 3.0, every gap 1 or 2
    z = NormalDist().inv_cdf(1 - 0.05 / 8)  # two-sided, Bonferroni over 4 units
    wide = needed_permutations(scores, np.full((4, 1), 2.0), 4, 2, 0.95)[0]
    assert wide == np.ceil(4 * (z * 2.0 / 1.0) ** 2)
    assert needed_permutations(scores, np.full((4, 1), 1.0), 4, 2, 0.95)[0] == np.ceil(
        4 * (z * 1.0) ** 2
    )  # half the stderr: a quarter of the permutations
    assert needed_permutations(scores, np.full((4, 1), 0.1), 4, 2, 0.95)[0] == 4  # the probe did
    tie = needed_permutations(np.array([[1.0], [1.0], [0.0]]), np.ones((3, 1)), 2, 1, 0.95)
    assert tie[0] == np.inf
    assert needed_permutations(scores, np.ones((4, 1)), 4, 4, 0.95)[0] == 4  # k = N: all are top


@pytest.mark.parametrize(("sd", "true_need"), [(1.0, 442), (0.3, 40)])
def test_the_estimate_from_a_small_probe_is_centred_on_what_the_game_needs(sd, true_need):
    """Units with known scores 3, 2.73, ..., 0 and samples of standard deviation ``sd`` per
    permutation: a 4-permutation probe's estimate of the permutations that resolve the top 3 has
    its median over seeds within 2x of the need computed from the true scores and sd (a single
    probe is noisy: the gaps next to the boundary are of the order of its standard errors)."""
    truth = np.linspace(3.0, 0.0, 12)[:, None]
    k, level, probe = 3, 0.95, 4
    assert needed_permutations(truth, np.full_like(truth, sd), 1, k, level)[0] == true_need
    ratios = []
    for seed in range(40):
        samples = truth + sd * np.random.default_rng(seed).standard_normal((len(truth), probe))
        stderr = samples.std(1, ddof=1, keepdims=True) / probe**0.5
        need = needed_permutations(samples.mean(1, keepdims=True), stderr, probe, k, level)[0]
        ratios.append(need / true_need)
    assert 0.5 <= np.median(ratios) <= 2.0, np.median(ratios)
