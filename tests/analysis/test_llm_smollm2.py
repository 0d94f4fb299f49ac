"""The issue's pass criteria on SmolLM2-135M (marked slow and llm: the heads run, 1,616 evaluations
with 6 permutations, takes about 15 CPU-minutes; a stored run in $MSA_CACHE_DIR is reused).
Criteria: efficiency per example to float precision; for every group, removing its top 10% of heads
by Shapley value raises its loss more than 10% random heads (mean of 5 draws); at least two groups'
selective lesions (4 heads, as the paper's 4 experts) raise their own loss at least 2x the others'
mean. Measured: all pass with 6 permutations (opposite 15.5x, counting 8.4x); with 3 permutations
the third failed (most heads' modes were below their standard error)."""

import numpy as np
import pytest
from fetched import require_fetched

pytestmark = [pytest.mark.slow, pytest.mark.llm]
SELECTIVE_K = 4  # the paper lesioned 4 experts per language
PERMUTATIONS = 6


@pytest.fixture(scope="module")
def findings():
    import torch

    from msa_core.analysis import llm
    from msa_core.runs import RunRequest, execute
    from msa_core.runs.store import RunStore

    require_fetched("smollm2")
    torch.set_num_threads(1)
    request = RunRequest(
        model="smollm2-135m", units="heads", method="permutation", n_permutations=PERMUTATIONS
    )
    result = execute(request, RunStore())
    return llm.analyse(request.load(), result, k=SELECTIVE_K), result


def test_efficiency_holds_per_example(findings):
    found, result = findings
    scale = np.abs(result.v_full - result.v_empty).max()
    assert found.efficiency_gap < 1e-5 * max(scale, 1.0)


def test_every_group_loses_more_without_its_top_heads_than_without_random_heads(findings):
    found, _ = findings
    assert found.top_vs_random.passed().all(), found.top_vs_random


def test_at_least_two_selective_lesions_are_twice_as_selective(findings):
    found, _ = findings
    ratios = [lesion.ratio for lesion in found.lesions]
    assert sum(r >= 2 for r in ratios) >= 2, dict(zip(found.groups, ratios, strict=True))
