"""The one rule for scoring a lesion of each kind of model (``msa_core.analysis.lesion_scores``)."""

import numpy as np
import pytest

from msa_core.analysis.lesion_scores import LesionScore, lesion_score, lesion_view
from msa_core.zoo import load_model


@pytest.mark.parametrize(
    ("name", "output", "score", "view"),
    [
        ("mlp-digits-h32-none-s0", "logits", "accuracy", "classifier"),
        ("moe-fortunes-5lang", "target_logprob", "mean log-prob per byte", "language model"),
        ("gan-digits-s0", "image", "mean |change| of the output", "image"),
    ],
)
def test_each_model_kind_gets_its_score_and_view(name, output, score, view):
    loaded = load_model(name)
    assert lesion_score(loaded) == LesionScore(output, score)
    assert lesion_view(loaded) == view


def test_scores_per_coalition_by_hand():
    labels = np.array([0, 1, 1])
    logits = np.array(
        [
            [[2.0, 0.0], [0.0, 2.0], [0.0, 2.0]],  # all three right
            [[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]],  # the second wrong
        ]
    )
    accuracy = LesionScore("logits", "accuracy").evaluate(logits, logits[:1], labels)
    np.testing.assert_allclose(accuracy, [1.0, 2 / 3])
    intact = np.array([[[1.0, -1.0]]])
    changed = np.array([[[1.0, -1.0]], [[0.0, 1.0]]])
    change = LesionScore("image", "mean |change| of the output").evaluate(changed, intact, None)
    np.testing.assert_allclose(change, [0.0, 1.5])
