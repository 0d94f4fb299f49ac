"""Study 1: regularisation concentrates an MLP's computation in a few hub neurons (PAPER.md "Study
1").

The game is the bundled MLPs' ``class_accuracy`` output (per-image
shares of the 10 per-class accuracies on the fixed test subset), so a result's modes are
``[N, B, 10]`` and the paper's class modes are their sum over images (``class_modes``). Then:

- ``neuron_phi``: phi_i, neuron i's mode averaged over the 10 classes; ``idc``: the Index of
  Distributed Computation, ``p_i = phi_i^2 / sum_j phi_j^2``, ``IDC = -sum p_i ln p_i / ln N``;
- ``lesion_by_rank``: accuracy after lesioning the top-k neurons by phi and after keeping only them;
- ``weight_magnitude`` and ``pearson``: each neuron's mean |weight| (in and out) against phi;
- ``pruning``: keep k neurons chosen by phi, by weight magnitude or at random;
- beside IDC: the Gini coefficient of |phi| and the fewest neurons holding 50/80/90% of it
  (``modes.SHARES``);
- ``analyse`` gathers one model's numbers, ``summarise`` the mean and spread over seeds.

Accuracies of lesioned networks come from a ``ModelGame`` with output ``correct`` on the same
images.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from msa_core.analysis import lesions
from msa_core.analysis.lesions import top_k_count
from msa_core.analysis.modes import SHARES, gini, units_for_share
from msa_core.errors import MSAInputError
from msa_core.result import ModesResult
from msa_core.zoo import LoadedModel

PRUNE_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def class_modes(result: ModesResult) -> np.ndarray:
    """The paper's modes ``[N, K]``: per-image modes ``[N, B, K]`` summed over images (``[N, K]``
    passes as is)."""
    modes = np.asarray(result.modes, dtype=np.float64)
    if modes.ndim == 3:
        return modes.sum(axis=1)
    if modes.ndim == 2:
        return modes
    raise MSAInputError(
        f"study 1 needs modes [N, B, K] or [N, K] (a class_accuracy game); got {list(modes.shape)}"
    )


def neuron_phi(modes: np.ndarray) -> np.ndarray:
    """phi ``[N]``: each neuron's mode averaged over the classes of ``modes [N, K]``."""
    return np.asarray(modes, dtype=np.float64).mean(axis=1)


def idc(phi: np.ndarray) -> float:
    """Index of Distributed Computation of ``phi [N]``: ``-sum p ln p / ln N`` with
    ``p = phi^2 / sum phi^2``.

    1 when every unit carries an equal share, towards 0 when one unit does everything (0 ln 0 = 0).

    >>> idc(np.array([1.0, -1.0, 1.0, 1.0]))
    1.0
    >>> idc(np.array([2.0, 0.0, 0.0]))
    0.0
    """
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim != 1 or phi.size < 2:
        raise MSAInputError(
            f"IDC needs a vector of at least 2 contributions; got shape {list(phi.shape)}"
        )
    total = float(np.sum(phi**2))
    if not np.isfinite(total) or total == 0.0:
        raise MSAInputError("IDC is undefined when every contribution is zero (or not finite)")
    p = phi**2 / total
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)) / np.log(phi.size)) + 0.0  # + 0.0: no -0.0


def class_correlation(modes: np.ndarray) -> np.ndarray:
    """Pearson correlation ``[K, K]`` between classes of their mode vectors over neurons
    (``modes [N, K]``).

    A class whose modes are all equal correlates with nothing: its row and column are 0, its
    diagonal 1.
    """
    modes = np.asarray(modes, dtype=np.float64)
    centred = modes - modes.mean(axis=0)
    norms = np.linalg.norm(centred, axis=0)
    scaled = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)
    corr = scaled.T @ scaled
    np.fill_diagonal(corr, 1.0)
    return corr


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two vectors; 0 when either is constant."""
    x, y = (np.asarray(v, dtype=np.float64) - np.mean(v) for v in (x, y))
    denominator = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / denominator) if denominator > 0 else 0.0


def weight_magnitude(model: nn.Module, fan_in: str = "fc1", fan_out: str = "fc2") -> np.ndarray:
    """Each hidden neuron's mean |weight| over its incoming (``fan_in`` rows) and outgoing
    (``fan_out`` columns) weights together: ``[N]``. Biases are not weights."""
    modules = dict(model.named_modules())
    missing = [name for name in (fan_in, fan_out) if not isinstance(modules.get(name), nn.Linear)]
    if missing:
        raise MSAInputError(
            f"weight_magnitude needs Linear layers named {missing}; the model has "
            f"{[name for name, m in modules.items() if isinstance(m, nn.Linear)]}"
        )
    with torch.no_grad():
        weights = torch.cat([modules[fan_in].weight.abs(), modules[fan_out].weight.abs().T], dim=1)
        return weights.mean(dim=1).double().cpu().numpy()


def accuracy(loaded: LoadedModel, coalitions: np.ndarray) -> np.ndarray:
    """Test-subset accuracy ``[C]`` of the model with the units lesioned where ``coalitions [C, N]``
    is False."""
    values = loaded.game(output="correct")(np.asarray(coalitions, dtype=bool))
    return values.double().mean(dim=1).cpu().numpy()


@dataclass
class RankLesion:
    """Accuracy after lesioning the top-k units by phi (``lesioned``) and after keeping only them
    (``kept``)."""

    ks: np.ndarray  # [M] numbers of units, 0..N
    lesioned: np.ndarray  # [M]
    kept: np.ndarray  # [M]


def lesion_by_rank(
    loaded: LoadedModel, phi: np.ndarray, ks: Sequence[int] | None = None
) -> RankLesion:
    """Lesion-by-rank curves over ``ks`` (default every k from 0 to N)."""
    counts, curves = lesions.rank_curves(
        phi, ks, lambda coalitions: accuracy(loaded, coalitions), ("lesion_top", "keep_top")
    )
    return RankLesion(counts, curves["lesion_top"], curves["keep_top"])


@dataclass
class NeuronPruning:
    """Accuracy when keeping only k units chosen by Shapley value, by weight magnitude or at
    random."""

    ks: np.ndarray  # [M]
    shapley: np.ndarray  # [M]
    magnitude: np.ndarray  # [M]
    random_mean: np.ndarray  # [M] mean over random draws
    random_std: np.ndarray  # [M]


def pruning(
    loaded: LoadedModel,
    phi: np.ndarray,
    weight: np.ndarray,
    fractions: Sequence[float] = PRUNE_FRACTIONS,
    n_random: int = 20,
    seed: int = 0,
) -> NeuronPruning:
    """Keep-only-k accuracy for k = ``fractions`` of N: top-k by phi, top-k by |weight|,
    ``n_random`` random sets.
    """
    ks, (shapley, magnitude), random = lesions.pruning_curves(
        [phi, weight], fractions, lambda coalitions: accuracy(loaded, coalitions), n_random, seed
    )
    return NeuronPruning(ks, shapley, magnitude, random.mean(axis=1), random.std(axis=1))


@dataclass
class ModelFindings:
    """Study 1's numbers for one model and one result."""

    name: str
    facts: dict  # the card's facts: hidden, regime, seed, data, ...
    accuracy: float  # intact accuracy on the test subset
    class_modes: np.ndarray  # [N, K]
    phi: np.ndarray  # [N]
    idc: float
    gini: float  # Gini coefficient of |phi|
    units_for: dict[float, int]  # share -> fewest neurons holding that share of |phi|
    weight: np.ndarray  # [N] mean |weight| in and out
    weight_r: float  # Pearson r(weight, phi)
    lesion_top: float  # accuracy after lesioning the top 20% by phi
    keep_top: float  # accuracy keeping only the top 20%
    efficiency_gap: float
    n_evaluations: int
    seconds: float  # wall time of the Shapley run (from the result's meta, 0 if absent)

    def row(self) -> dict:
        """The scalar numbers as one table row."""
        return {
            "model": self.name,
            **{key: self.facts[key] for key in ("data", "hidden", "regime", "seed")},
            "accuracy": self.accuracy,
            "idc": self.idc,
            "gini": self.gini,
            **{f"units_{share:.0%}": count for share, count in self.units_for.items()},
            "lesion_top20": self.lesion_top,
            "keep_top20": self.keep_top,
            "weight_r": self.weight_r,
            "efficiency_gap": self.efficiency_gap,
            "evaluations": self.n_evaluations,
            "seconds": self.seconds,
        }


def analyse(loaded: LoadedModel, result: ModesResult) -> ModelFindings:
    """Study 1's numbers for a bundled MLP and a ``class_accuracy`` result of its hidden neurons."""
    modes = class_modes(result)
    phi = neuron_phi(modes)
    n = len(phi)
    weight = weight_magnitude(loaded.model)
    if len(weight) != n:
        raise MSAInputError(
            f"the result has {n} players but the model has {len(weight)} hidden neurons"
        )
    k = top_k_count(n)
    ranked = lesion_by_rank(loaded, phi, [0, k])
    return ModelFindings(
        name=loaded.card.name,
        facts=dict(loaded.card.facts),
        accuracy=float(ranked.lesioned[0]),
        class_modes=modes,
        phi=phi,
        idc=idc(phi),
        gini=gini(phi),
        units_for={share: units_for_share(phi, share) for share in SHARES},
        weight=weight,
        weight_r=pearson(weight, phi),
        lesion_top=float(ranked.lesioned[1]),
        keep_top=float(ranked.kept[1]),
        efficiency_gap=result.efficiency_gap(),
        n_evaluations=result.n_evaluations,
        seconds=float(result.meta.get("wall_seconds", 0.0)),
    )


SUMMARY_FIELDS = ("accuracy", "idc", "gini", "lesion_top", "keep_top", "weight_r")


def summarise(
    findings: Sequence[ModelFindings],
) -> dict[tuple[str, int, str], dict[str, tuple[float, float]]]:
    """Mean and standard deviation over seeds of each number, keyed by (data, hidden, regime)."""
    groups: dict[tuple[str, int, str], list[ModelFindings]] = defaultdict(list)
    for item in findings:
        groups[item.facts["data"], item.facts["hidden"], item.facts["regime"]].append(item)
    return {
        key: {
            field: (
                float(np.mean([getattr(f, field) for f in items])),
                float(np.std([getattr(f, field) for f in items])),
            )
            for field in SUMMARY_FIELDS
        }
        | {"seeds": (float(len(items)), 0.0)}
        for key, items in sorted(groups.items())
    }
