"""The LLM study's analyses on a tiny random Llama with a word tokenizer (no download): the group x
unit matrix and its efficiency, lesion helpers against direct evaluations and weight edits."""

import copy
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from test_tasks import ROWS, tiny_llama, word_tokenizer  # noqa: E402

from msa_core import shapley_modes  # noqa: E402
from msa_core.analysis import llm  # noqa: E402
from msa_core.analysis.group_heatmap import group_matrix_figure  # noqa: E402
from msa_core.errors import MSAInputError  # noqa: E402
from msa_core.lesion import ModelGame  # noqa: E402
from msa_core.tasks import encode_task, task_from_rows, task_output_fn  # noqa: E402
from msa_core.units import Heads  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup():
    model = tiny_llama()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(8.0 if parameter.ndim == 2 else 1.0)  # lesions should matter
    tokenizer, task = word_tokenizer(), task_from_rows(ROWS)
    encoded = encode_task(task, tokenizer)
    game = ModelGame(
        model,
        encoded.inputs,
        Heads("model.layers.*.self_attn"),
        output=task_output_fn(encoded, "task_logprob"),
    )
    return model, tokenizer, task, game, shapley_modes(game, method="exact")


def test_group_matrix_is_the_group_mean_of_modes_and_is_efficient(setup):
    _, _, task, game, result = setup
    matrix = llm.group_matrix(result, task)
    assert matrix.shape == (3, 8)
    np.testing.assert_allclose(matrix[0], result.modes[:, [0, 2]].mean(1))
    gap = (result.v_full - result.v_empty)[[0, 2]].mean()
    np.testing.assert_allclose(matrix[0].sum(), gap, atol=1e-4)
    np.testing.assert_array_equal(llm.unit_layers(result.player_names), [0] * 4 + [1] * 4)
    with pytest.raises(MSAInputError, match="L<layer>"):
        llm.unit_layers(["fc1.n0"])
    with pytest.raises(MSAInputError, match="task game over 2 examples"):
        llm.group_matrix(result, task_from_rows(ROWS[:2]))


def test_lesion_helpers_match_direct_evaluations(setup):
    _, _, task, game, result = setup
    matrix = llm.group_matrix(result, task)
    intact = -game(np.ones((1, 8), bool))[0].double().numpy()
    groups = task.group_index()
    expected_intact = [intact[groups == g].mean() for g in range(3)]

    check = llm.top_vs_random(game, task, matrix, fraction=0.25, draws=3)
    assert check.k == 2 and check.random.shape == (3, 3)
    np.testing.assert_allclose(check.intact, expected_intact, rtol=1e-6)
    top_of_first = np.argsort(-matrix[0], kind="stable")[:2]
    row = np.ones(8, bool)
    row[top_of_first] = False
    direct = -game(row[None])[0].double().numpy()
    np.testing.assert_allclose(check.top[0], direct[groups == 0].mean(), rtol=1e-6)

    lesions = llm.selective_lesions(game, task, matrix, k=2)
    assert len(lesions) == 3 and all(len(lesion.experts) == 2 for lesion in lesions)
    np.testing.assert_allclose(lesions[1].loss_before, expected_intact, rtol=1e-6)
    with pytest.raises(MSAInputError, match="k must be"):
        llm.selective_lesions(game, task, matrix, k=9)

    curves = llm.removal_curves(game, task, matrix.mean(0), ks=[0, 3, 8])
    np.testing.assert_allclose(curves.highest_first[0], np.mean(expected_intact), rtol=1e-6)
    np.testing.assert_allclose(
        curves.highest_first[-1], curves.lowest_first[-1], rtol=1e-6
    )  # all removed
    empty = -game(np.zeros((1, 8), bool))[0].double().numpy()
    np.testing.assert_allclose(
        curves.lowest_first[-1], np.mean([empty[groups == g].mean() for g in range(3)]), rtol=1e-6
    )


def test_greedy_continuation_under_a_lesion_equals_generation_with_edited_weights(setup):
    model, tokenizer, _, game, _ = setup
    prompt = "The capital of France is"
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    keep = np.ones(8, bool)
    keep[[1, 6]] = False  # L0.H1 and L1.H2
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.model.layers[0].self_attn.o_proj.weight[:, 4:8] = 0
        edited.model.layers[1].self_attn.o_proj.weight[:, 8:12] = 0
    for net, row in ((model, None), (edited, keep)):
        expected = net.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=5,
            do_sample=False,
            pad_token_id=1,
        )
        got = llm.greedy_continuation(game, tokenizer, prompt, row, max_new_tokens=5)
        assert got == tokenizer.decode(expected[0, ids.shape[1] :], skip_special_tokens=True)
    assert not any(
        m._forward_pre_hooks or m._forward_hooks for m in model.modules()
    )  # hooks removed


def test_analyse_gives_every_number_of_the_study(setup, tmp_path):
    from msa_core.tasks import with_task
    from msa_core.zoo.hf import load_checkpoint

    model, tokenizer, task, _, _ = setup
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = with_task(load_checkpoint(tmp_path), ROWS)
    result = shapley_modes(loaded.game("heads"), method="permutation", n_permutations=2, seed=0)
    result.meta["units"] = "heads"
    findings = llm.analyse(loaded, result, k=2, draws=2, max_new_tokens=3)
    assert findings.groups == ["capital", "addition", "letters"] and findings.matrix.shape == (3, 8)
    assert findings.shares.shape == (3, 2) and np.allclose(findings.shares.sum(1), 1)
    assert findings.efficiency_gap < 1e-4 and len(findings.lesions) == 3
    assert set(findings.verdicts()) == {
        "top 10% beats random, every group",
        "2+ groups selective 2x",
    }
    assert list(findings.curves.ks) == [0, 1, 2, 4, 8]
    assert isinstance(findings.lesions[0].continuation_after, str)
    for figure in (
        group_matrix_figure(findings.matrix, findings.player_names, findings.groups),
        llm.layer_share_figure(findings.shares, findings.groups),
        llm.correlation_figure(findings.correlation, findings.groups),
        llm.lesion_figure(findings.lesions[0], findings.groups),
        llm.removal_figure(findings.curves),
    ):
        assert figure.data
