"""Study 3: metrics on known images, layer summaries and clusters on synthetic modes, and the
findings on the bundled generators (seeds 0, 1, 2, fixed up front; 10 permutations on 10 latents,
one per digit)."""

import numpy as np
import pytest

from msa_core import shapley_modes
from msa_core.analysis import study3
from msa_core.errors import MSAInputError
from msa_core.result import ModesResult
from msa_core.zoo import gan, load_model

TEST_IMAGES, TEST_PERMUTATIONS = 10, 10


def checkerboard(n: int) -> np.ndarray:
    return (np.indices((n, n)).sum(0) % 2) * 2.0 - 1.0


def cosine(n: int, cycles: int) -> np.ndarray:
    return np.cos(2 * np.pi * cycles * np.arange(n) / n)[None, :].repeat(n, 0)


def synthetic(layers: dict[str, np.ndarray]) -> ModesResult:
    """A result whose players are the channels of ``layers`` (modes [n, B, 1, H, W] per layer)."""
    modes = np.concatenate(list(layers.values()))
    names = [f"{layer}.c{i}" for layer, m in layers.items() for i in range(len(m))]
    zeros = np.zeros(modes.shape[1:])
    return ModesResult(modes, np.zeros_like(modes), modes.sum(0), zeros, 1, 1, names)


# -- metrics on known images -----------------------------------------------------------------------


def test_spectral_centroid_of_a_constant_is_0_and_of_a_checkerboard_1():
    assert study3.spectral_centroid(np.full((8, 8), 3.0)) == 0.0
    assert study3.spectral_centroid(checkerboard(8)) == pytest.approx(1.0)


def test_spectral_centroid_of_single_frequencies_is_their_normalised_radius():
    n = 32
    assert study3.spectral_centroid(cosine(n, 4)) == pytest.approx((4 / n) / (np.sqrt(2) * 0.5))
    # stripes at Nyquist
    assert study3.spectral_centroid(cosine(n, n // 2)) == pytest.approx(1 / np.sqrt(2))
    assert study3.spectral_centroid(cosine(n, 2)) < study3.spectral_centroid(cosine(n, 8))


def test_the_mean_of_an_image_is_left_out_unless_asked_for():
    offset = checkerboard(8) + 3.0  # a faint fine pattern on a bright field
    assert study3.spectral_centroid(offset) == pytest.approx(1.0)
    # power 1 : 9 vs DC
    assert study3.spectral_centroid(offset, include_mean=True) == pytest.approx(1 / 10)


def test_spectral_centroid_pools_power_over_samples_and_rejects_non_images():
    stack = np.stack([checkerboard(8), np.zeros((8, 8))])
    assert study3.spectral_centroid(stack) == pytest.approx(1.0)
    assert np.isnan(study3.spectral_centroid(np.zeros((4, 4))))
    with pytest.raises(MSAInputError, match="H, W"):
        study3.spectral_centroid(np.ones(5))


def test_spatial_extent_is_the_fraction_of_pixels_holding_half_the_mass():
    point, flat = np.zeros((1, 8, 8)), np.ones((1, 8, 8))
    point[0, 3, 4] = -2.0
    assert study3.spatial_extent(point) == 1 / 64
    assert study3.spatial_extent(flat) == 0.5
    assert study3.spatial_extent(np.concatenate([point, flat])) == pytest.approx((1 / 64 + 0.5) / 2)
    assert np.isnan(study3.spatial_extent(np.zeros((2, 8, 8))))


# -- summaries, clusters and lesions on synthetic modes --------------------------------------------


def test_layer_summaries_on_known_modes():
    n = 16
    flat = np.full((3, 2, 1, n, n), 1.0)  # 3 channels painting a constant
    # 2 channels painting a checkerboard
    fine = np.broadcast_to(checkerboard(n), (2, 2, 1, n, n)) * 3.0
    result = synthetic({"early": flat, "late": fine})
    early, late = study3.layer_summaries(result)
    assert (early.layer, early.channels, late.layer, late.channels) == ("early", 3, "late", 2)
    assert early.spectral_centroid == 0.0 and late.spectral_centroid == pytest.approx(1.0)
    assert early.spatial_extent == late.spatial_extent == 0.5
    assert early.contribution_share == pytest.approx(
        3 / 9
    ) and late.contribution_share == pytest.approx(6 / 9)
    assert study3.centroid_rises([early, late]) and not study3.centroid_rises([late, early])
    summed = study3.summed_modes(result)
    np.testing.assert_allclose(summed["early"] + summed["late"], result.v_full - result.v_empty)


def test_player_names_must_be_channels():
    result = ModesResult(
        np.zeros((1, 2, 4, 4)),
        np.zeros((1, 2, 4, 4)),
        np.zeros((2, 4, 4)),
        np.zeros((2, 4, 4)),
        1,
        1,
        ["fc1.n0"],
    )
    with pytest.raises(MSAInputError, match="Channels"):
        study3.layer_summaries(result)
    with pytest.raises(MSAInputError, match="images"):
        study3.layer_summaries(
            ModesResult(
                np.zeros((1, 3)), np.zeros((1, 3)), np.zeros(3), np.zeros(3), 1, 1, ["a.c0"]
            )
        )


def test_clusters_recover_channels_painting_the_same_pattern():
    rng = np.random.default_rng(0)
    left, right = np.zeros((8, 8)), np.zeros((8, 8))
    left[:, :3], right[:, 5:] = 1.0, 1.0
    patterns = [left, right, left, right, left]
    modes = np.stack(
        [(p + 0.05 * rng.standard_normal((2, 1, 8, 8))) * (k + 1) for k, p in enumerate(patterns)]
    )
    result = synthetic({"up": modes})
    clusters = study3.cluster_channels(result, np.arange(5), 2)
    assert sorted(map(sorted, (c.tolist() for c in clusters))) == [[0, 2, 4], [1, 3]]
    assert clusters[0].tolist() == [0, 2, 4]  # the heavier cluster first
    with pytest.raises(MSAInputError, match="at least 2"):
        study3.cluster_channels(result, [0], 2)


def test_cluster_lesion_of_every_player_gives_the_all_lesioned_image():
    loaded = load_model(gan.name_of(0))
    game = loaded.game(study3.STUDY_UNITS)
    lesion = study3.cluster_lesion(game, np.arange(game.n_players))
    assert np.all(lesion.lesioned == 0)
    np.testing.assert_allclose(lesion.difference, lesion.intact)
    with pytest.raises(MSAInputError, match="indices"):
        study3.cluster_lesion(game, [game.n_players])


# -- the findings on the bundled generators --------------------------------------------------------


@pytest.fixture(scope="module")
def runs() -> dict[int, tuple[ModesResult, object]]:
    """Per seed: the modes of every layer's channels on the first 10 fixed latents, and that
    game."""
    out = {}
    for seed in gan.SEEDS:
        loaded = load_model(gan.name_of(seed))
        game = loaded.game(
            study3.STUDY_UNITS,
            inputs=loaded.inputs[:TEST_IMAGES],
            labels=loaded.labels[:TEST_IMAGES],
        )
        out[seed] = (
            shapley_modes(game, method="permutation", n_permutations=TEST_PERMUTATIONS, seed=0),
            game,
        )
    return out


def test_efficiency_holds_on_every_seed(runs):
    for result, _ in runs.values():
        assert result.efficiency_gap() <= 1e-5
        assert np.all(result.v_empty == 0)


def test_median_spectral_centroid_rises_with_depth_in_at_least_2_of_3_seeds(runs):
    summaries = {seed: study3.layer_summaries(result) for seed, (result, _) in runs.items()}
    assert all(
        study3.hidden_layers(s) == ["up4.relu", "up8.relu", "up16.relu"] for s in summaries.values()
    )
    rising = [seed for seed, s in summaries.items() if study3.centroid_rises(s)]
    assert len(rising) >= 2, {
        seed: [round(x.spectral_centroid, 3) for x in s] for seed, s in summaries.items()
    }


def test_the_showcased_cluster_lesion_is_confined(runs):
    result, game = runs[0]
    cluster = study3.showcase_cluster(result)
    assert all(result.player_names[i].startswith("up16.relu.") for i in cluster)
    lesion = study3.cluster_lesion(game, cluster)
    assert np.abs(lesion.difference).sum() > 0
    assert lesion.concentration() <= 0.25


def test_figures_show_every_channel_and_layer(runs):
    result, game = runs[0]
    summaries = study3.layer_summaries(result)
    gallery = study3.gallery_figure(result, "up8.relu", sample=3)
    assert len(gallery.data) == 1 + 32
    assert len(study3.summed_modes_figure(result, 3).data) == 2 + len(summaries)
    assert len(study3.layer_summary_figure(summaries).data) == len(summaries) + 3
    lesion = study3.cluster_lesion(game, study3.showcase_cluster(result))
    assert len(study3.lesion_figure(lesion, 3).data) == 3
    with pytest.raises(MSAInputError, match="layers"):
        study3.gallery_figure(result, "nope")
    with pytest.raises(MSAInputError, match="out of range"):
        study3.gallery_figure(result, "up8.relu", sample=TEST_IMAGES)
