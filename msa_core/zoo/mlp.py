"""Study 1 of the paper: Linear -> LeakyReLU -> Linear classifiers on sklearn digits.

Recipe (PAPER.md): Adam lr 0.01, batch 64, 5,000 steps; regimes ``none``, ``l1`` (loss + 1e-4 *
sum |theta| over all parameters) and ``l2`` (Adam weight decay 1e-4). Players: the hidden neurons,
lesioned after the activation. Names: ``mlp-digits-h{hidden}-{regime}-s{seed}``.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cache

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from msa_core.units import Neurons
from msa_core.zoo.card import ModelCard

REGIMES = ("none", "l1", "l2")
HIDDEN_SIZES = (16, 32, 64, 128)
SEEDS = (0, 1, 2)
STEPS, BATCH, LR, PENALTY = 5000, 64, 0.01, 1e-4
TEST_IMAGES = 360  # held out from training; the game's default inputs
CLASSIFIER_OUTPUTS = ("logits", "log_probs", "probs", "correct", "target_logprob")


def build(hidden: int, n_inputs: int = 64, n_classes: int = 10) -> nn.Sequential:
    """The architecture, with modules ``fc1``, ``hidden`` (the activation: players sit here), ``fc2``."""
    return nn.Sequential(OrderedDict(fc1=nn.Linear(n_inputs, hidden), hidden=nn.LeakyReLU(),
                                     fc2=nn.Linear(hidden, n_classes)))


@cache
def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """sklearn digits scaled to [0, 1]: train images ``[1437, 64]``, labels, test images ``[360, 64]``, labels."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[order], dtype=torch.long)
    return x[TEST_IMAGES:], y[TEST_IMAGES:], x[:TEST_IMAGES], y[:TEST_IMAGES]


def train(hidden: int, regime: str, seed: int, steps: int = STEPS) -> nn.Sequential:
    """Train one model with the paper's recipe, deterministically (one thread, fixed seeds)."""
    x, y, _, _ = digits_split()
    torch.manual_seed(seed)
    model = build(hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=PENALTY if regime == "l2" else 0.0)
    batches = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(x), (BATCH,), generator=batches)
        loss = nn.functional.cross_entropy(model(x[index]), y[index])
        if regime == "l1":
            loss = loss + PENALTY * sum(p.abs().sum() for p in model.parameters())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def name_of(hidden: int, regime: str, seed: int) -> str:
    return f"mlp-digits-h{hidden}-{regime}-s{seed}"


def cards() -> list[ModelCard]:
    """One card per hidden size, regime and seed."""
    return [ModelCard(
        name=name_of(hidden, regime, seed), family="mlp",
        description=f"64-{hidden}-10 MLP on sklearn digits, {regime} regularisation, seed {seed}",
        granularities={"hidden neurons": (Neurons("hidden"),)}, outputs=CLASSIFIER_OUTPUTS,
        build=lambda hidden=hidden: build(hidden), data=lambda: digits_split()[2:],
        train=lambda hidden=hidden, regime=regime, seed=seed: train(hidden, regime, seed),
        facts={"hidden": hidden, "regime": regime, "seed": seed, "data": "sklearn digits"},
    ) for hidden in HIDDEN_SIZES for regime in REGIMES for seed in SEEDS]
