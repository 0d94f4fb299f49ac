"""Study 3: the layer hierarchy of a generator's channels, read from their pixel Shapley modes.

A result of a generator game has modes ``[N, B, *image]`` (``image`` = ``[colour, H, W]`` or
``[H, W]``): one image-shaped contribution per channel (player) and sample. Players are grouped into
layers by their tag, the player name without its last ``.c<i>`` (``up8.relu.c5`` -> layer
``up8.relu``).

Metrics (defined once, used by the tests, the bench and the app):

- ``spectral_centroid``: the power-weighted mean radial frequency of the 2-D power spectrum
  ``|FFT2|^2`` of each image with its mean removed (the DC bin left out), power summed over samples
  and colour channels; radial frequency is ``sqrt(fx^2 + fy^2) / (sqrt(2) * Nyquist)`` with
  ``fx, fy`` in cycles per pixel and Nyquist = 1/2: 1 for a pixel checkerboard (the highest
  frequency a grid holds), 0 for a constant image (no power outside DC), NaN for an all-zero image.
  The mean is left out because a uniform offset is how much a channel paints, not the scale of its
  pattern (that is the spatial extent's and the share's business); with it, a channel painting a
  faint texture over a uniform field would count as low-frequency. ``include_mean=True`` keeps the
  DC bin (reported beside it).
- ``spatial_extent``: per sample, the fraction of pixels that hold 50% of the total |mode| (the
  fewest largest pixels), averaged over samples: small = local, 0.5 = spread evenly.
- share of |contribution|: a layer's sum of |modes| over the total of every player's.

A layer's numbers are the median over its channels (channels whose modes are all zero are skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from msa_core.analysis.modes import units_for_share
from msa_core.analysis.ranking import within_noise
from msa_core.errors import MSAInputError
from msa_core.lesion import ModelGame
from msa_core.result import ModesResult
from msa_core.runs import RunRequest

STUDY_UNITS = "channels of every layer"
STUDY_PERMUTATIONS = 30  # the study's default budget (permutation sampling, seed 0)
PAPER_CENTROIDS = (0.09, 0.23, 0.44)  # PAPER.md: median spectral centroid by depth on a digits GAN
SHOWCASE_CLUSTERS = (
    6  # the showcased cluster lesion cuts the last hidden layer into this many clusters
)
IMAGE_SCALE = "gray"
MODE_SCALE = "RdBu_r"


def study_request(model: str, n_permutations: int = STUDY_PERMUTATIONS) -> RunRequest:
    """The study's run of one generator: every layer's channels, image output, permutation
    sampling."""
    return RunRequest(
        model=model,
        units=STUDY_UNITS,
        output="image",
        method="permutation",
        n_permutations=n_permutations,
        seed=0,
    )


def radial_frequency(height: int, width: int) -> np.ndarray:
    """Normalised radial frequency ``[H, W]`` of each FFT bin: 0 at DC, 1 at (Nyquist, Nyquist).

    >>> radial_frequency(2, 2).round(3).tolist()
    [[0.0, 0.707], [0.707, 1.0]]
    """
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    return np.hypot(fx, fy) / (np.sqrt(2) * 0.5)


def spectral_centroid(images: np.ndarray, include_mean: bool = False) -> float:
    """Power-weighted mean normalised radial frequency of images ``[..., H, W]`` (see the module
    docstring).

    >>> checkerboard = np.indices((4, 4)).sum(0) % 2
    >>> spectral_centroid(np.ones((4, 4))), spectral_centroid(checkerboard * 2.0 - 1)
    (0.0, 1.0)
    >>> round(spectral_centroid(checkerboard * 1.0, include_mean=True), 3)  # half DC
    0.5
    """
    images = np.asarray(images, dtype=float)
    if images.ndim < 2:
        raise MSAInputError(
            f"spectral_centroid needs images [..., H, W]; got shape {list(images.shape)}"
        )
    scale = float(np.abs(images).max(initial=0.0))
    if scale == 0.0:
        return float("nan")
    power = (np.abs(np.fft.fft2(images / scale)) ** 2).reshape(-1, *images.shape[-2:]).sum(0)
    if power.sum() - power[0, 0] <= 1e-12 * power.sum():
        return 0.0  # all power at DC: a constant image
    if not include_mean:
        power[0, 0] = 0.0
    return float((power * radial_frequency(*images.shape[-2:])).sum() / power.sum())


def mass_fraction(values: np.ndarray, share: float = 0.5) -> float:
    """Fraction of the entries of ``values`` holding ``share`` of their total |value| (NaN when all
    zero).

    >>> mass_fraction(np.array([4.0, 0.0, 0.0, 0.0])), mass_fraction(np.ones(4))
    (0.25, 0.5)
    """
    flat = np.abs(np.asarray(values, dtype=float)).ravel()
    if flat.sum() == 0:
        return float("nan")
    return units_for_share(flat, share) / flat.size


def spatial_extent(mode: np.ndarray, share: float = 0.5) -> float:
    """Mean over samples of the fraction of pixels holding ``share`` of |mode|; mode
    ``[B, *image]``."""
    fractions = [mass_fraction(sample, share) for sample in np.asarray(mode)]
    fractions = [f for f in fractions if not np.isnan(f)]
    return float(np.mean(fractions)) if fractions else float("nan")


def layer_of(player: str) -> str:
    """The layer (tag) of a player name: everything before its last ``.c<i>``."""
    head, _, unit = player.rpartition(".")
    if not head or not unit.startswith("c") or not unit[1:].isdigit():
        raise MSAInputError(
            f"player {player!r} is not a channel (<layer>.c<i>); study 3 needs Channels players"
        )
    return head


def layers_of(result: ModesResult) -> dict[str, np.ndarray]:
    """Player indices of each layer, layers in player order."""
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(result.player_names):
        groups.setdefault(layer_of(name), []).append(index)
    return {layer: np.array(indices) for layer, indices in groups.items()}


def check_images(result: ModesResult) -> None:
    """Raise unless the result's modes are per-sample images ``[N, B, (colour,) H, W]``."""
    if result.modes.ndim not in (4, 5):
        raise MSAInputError(
            f"study 3 needs modes of images [N, B, (colour,) H, W]; got {list(result.modes.shape)}"
        )


@dataclass(frozen=True)
class LayerSummary:
    """One layer's numbers: medians over its channels, and its share of the total |contribution|."""

    layer: str
    channels: int
    spectral_centroid: float
    centroid_with_mean: float  # median spectral centroid with the DC bin kept
    spatial_extent: float
    contribution_share: float
    centroids: np.ndarray  # per channel [n]
    extents: np.ndarray  # per channel [n]

    def row(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "channels": self.channels,
            "median spectral centroid": self.spectral_centroid,
            "median centroid, mean kept": self.centroid_with_mean,
            "median spatial extent": self.spatial_extent,
            "share of |contribution|": self.contribution_share,
        }


def _median(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else float("nan")


def layer_summaries(result: ModesResult) -> list[LayerSummary]:
    """Per layer (player order): channel count, median spectral centroid and spatial extent,
    |contribution| share."""
    check_images(result)
    modes = np.asarray(result.modes, dtype=float)
    total = np.abs(modes).sum() or 1.0
    summaries = []
    for layer, index in layers_of(result).items():
        centroids = np.array([spectral_centroid(modes[i]) for i in index])
        with_mean = np.array([spectral_centroid(modes[i], include_mean=True) for i in index])
        extents = np.array([spatial_extent(modes[i]) for i in index])
        summaries.append(
            LayerSummary(
                layer,
                len(index),
                _median(centroids),
                _median(with_mean),
                _median(extents),
                float(np.abs(modes[index]).sum() / total),
                centroids,
                extents,
            )
        )
    return summaries


def hidden_layers(summaries: Sequence[LayerSummary]) -> list[str]:
    """The layers with more than one channel, in player order (the digits generator's output has
    one)."""
    return [s.layer for s in summaries if s.channels > 1]


def centroid_rises(
    summaries: Sequence[LayerSummary], layers: Sequence[str] | None = None, with_mean: bool = False
) -> bool:
    """Whether the median spectral centroid (``with_mean``: the DC bin kept) strictly increases
    along ``layers`` (default: the hidden ones)."""
    by_layer = {
        s.layer: s.centroid_with_mean if with_mean else s.spectral_centroid for s in summaries
    }
    values = [by_layer[layer] for layer in (hidden_layers(summaries) if layers is None else layers)]
    return len(values) > 1 and all(a < b for a, b in zip(values, values[1:], strict=False))


def summed_modes(result: ModesResult) -> dict[str, np.ndarray]:
    """Each layer's summed mode ``[B, *image]`` (what the layer paints, by efficiency within the
    layer)."""
    check_images(result)
    return {
        layer: np.asarray(result.modes[index], dtype=float).sum(0)
        for layer, index in layers_of(result).items()
    }


def cluster_channels(
    result: ModesResult, players: Sequence[int] | np.ndarray, n_clusters: int
) -> list[np.ndarray]:
    """Cluster ``players`` by the correlation of their modes (average linkage on 1 - r, cut into at
    most ``n_clusters``); clusters as player-index arrays, largest total |contribution| first."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    indices = np.asarray(players, dtype=int)
    if len(indices) < 2 or n_clusters < 1:
        raise MSAInputError(
            f"clustering needs at least 2 channels and 1 cluster; got {len(indices)} and "
            f"{n_clusters}"
        )
    flat = np.asarray(result.modes[indices], dtype=float).reshape(len(indices), -1)
    centred = flat - flat.mean(1, keepdims=True)
    # constant modes have no correlation: set them apart
    silent = np.linalg.norm(centred, axis=1) < 1e-12
    distances = np.nan_to_num(
        pdist(np.where(silent[:, None], 0.0, centred), "correlation"), nan=1.0
    )
    labels = fcluster(linkage(distances, "average"), t=n_clusters, criterion="maxclust")
    clusters = [indices[labels == label] for label in np.unique(labels)]
    weight = [np.abs(result.modes[c]).sum() for c in clusters]
    return [clusters[i] for i in np.argsort(weight, kind="stable")[::-1]]


def showcase_cluster(result: ModesResult) -> np.ndarray:
    """The showcased cluster, fixed before measuring: the last hidden layer (the last layer with
    more than one channel) cut into ``SHOWCASE_CLUSTERS`` clusters; the one with the largest
    |contribution|."""
    layers = [index for index in layers_of(result).values() if len(index) > 1]
    if not layers:
        raise MSAInputError("no layer with more than one channel to cluster")
    return cluster_channels(result, layers[-1], SHOWCASE_CLUSTERS)[0]


@dataclass(frozen=True)
class ClusterLesion:
    """Images ``[B, *image]`` with every player intact, with the cluster lesioned, and intact -
    lesioned."""

    players: list[str]
    intact: np.ndarray
    lesioned: np.ndarray

    @property
    def difference(self) -> np.ndarray:
        return self.intact - self.lesioned

    def concentration(self, share: float = 0.5) -> float:
        """Fraction of pixels (all samples together) holding ``share`` of the total |difference|."""
        return mass_fraction(self.difference, share)


def cluster_lesion(game: ModelGame, players: Sequence[int] | np.ndarray) -> ClusterLesion:
    """Lesion ``players`` (indices into the game's players) together: two coalitions, one game
    call."""
    indices = np.asarray(players, dtype=int)
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= game.n_players:
        raise MSAInputError(
            f"cluster players must be 1+ indices in 0..{game.n_players - 1}; got {indices.tolist()}"
        )
    coalitions = np.ones((2, game.n_players), dtype=bool)
    coalitions[1, indices] = False
    values = game(coalitions)
    values = (
        values.detach().cpu().double().numpy()
        if isinstance(values, torch.Tensor)
        else np.asarray(values, float)
    )
    return ClusterLesion([game.player_names[i] for i in indices], values[0], values[1])


# -- figures ---------------------------------------------------------------------------------------


def _plane(image: np.ndarray) -> np.ndarray:
    """One sample's ``[H, W]`` plane (colour channels averaged)."""
    image = np.asarray(image, dtype=float)
    return image.reshape(-1, *image.shape[-2:]).mean(0)


def _limit(*planes: np.ndarray) -> float:
    return max((float(np.abs(p).max(initial=0.0)) for p in planes), default=0.0) or 1.0


def _image_trace(
    plane: np.ndarray, diverging: bool, limit: float = 1.0, colorbar: bool = False
) -> go.Heatmap:
    return go.Heatmap(
        z=plane,
        zmin=-limit if diverging else 0.0,
        zmax=limit,
        colorscale=MODE_SCALE if diverging else IMAGE_SCALE,
        zmid=0.0 if diverging else None,
        showscale=colorbar,
        hovertemplate="x %{x}, y %{y}: %{z:.3g}<extra></extra>",
    )


def _square_axes(figure: go.Figure) -> go.Figure:
    """Image panels: no ticks, y downwards, square pixels."""
    figure.update_xaxes(showticklabels=False, constrain="domain")
    figure.update_yaxes(showticklabels=False, autorange="reversed", constrain="domain")
    # square pixels in every panel
    figure.for_each_yaxis(lambda axis: axis.update(scaleanchor=axis.anchor))
    return figure


def gallery_figure(
    result: ModesResult,
    layer: str,
    sample: int = 0,
    columns: int = 8,
    generated: np.ndarray | None = None,
) -> go.Figure:
    """Every channel mode of ``layer`` for one sample, largest |mode| first, on one diverging scale,
    beside the generated image (``generated`` ``[B, *image]``, default ``v_full``); a channel whose
    mean mode over the pixels is within noise (``ranking.within_noise``) is titled ``name ~0``."""
    check_images(result)
    groups = layers_of(result)
    if layer not in groups:
        raise MSAInputError(f"unknown layer {layer!r}; layers: {', '.join(groups)}")
    if not 0 <= sample < result.modes.shape[1]:
        raise MSAInputError(
            f"sample {sample} is out of range; the result has {result.modes.shape[1]} samples"
        )
    index = groups[layer]
    planes = [_plane(result.modes[i, sample]) for i in index]
    order = np.argsort([-np.abs(p).sum() for p in planes], kind="stable")
    limit = _limit(*planes)
    rows = -(-len(index) // columns)
    cols = min(columns, len(index)) + 1
    titles = ["generated"] + [""] * (cols - 1) + [""] * ((rows - 1) * cols)
    noise = [  # the channel's mode in this sample, averaged over pixels, is within noise
        bool(within_noise(result.modes[i, sample].mean(), result.stderr[i, sample].mean()))
        for i in index
    ]
    for k, i in enumerate(order):
        titles[(k // columns) * cols + k % columns + 1] = result.player_names[index[i]].rpartition(
            "."
        )[2] + (" ~0" if noise[i] else "")
    height = 90 + 110 * rows
    # room for a title line
    figure = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=0.01,
        vertical_spacing=22 / height if rows > 1 else 0.0,
    )
    image = generated[sample] if generated is not None else np.asarray(result.v_full)[sample]
    figure.add_trace(_image_trace(_plane(image), False), row=1, col=1)
    for k, i in enumerate(order):
        figure.add_trace(
            _image_trace(planes[i], True, limit, colorbar=k == 0),
            row=k // columns + 1,
            col=k % columns + 2,
        )
    figure.update_annotations(font_size=10)
    figure.update_layout(
        title=f"{layer}: channel modes of sample {sample} (colour limit ±{limit:.3g})",
        height=height,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
    )
    return _square_axes(figure)


def summed_modes_figure(result: ModesResult, sample: int = 0) -> go.Figure:
    """The generated image, each layer's summed mode (one shared diverging scale) and the
    all-lesioned image."""
    layers = summed_modes(result)
    planes = {layer: _plane(mode[sample]) for layer, mode in layers.items()}
    limit = _limit(*planes.values())
    titles = ["generated", *planes, "all lesioned"]
    figure = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.02)
    figure.add_trace(_image_trace(_plane(np.asarray(result.v_full)[sample]), False), row=1, col=1)
    for k, plane in enumerate(planes.values()):
        figure.add_trace(_image_trace(plane, True, limit, colorbar=k == 0), row=1, col=k + 2)
    figure.add_trace(
        _image_trace(_plane(np.asarray(result.v_empty)[sample]), False), row=1, col=len(titles)
    )
    figure.update_layout(
        title=(
            f"Per-layer summed modes of sample {sample} (they add up to generated - all lesioned)"
        ),
        height=260,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
    )
    return _square_axes(figure)


def layer_summary_figure(summaries: Sequence[LayerSummary]) -> go.Figure:
    """Three panels over layers (player order): median spectral centroid with every channel's value,
    median spatial extent, share of |contribution|."""
    names = [s.layer for s in summaries]
    figure = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("spectral centroid", "spatial extent", "share of |contribution|"),
    )
    for s in summaries:
        figure.add_trace(
            go.Box(
                y=s.centroids,
                name=s.layer,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"size": 4},
                line={"width": 1},
                showlegend=False,
            ),
            row=1,
            col=1,
        )
    figure.add_trace(
        go.Scatter(
            x=names,
            y=[s.spectral_centroid for s in summaries],
            mode="lines+markers",
            name="median",
            line={"color": "black"},
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Bar(x=names, y=[s.spatial_extent for s in summaries], showlegend=False), row=1, col=2
    )
    figure.add_trace(
        go.Bar(x=names, y=[s.contribution_share for s in summaries], showlegend=False), row=1, col=3
    )
    figure.update_yaxes(title_text="spectral centroid (0 flat, 1 checkerboard)", row=1, col=1)
    figure.update_yaxes(title_text="median pixels for 50% |mode|", tickformat=".0%", row=1, col=2)
    figure.update_yaxes(tickformat=".0%", row=1, col=3)
    figure.update_layout(
        title="Layer hierarchy: frequency, extent and weight of channel modes by depth",
        height=380,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
    )
    return figure


def lesion_figure(lesion: ClusterLesion, sample: int = 0) -> go.Figure:
    """Intact, lesioned and difference (intact - lesioned) images of one sample."""
    intact, lesioned, difference = (
        _plane(x[sample]) for x in (lesion.intact, lesion.lesioned, lesion.difference)
    )
    top = max(float(intact.max(initial=0.0)), float(lesioned.max(initial=0.0))) or 1.0
    figure = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=(
            "intact",
            f"{len(lesion.players)} channels lesioned",
            "difference (intact - lesioned)",
        ),
        horizontal_spacing=0.03,
    )
    figure.add_trace(_image_trace(intact, False, top), row=1, col=1)
    figure.add_trace(_image_trace(lesioned, False, top), row=1, col=2)
    figure.add_trace(
        _image_trace(difference, True, _limit(difference), colorbar=True), row=1, col=3
    )
    figure.update_layout(
        title=f"Cluster lesion, sample {sample}",
        height=320,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
    )
    return _square_axes(figure)
