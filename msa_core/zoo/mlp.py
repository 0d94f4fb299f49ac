"""Study 1 of the paper: Linear -> LeakyReLU -> Linear classifiers with and without L1 / L2
regularisation.

Recipe (PAPER.md): Adam lr 0.01, batch 64; regimes ``none``, ``l1`` (loss + 1e-4 * sum |theta| over
all parameters) and ``l2`` (Adam weight decay 1e-4); seeds 0, 1, 2. Two datasets:

- sklearn digits (64 inputs, 1,437 training images): hidden 16, 32, 64, 128; 5,000 steps (about 220
  epochs: with 50 epochs the L1 effect nearly vanishes, PAPER.md). Names
  ``mlp-digits-h{N}-{regime}-s{seed}``.
- Fashion-MNIST (784 inputs, 60,000 training images from Debian's ``dataset-fashion-mnist``): hidden
  64, 128; 5,625 steps (6 epochs, the paper's MNIST recipe). Names
  ``mlp-fashion-h{N}-{regime}-s{seed}``.

Players: the hidden neurons, lesioned after the activation. Outputs: ``class_accuracy`` (the paper's
game, the default; see ``class_accuracy``), and the named ``logits``, ``log_probs``, ``probs``,
``correct``, ``target_logprob`` per image.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from msa_core.errors import MSAInputError
from msa_core.lesion.outputs import CustomOutput, logits_of
from msa_core.units import Neurons
from msa_core.zoo import fashion
from msa_core.zoo.card import ModelCard

REGIMES = ("none", "l1", "l2")
SEEDS = (0, 1, 2)
BATCH, LR, PENALTY = 64, 0.01, 1e-4
N_CLASSES = 10
TEST_IMAGES = 360  # digits held out from training; the game's default inputs
OUTPUTS = ("class_accuracy", "logits", "log_probs", "probs", "correct", "target_logprob")

Split = tuple[torch.Tensor, torch.Tensor]  # images [n, inputs] in [0, 1], labels [n]


@cache
def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """sklearn digits scaled to [0, 1]: train images ``[1437, 64]``, labels, test images
    ``[360, 64]``, labels."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[order], dtype=torch.long)
    return x[TEST_IMAGES:], y[TEST_IMAGES:], x[:TEST_IMAGES], y[:TEST_IMAGES]


@dataclass(frozen=True)
class Dataset:
    """One dataset of the family: its training and (shipped) test data and its step count."""

    name: str
    description: str
    n_inputs: int
    hidden_sizes: tuple[int, ...]
    steps: int
    train_data: Callable[[], Split]
    test_data: Callable[[], Split]


DATASETS = {
    "digits": Dataset(
        "digits",
        "sklearn digits",
        64,
        (16, 32, 64, 128),
        5000,
        lambda: digits_split()[:2],
        lambda: digits_split()[2:],
    ),
    "fashion": Dataset(
        "fashion",
        "Fashion-MNIST",
        784,
        (64, 128),
        5625,
        fashion.train_split,
        fashion.shipped_subset,
    ),
}


def build(hidden: int, n_inputs: int = 64, n_classes: int = N_CLASSES) -> nn.Sequential:
    """The architecture, with modules ``fc1``, ``hidden`` (the activation: players sit here),
    ``fc2``."""
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(n_inputs, hidden), hidden=nn.LeakyReLU(), fc2=nn.Linear(hidden, n_classes)
        )
    )


def train(
    hidden: int, regime: str, seed: int, dataset: str = "digits", steps: int | None = None
) -> nn.Sequential:
    """Train one model with the paper's recipe, deterministically (one thread, fixed seeds)."""
    data = DATASETS[dataset]
    x, y = data.train_data()
    if dataset == "fashion" and not fashion.SUBSET_PATH.exists():
        fashion.export_test_subset()
    torch.manual_seed(seed)
    model = build(hidden, data.n_inputs)
    optimiser = torch.optim.Adam(
        model.parameters(), lr=LR, weight_decay=PENALTY if regime == "l2" else 0.0
    )
    batches = torch.Generator().manual_seed(seed)
    for _ in range(steps or data.steps):
        index = torch.randint(len(x), (BATCH,), generator=batches)
        loss = nn.functional.cross_entropy(model(x[index]), y[index])
        if regime == "l1":
            loss = loss + PENALTY * sum(p.abs().sum() for p in model.parameters())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-image shares of the per-class accuracies: logits ``[C * B, K]``, labels ``[B]`` ->
    ``[C * B, K]``.

    Image b of class y adds ``correct_b / count(y)`` to entry y and 0 elsewhere, so summing the
    values of the B images of one copy gives the K per-class accuracies (the paper's game; a class
    without images scores 0). Games must return per-image values, and Shapley modes are linear, so
    the paper's mode of neuron i is ``result.modes[i].sum(0)`` over the image axis.
    """
    images = labels.shape[0]
    if logits.ndim != 2 or logits.shape[0] % images:
        raise MSAInputError(
            f"class_accuracy needs logits [C * B, K] for the B = {images} labelled images; got "
            f"{list(logits.shape)}"
        )
    labels = labels.to(logits.device)
    onehot = nn.functional.one_hot(labels, logits.shape[-1]).float()
    share = onehot / onehot.sum(0).clamp(min=1.0)  # [B, K]
    correct = (logits.argmax(-1) == labels.repeat(logits.shape[0] // images)).float()
    return correct[:, None] * share.repeat(logits.shape[0] // images, 1)


def class_accuracy_output(inputs: torch.Tensor, labels: torch.Tensor | None) -> CustomOutput:
    """The ``class_accuracy`` output of a game on ``inputs`` with their ``labels [B]``."""
    if labels is None:
        raise MSAInputError(
            "output='class_accuracy' needs the inputs' class labels: pass labels=[B]"
        )
    return CustomOutput(lambda raw, copies: class_accuracy(logits_of(raw), labels))


def name_of(hidden: int, regime: str, seed: int, dataset: str = "digits") -> str:
    return f"mlp-{dataset}-h{hidden}-{regime}-s{seed}"


def _card(data: Dataset, hidden: int, regime: str, seed: int) -> ModelCard:
    return ModelCard(
        name=name_of(hidden, regime, seed, data.name),
        family="mlp",
        description=(
            f"{data.n_inputs}-{hidden}-10 MLP on {data.description}, {regime} regularisation, seed "
            f"{seed}"
        ),
        granularities={"hidden neurons": (Neurons("hidden"),)},
        outputs=OUTPUTS,
        build=lambda: build(hidden, data.n_inputs),
        data=data.test_data,
        train=lambda: train(hidden, regime, seed, data.name),
        output_fns={"class_accuracy": class_accuracy_output},
        facts={
            "hidden": hidden,
            "regime": regime,
            "seed": seed,
            "data": data.description,
            "steps": data.steps,
        },
    )


def cards() -> list[ModelCard]:
    """One card per dataset, hidden size, regime and seed."""
    return [
        _card(data, hidden, regime, seed)
        for data in DATASETS.values()
        for hidden in data.hidden_sizes
        for regime in REGIMES
        for seed in SEEDS
    ]
