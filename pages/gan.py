"""GAN pixel maps (study 3): channel modes of a generator by layer, the hierarchy they show, cluster
lesions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from msa_core.analysis import study3
from msa_core.analysis.ranking import NOISE_LEGEND, unit_ranking
from msa_core.lesion import ModelGame
from msa_core.zoo import gan
from pages.common import explained_errors, model, result
from pages.studies import study_run
from pages.uncertainty import noise_banner

QUICK_PERMUTATIONS = 5  # the page's own small run (its time is shown, measured, beside the button)
TAB_NAMES = ["Layer hierarchy", "Channel gallery", "Cluster lesion"]


@st.cache_resource(show_spinner=False, max_entries=16)
def summaries_of(fingerprint: str) -> list[study3.LayerSummary]:
    """A stored run's per-layer numbers, computed once per process."""
    return study3.layer_summaries(result(fingerprint))


@st.cache_resource(show_spinner="Clustering the channels…", max_entries=32)
def clusters_of(fingerprint: str, layer: str, n_clusters: int) -> list[np.ndarray]:
    """The channels of ``layer`` of a stored run in ``n_clusters`` clusters, computed once per
    process.
    """
    res = result(fingerprint)
    return study3.cluster_channels(res, study3.layers_of(res)[layer], n_clusters)


@st.cache_resource(show_spinner=False, max_entries=8)
def lesion_game(name: str, units: str | None, output: str | None, lesion: str) -> ModelGame:
    """The game of a run's model and units, built once per process, for live lesions."""
    return model(name).game(units, output, lesion)


st.title("GAN pixel maps")
st.markdown(
    "A generator's output is an image, so every channel's **Shapley mode** is an image too: what "
    "that channel paints into each generated sample. The paper found the *reverse* of a "
    "classifier's hierarchy: channels near the latent paint whole shapes, the last hidden layer "
    "paints fine strokes and texture. Here each layer's modes are measured by their **spectral "
    "centroid** (of the mode with its mean removed: 0 = flat, 1 = pixel checkerboard), their "
    "**spatial extent** (fraction of pixels holding half of |mode|) and their **share of "
    "|contribution|**."
)

study = study_run(
    "gan",
    "gan",
    study3.study_request(gan.name_of(0), QUICK_PERMUTATIONS),
    f"Runs {QUICK_PERMUTATIONS} permutations of every channel of every layer on the model's fixed "
    "latents.",
    "No GAN weights are bundled in `assets/`, so there is nothing to show. Train them with "
    "`python -m msa_core.zoo.train gan-digits-s0` (a few minutes on one core).",
    "No finished run of **{name}** yet. Launch the small one above, or a larger one on the **Run** "
    "page (granularity *channels of every layer* shows the whole hierarchy).",
)
name, fingerprint, res = study.name, study.fingerprint, study.result
loaded = model(name)
if res.modes.ndim not in (4, 5):
    st.warning(
        f"This run's output has shape {list(res.output_shape)}, not images; pick a run with output "
        "*image*."
    )
    st.stop()

digit_labels = (
    loaded.labels.cpu().numpy() if loaded.labels is not None else np.arange(res.modes.shape[1])
)
sample = st.slider(
    "Sample (fixed latent)",
    0,
    res.modes.shape[1] - 1,
    0,
    key="gan_sample",
    help="Each sample is one fixed latent with a requested digit label.",
)
st.caption(
    f"Sample {sample} asks for the digit **{digit_labels[sample]}**. "
    f"{res.n_permutations} permutations, {res.n_evaluations:,} evaluations; "
    f"efficiency gap {res.efficiency_gap():.1e}."
)

noise_banner(res)

groups = study3.layers_of(res)
layers = list(groups)
clustered = [
    layer for layer in layers if len(groups[layer]) > 1
]  # hidden layers (the output has one channel)


def hierarchy_tab() -> None:
    summaries = summaries_of(fingerprint)
    st.plotly_chart(study3.layer_summary_figure(summaries), key="gan_summary")
    st.dataframe(pd.DataFrame([s.row() for s in summaries]), hide_index=True)
    if len(clustered) > 1:
        verdict = "rises" if study3.centroid_rises(summaries) else "does **not** rise monotonically"
        st.markdown(
            f"Over the hidden layers ({' → '.join(clustered)}) the median spectral centroid "
            f"{verdict} with depth (paper, on a digits GAN: 0.09, 0.23, 0.44)."
        )
    st.plotly_chart(study3.summed_modes_figure(res, sample), key="gan_summed")
    st.caption(
        "Each layer's summed mode is what the layer paints as a whole; with the output channel "
        "they add up to the generated image minus the all-lesioned one."
    )


def gallery_tab() -> None:
    layer = st.selectbox(
        "Layer",
        layers,
        index=layers.index(clustered[-1]) if clustered else 0,
        key="gan_gallery_layer",
    )
    st.plotly_chart(study3.gallery_figure(res, layer, sample), key="gan_gallery")
    st.caption(
        "Channels ordered by |mode| in this sample; red adds ink, blue removes it; one colour "
        f"scale per layer. A title ending in ~0: the channel's mean mode is {NOISE_LEGEND}."
    )


def lesion_tab() -> None:
    left, right = st.columns(2)
    if not clustered:
        st.info("No layer of this run has more than one channel to cluster.")
        return
    where = left.selectbox(
        "Cluster the channels of", clustered, index=len(clustered) - 1, key="gan_cluster_layer"
    )
    n_clusters = right.slider("Clusters", 2, 12, study3.SHOWCASE_CLUSTERS, key="gan_n_clusters")
    clusters = clusters_of(fingerprint, where, n_clusters)
    noise = unit_ranking(res).noise  # channels whose Shapley value is within noise
    chosen = st.selectbox(
        "Cluster (largest |contribution| first)",
        list(range(len(clusters))),
        key="gan_cluster",
        format_func=lambda k: (
            f"cluster {k + 1}: {len(clusters[k])} channels "
            f"({', '.join(res.player_names[i].rpartition('.')[2] for i in clusters[k][:8])}"
            f"{', …' if len(clusters[k]) > 8 else ''})"
            + (
                f", {int(noise[clusters[k]].sum())} within noise"
                if noise[clusters[k]].any()
                else ""
            )
        ),
    )
    extra = st.multiselect("Lesion these channels too", res.player_names, key="gan_extra")
    players = sorted(set(clusters[chosen].tolist()) | {res.player_names.index(p) for p in extra})
    request = res.meta.get("request") or {}
    game = lesion_game(
        name, request.get("units"), request.get("output"), request.get("lesion", "zero")
    )
    lesion = study3.cluster_lesion(game, players)
    st.plotly_chart(study3.lesion_figure(lesion, sample), key="gan_lesion")
    st.markdown(
        f"Half of the total |difference| (all samples) lies in **{lesion.concentration():.1%}** of "
        "the pixels: the lesion edits a confined region, not the whole image."
    )


# only the open tab is computed and drawn
tabs = st.tabs(TAB_NAMES, key="gan_tab", on_change="rerun")
for tab, tab_name, draw in zip(
    tabs, TAB_NAMES, (hierarchy_tab, gallery_tab, lesion_tab), strict=True
):
    if tab.open:
        with tab, explained_errors(tab_name):
            draw()
