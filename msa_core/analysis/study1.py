"""Study 1: regularisation concentrates an MLP's computation in a few hub neurons (PAPER.md "Study 1").

Numbers first, figures from them. The game is the bundled MLPs' ``class_accuracy`` output (per-image
shares of the 10 per-class accuracies on the fixed test subset), so a result's modes are
``[N, B, 10]`` and the paper's class modes are their sum over images (``class_modes``). Then:

- ``neuron_phi``: phi_i, neuron i's mode averaged over the 10 classes; ``idc``: the Index of
  Distributed Computation, ``p_i = phi_i^2 / sum_j phi_j^2``, ``IDC = -sum p_i ln p_i / ln N``;
- ``lesion_by_rank``: accuracy after lesioning the top-k neurons by phi and after keeping only them;
- ``weight_magnitude`` and ``pearson``: each neuron's mean |weight| (in and out) against phi;
- ``pruning``: keep k neurons chosen by phi, by weight magnitude or at random;
- beside IDC: the Gini coefficient of |phi| and the fewest neurons holding 50/80/90% of it;
- ``analyse`` gathers one model's numbers, ``summarise`` the mean and spread over seeds.

Accuracies of lesioned networks come from a ``ModelGame`` with output ``correct`` on the same images.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import nn

from msa_core.analysis.modes import gini, units_for_share
from msa_core.errors import MSAInputError
from msa_core.result import ModesResult
from msa_core.zoo import LoadedModel

SHARES = (0.5, 0.8, 0.9)  # shares of |phi| whose holders are counted beside IDC
TOP_FRACTION = 0.2  # "the top 20% of neurons" of the pass criteria
PRUNE_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
REGIME_COLOURS = {"none": "#636efa", "l1": "#ef553b", "l2": "#00cc96"}


def class_modes(result: ModesResult) -> np.ndarray:
    """The paper's modes ``[N, K]``: per-image modes ``[N, B, K]`` summed over images (``[N, K]`` passes as is)."""
    modes = np.asarray(result.modes, dtype=np.float64)
    if modes.ndim == 3:
        return modes.sum(axis=1)
    if modes.ndim == 2:
        return modes
    raise MSAInputError(f"study 1 needs modes [N, B, K] or [N, K] (a class_accuracy game); got {list(modes.shape)}")


def neuron_phi(modes: np.ndarray) -> np.ndarray:
    """phi ``[N]``: each neuron's mode averaged over the classes of ``modes [N, K]``."""
    return np.asarray(modes, dtype=np.float64).mean(axis=1)


def idc(phi: np.ndarray) -> float:
    """Index of Distributed Computation of ``phi [N]``: ``-sum p ln p / ln N`` with ``p = phi^2 / sum phi^2``.

    1 when every unit carries an equal share, towards 0 when one unit does everything (0 ln 0 = 0).

    >>> idc(np.array([1.0, -1.0, 1.0, 1.0]))
    1.0
    >>> idc(np.array([2.0, 0.0, 0.0]))
    0.0
    """
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim != 1 or phi.size < 2:
        raise MSAInputError(f"IDC needs a vector of at least 2 contributions; got shape {list(phi.shape)}")
    total = float(np.sum(phi**2))
    if not np.isfinite(total) or total == 0.0:
        raise MSAInputError("IDC is undefined when every contribution is zero (or not finite)")
    p = phi**2 / total
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)) / np.log(phi.size)) + 0.0  # + 0.0: no -0.0


def class_correlation(modes: np.ndarray) -> np.ndarray:
    """Pearson correlation ``[K, K]`` between classes of their mode vectors over neurons (``modes [N, K]``).

    A class whose modes are all equal correlates with nothing: its row and column are 0, its diagonal 1.
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
    """Each hidden neuron's mean |weight| over its incoming (``fan_in`` rows) and outgoing (``fan_out`` columns)
    weights together: ``[N]``. Biases are not weights."""
    modules = dict(model.named_modules())
    missing = [name for name in (fan_in, fan_out) if not isinstance(modules.get(name), nn.Linear)]
    if missing:
        raise MSAInputError(f"weight_magnitude needs Linear layers named {missing}; the model has "
                            f"{[name for name, m in modules.items() if isinstance(m, nn.Linear)]}")
    with torch.no_grad():
        weights = torch.cat([modules[fan_in].weight.abs(), modules[fan_out].weight.abs().T], dim=1)
        return weights.mean(dim=1).double().cpu().numpy()


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Unit indices from the highest score to the lowest (ties: lower index first)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def top_k_count(n_units: int, fraction: float = TOP_FRACTION) -> int:
    """How many units "the top ``fraction``" is: rounded, at least 1."""
    return max(1, int(round(fraction * n_units)))


def accuracy(loaded: LoadedModel, coalitions: np.ndarray) -> np.ndarray:
    """Test-subset accuracy ``[C]`` of the model with the units lesioned where ``coalitions [C, N]`` is False."""
    values = loaded.game(output="correct")(np.asarray(coalitions, dtype=bool))
    return values.double().mean(dim=1).cpu().numpy()


def keep_only(order: np.ndarray, ks: Sequence[int], n_units: int) -> np.ndarray:
    """Coalitions ``[len(ks), N]`` keeping only the first k units of ``order`` intact."""
    coalitions = np.zeros((len(ks), n_units), dtype=bool)
    for row, k in enumerate(ks):
        coalitions[row, order[:k]] = True
    return coalitions


def unit_counts(ks: Sequence[int] | None, n_units: int, what: str = "unit") -> np.ndarray:
    """``ks`` as an int array checked to lie in 0..N (default: every count 0..N)."""
    ks = np.arange(n_units + 1) if ks is None else np.asarray(ks, dtype=int)
    if ks.size == 0 or ks.min() < 0 or ks.max() > n_units:
        raise MSAInputError(f"ks must be {what} counts between 0 and {n_units}; got {ks.tolist()}")
    return ks


def random_keep_only(ks: np.ndarray, n_units: int, n_random: int, seed: int) -> np.ndarray:
    """``[len(ks) * n_random, N]`` coalitions keeping k random units intact, ``n_random`` draws per k (k-major)."""
    rng = np.random.default_rng(seed)
    draws = np.stack([keep_only(rng.permutation(n_units), ks, n_units) for _ in range(n_random)], axis=1)
    return draws.reshape(-1, n_units)


@dataclass
class RankLesion:
    """Accuracy after lesioning the top-k units by phi (``lesioned``) and after keeping only them (``kept``)."""

    ks: np.ndarray  # [M] numbers of units, 0..N
    lesioned: np.ndarray  # [M]
    kept: np.ndarray  # [M]


def lesion_by_rank(loaded: LoadedModel, phi: np.ndarray, ks: Sequence[int] | None = None) -> RankLesion:
    """Lesion-by-rank curves over ``ks`` (default every k from 0 to N)."""
    n = len(phi)
    ks = unit_counts(ks, n)
    kept = keep_only(rank_order(phi), ks, n)
    values = accuracy(loaded, np.concatenate([~kept, kept]))
    return RankLesion(ks, values[: len(ks)], values[len(ks):])


@dataclass
class Pruning:
    """Accuracy when keeping only k units chosen by Shapley value, by weight magnitude or at random."""

    ks: np.ndarray  # [M]
    shapley: np.ndarray  # [M]
    magnitude: np.ndarray  # [M]
    random_mean: np.ndarray  # [M] mean over random draws
    random_std: np.ndarray  # [M]


def pruning(loaded: LoadedModel, phi: np.ndarray, weight: np.ndarray, fractions: Sequence[float] = PRUNE_FRACTIONS,
            n_random: int = 20, seed: int = 0) -> Pruning:
    """Keep-only-k accuracy for k = ``fractions`` of N: top-k by phi, top-k by |weight|, ``n_random`` random sets."""
    n = len(phi)
    ks = np.unique([top_k_count(n, f) for f in fractions])
    values = accuracy(loaded, np.concatenate([keep_only(rank_order(phi), ks, n), keep_only(rank_order(weight), ks, n),
                                              random_keep_only(ks, n, n_random, seed)]))
    random = values[2 * len(ks):].reshape(len(ks), n_random)
    return Pruning(ks, values[: len(ks)], values[len(ks): 2 * len(ks)], random.mean(axis=1), random.std(axis=1))


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
        return {"model": self.name, **{key: self.facts[key] for key in ("data", "hidden", "regime", "seed")},
                "accuracy": self.accuracy, "idc": self.idc, "gini": self.gini,
                **{f"units_{share:.0%}": count for share, count in self.units_for.items()},
                "lesion_top20": self.lesion_top, "keep_top20": self.keep_top, "weight_r": self.weight_r, "efficiency_gap": self.efficiency_gap,
                "evaluations": self.n_evaluations, "seconds": self.seconds}


def analyse(loaded: LoadedModel, result: ModesResult) -> ModelFindings:
    """Study 1's numbers for a bundled MLP and a ``class_accuracy`` result of its hidden neurons."""
    modes = class_modes(result)
    phi = neuron_phi(modes)
    n = len(phi)
    weight = weight_magnitude(loaded.model)
    if len(weight) != n:
        raise MSAInputError(f"the result has {n} players but the model has {len(weight)} hidden neurons")
    k = top_k_count(n)
    ranked = lesion_by_rank(loaded, phi, [0, k])
    return ModelFindings(
        name=loaded.card.name, facts=dict(loaded.card.facts), accuracy=float(ranked.lesioned[0]), class_modes=modes,
        phi=phi, idc=idc(phi), gini=gini(phi), units_for={share: units_for_share(phi, share) for share in SHARES},
        weight=weight, weight_r=pearson(weight, phi), lesion_top=float(ranked.lesioned[1]),
        keep_top=float(ranked.kept[1]), efficiency_gap=result.efficiency_gap(), n_evaluations=result.n_evaluations,
        seconds=float(result.meta.get("wall_seconds", 0.0)),
    )


SUMMARY_FIELDS = ("accuracy", "idc", "gini", "lesion_top", "keep_top", "weight_r")


def summarise(findings: Sequence[ModelFindings]) -> dict[tuple[str, int, str], dict[str, tuple[float, float]]]:
    """Mean and standard deviation over seeds of each number, keyed by (data, hidden, regime)."""
    groups: dict[tuple[str, int, str], list[ModelFindings]] = defaultdict(list)
    for item in findings:
        groups[item.facts["data"], item.facts["hidden"], item.facts["regime"]].append(item)
    return {key: {field: (float(np.mean([getattr(f, field) for f in items])),
                          float(np.std([getattr(f, field) for f in items])))
                  for field in SUMMARY_FIELDS} | {"seeds": (float(len(items)), 0.0)}
            for key, items in sorted(groups.items())}


def idc_figure(findings: Sequence[ModelFindings]) -> go.Figure:
    """IDC vs hidden size per regime: mean over seeds with its standard deviation, and every seed as a dot."""
    summary = summarise(findings)
    figure = go.Figure()
    for regime, colour in REGIME_COLOURS.items():
        keys = sorted(key for key in summary if key[2] == regime)
        if not keys:
            continue
        figure.add_scatter(x=[key[1] for key in keys], y=[summary[key]["idc"][0] for key in keys], name=regime,
                           mode="lines+markers", line_color=colour,
                           error_y=dict(type="data", array=[summary[key]["idc"][1] for key in keys]))
        seeds = [item for item in findings if item.facts["regime"] == regime]
        figure.add_scatter(x=[item.facts["hidden"] for item in seeds], y=[item.idc for item in seeds],
                           mode="markers", marker=dict(color=colour, size=5, opacity=0.4), showlegend=False,
                           text=[item.name for item in seeds], hoverinfo="text+y")
    figure.update_layout(xaxis_title="hidden neurons N", yaxis_title="IDC", xaxis_type="log",
                         title="Index of Distributed Computation (1 = evenly spread)")
    return figure


def heatmap_figure(findings: Sequence[ModelFindings], class_names: Sequence[str] | None = None) -> go.Figure:
    """Class x neuron modes side by side on one symmetric colour scale, neurons sorted by phi."""
    limit = max(float(np.abs(item.class_modes).max()) for item in findings) or 1.0
    figure = make_subplots(rows=1, cols=len(findings), subplot_titles=[item.name for item in findings],
                           shared_yaxes=True)
    for column, item in enumerate(findings, start=1):
        order = rank_order(item.phi)
        classes = list(class_names or range(item.class_modes.shape[1]))
        figure.add_heatmap(z=item.class_modes[order].T, x=[f"n{i}" for i in order], y=[str(c) for c in classes],
                           zmin=-limit, zmax=limit, colorscale="RdBu", reversescale=True, showscale=column == 1,
                           row=1, col=column, hovertemplate="neuron %{x}<br>class %{y}<br>mode %{z:.4f}<extra></extra>")
    figure.update_layout(title="Class x neuron modes (neurons by phi, highest first; one colour scale)")
    return figure


def class_correlation_figure(item: ModelFindings, class_names: Sequence[str] | None = None) -> go.Figure:
    """Class x class correlation of the modes over neurons."""
    names = [str(c) for c in (class_names or range(item.class_modes.shape[1]))]
    figure = go.Figure(go.Heatmap(z=class_correlation(item.class_modes), x=names, y=names, zmin=-1, zmax=1,
                                  colorscale="RdBu", reversescale=True))
    figure.update_layout(title=f"Class x class mode correlation: {item.name}", yaxis_autorange="reversed")
    return figure


def rank_lesion_figure(curves: dict[str, RankLesion]) -> go.Figure:
    """Accuracy vs k: lesioning the top-k by phi (solid) and keeping only the top-k (dashed), one colour per model."""
    figure = go.Figure()
    for label, curve in curves.items():
        figure.add_scatter(x=curve.ks, y=curve.lesioned, name=f"{label}: lesion top-k", mode="lines")
        figure.add_scatter(x=curve.ks, y=curve.kept, name=f"{label}: keep only top-k", mode="lines",
                           line_dash="dash")
    figure.update_layout(xaxis_title="k (neurons ranked by phi)", yaxis_title="accuracy", yaxis_range=[0, 1.02],
                         title="Lesion by rank")
    return figure


def weight_figure(findings: Sequence[ModelFindings]) -> go.Figure:
    """Mean |weight| vs phi per neuron, one trace per model, r in the legend."""
    figure = go.Figure()
    for item in findings:
        figure.add_scatter(x=item.weight, y=item.phi, mode="markers", name=f"{item.name} (r = {item.weight_r:.2f})",
                           marker_color=REGIME_COLOURS.get(item.facts.get("regime"), None))
    figure.update_layout(xaxis_title="mean |weight| (in and out)", yaxis_title="phi (mean class mode)",
                         title="Weight magnitude vs Shapley value")
    return figure


def pruning_figure(result: Pruning, title: str = "") -> go.Figure:
    """Keep-only-k accuracy: by Shapley value, by weight magnitude, at random (mean +- sd)."""
    figure = go.Figure()
    figure.add_scatter(x=result.ks, y=result.shapley, name="top-k by Shapley value", mode="lines+markers")
    figure.add_scatter(x=result.ks, y=result.magnitude, name="top-k by |weight|", mode="lines+markers")
    figure.add_scatter(x=result.ks, y=result.random_mean, name="random k", mode="lines+markers",
                       error_y=dict(type="data", array=result.random_std))
    figure.update_layout(xaxis_title="neurons kept", yaxis_title="accuracy", yaxis_range=[0, 1.02],
                         title=title or "Pruning: which neurons to keep")
    return figure
