"""Before launch on the real SmolLM2-135M (marked llm): capitals it knows, made-up words it cannot
know (flagged), from one forward; and the top-k budget estimate from a 2-permutation probe of its
30 layers (also slow: about a minute of CPU)."""

import numpy as np
import pytest
from fetched import require_fetched

pytestmark = pytest.mark.llm
ROWS = [
    {"prompt": "The capital of France is", "target": " Paris", "group": "capital"},
    {"prompt": "The capital of Germany is", "target": " Berlin", "group": "capital"},
    {"prompt": "The capital of Italy is", "target": " Rome", "group": "capital"},
    {"prompt": "Zorbly quenched the", "target": " fliptangle", "group": "made-up"},
    {"prompt": "Glorp vintesh morkle", "target": " skrandovar", "group": "made-up"},
]


@pytest.fixture(scope="module")
def loaded():
    import torch

    from msa_core.tasks import with_task
    from msa_core.zoo import load_model

    require_fetched("smollm2")
    torch.set_num_threads(1)
    return with_task(load_model("smollm2-135m"), ROWS)


def test_capitals_pass_and_made_up_words_are_flagged(loaded):
    from msa_core.analysis.llm_preflight import group_checks

    capital, made_up = group_checks(loaded.model, loaded.task)
    assert capital.group == "capital" and capital.accuracy >= 2 / 3 and capital.problem is None
    assert made_up.accuracy == 0 and made_up.logprob < -10 and made_up.problem


@pytest.mark.slow
def test_the_top_k_budget_of_its_layers_is_sized_from_a_probe(loaded):
    from msa_core.analysis.llm_preflight import llm_preflight

    game = loaded.game("layers", "task_logprob")
    found = llm_preflight(loaded.model, loaded.task, game, 1000, k=3, probe_permutations=2)
    budget = found.top_k
    assert budget is not None and len(budget.permutations) == 2
    assert all(p >= 2 for p in budget.permutations) and np.isfinite(found.seconds)
    assert [check.group for check in found.flagged] == ["made-up"]
