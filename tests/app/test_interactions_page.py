"""AppTest of the Interactions page: launch through the job manager, matrix, pair modes, lesion
shortcut."""

from __future__ import annotations

import time

import numpy as np
from test_pages import array_of, plotly_data

from msa_core.analysis.interactions import pair_and_units, pair_values
from msa_core.analysis.modes import unit_order, view_of
from msa_core.runs import RunRequest, RunStore, execute
from msa_core.runs.interaction_runs import (
    InteractionRequest,
    execute_interactions,
    list_interactions,
)
from msa_core.zoo import load_model

MODEL = "mlp-digits-h32-none-s0"


def test_interactions_page_explains_the_empty_store(cache_dir, open_page):
    app = open_page("pages/interactions.py")
    assert any("No finished runs yet" in info.value for info in app.info)


def test_top_16_of_an_mlp_launched_from_the_page_are_shown_as_matrix_and_pair_modes(
    cache_dir, open_page
):
    """About 20 s: the interaction run executes in a spawned worker process (torch import, model
    load)."""
    store = RunStore(cache_dir)
    parent = execute(RunRequest(MODEL, n_permutations=40), store)  # 1,242 evaluations
    fingerprint = parent.meta["fingerprint"]
    app = open_page("pages/interactions.py")
    assert any("No interaction run of this run yet" in info.value for info in app.info)
    assert app.number_input(key="ix_top").value == 16
    app.number_input(key="ix_cost").set_value(1.0)
    next(b for b in app.button if b.label == "Launch interaction run").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    deadline = time.time() + 90
    while not list_interactions(store, fingerprint) and not app.error and time.time() < deadline:
        time.sleep(1.0)
        app.run()
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    [entry] = list_interactions(store, fingerprint)
    stored = execute_interactions(InteractionRequest(**entry["request"]), store)  # from the store
    assert stored.n_units == 16 and entry["cost_ratio"] < 1.3

    matrix = plotly_data(app)[0]
    order = unit_order(pair_values(stored), "cluster")
    assert matrix["y"] == [stored.player_names[i] for i in order] and matrix["zmid"] == 0
    np.testing.assert_allclose(array_of(matrix["z"]), pair_values(stored)[np.ix_(order, order)])

    names = stored.player_names
    app.selectbox(key="ix_unit_a").select(names[0]).run()
    app.selectbox(key="ix_unit_b").select(names[5]).run()
    trio = pair_and_units(stored, parent, 0, 5)
    labels = load_model(MODEL).labels.numpy()
    heatmap = plotly_data(app, 1)[0]
    np.testing.assert_allclose(array_of(heatmap["z"]), view_of(trio, "sum", labels).values)
    assert heatmap["y"] == [f"{names[0]} × {names[5]}", names[0], names[5]]

    links = app.get("page_link")
    assert any(names[0] in link.proto.label and names[5] in link.proto.label for link in links)
    next(b for b in app.button if b.label == "Lesion the pair here").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    game = load_model(MODEL).game(parent.meta["request"]["units"], parent.meta["request"]["output"])
    coalitions = np.ones((4, 32), dtype=bool)
    a, b = stored.players[[0, 5]]
    coalitions[1, a] = coalitions[2, b] = False
    coalitions[3, [a, b]] = False
    v = game(coalitions).double().numpy().reshape(4, -1).sum(1)
    table = next(frame.value for frame in app.dataframe if "non-additive part" in frame.value)
    np.testing.assert_allclose(table["non-additive part"][0], v[3] - v[1] - v[2] + v[0], atol=1e-9)


def test_gan_pair_modes_are_images_and_the_lesion_lab_link_lesions_the_pair(cache_dir, open_page):
    store = RunStore(cache_dir)
    parent = execute(
        RunRequest(
            "gan-digits-s0", units="channels of up16", method="permutation", n_permutations=2
        ),
        store,
    )
    fingerprint = parent.meta["fingerprint"]
    result = execute_interactions(InteractionRequest(parent=fingerprint, top=3, n_samples=2), store)
    app = open_page("pages/interactions.py")
    images = plotly_data(app, 1)
    assert len(images) == 3 and all(
        np.asarray(array_of(trace["z"])).shape == (32, 32) for trace in images
    )
    first = pair_and_units(
        result,
        parent,
        *[
            result.player_names.index(app.selectbox(key=k).value)
            for k in ("ix_unit_a", "ix_unit_b")
        ],
    )
    np.testing.assert_allclose(array_of(images[0]["z"]), first.modes[0].reshape(-1, 32, 32).mean(0))

    app.radio(key="ix_element_mode").set_value("one output element").run()
    app.number_input(key="ix_axis_0").set_value(3).run()
    app.number_input(key="ix_axis_2").set_value(17).run()
    matrix = plotly_data(app)[0]
    names = result.player_names
    order = [names.index(name) for name in matrix["y"]]
    expected = pair_values(result, (3, 0, 17, 0))[np.ix_(order, order)]
    np.testing.assert_allclose(array_of(matrix["z"]), expected)
    np.testing.assert_allclose(expected[0, 1], result.interactions[order[0], order[1], 3, 0, 17, 0])

    pair = result.player_names[:2]
    next(b for b in app.button if b.label == "Delete this interaction run").click().run()
    assert list_interactions(store, fingerprint) == [] and store.get(fingerprint) is not None
    assert any("No interaction run of this run yet" in info.value for info in app.info)
    app.query_params["run"] = fingerprint[:12]  # what the page's Lesion lab link carries
    app.query_params["off"] = list(pair)
    app.switch_page("pages/lesion_lab.py").run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert app.selectbox(key="lesion_model").value == "gan-digits-s0"
    assert app.selectbox(key="lesion_granularity").value == "channels of up16"
    assert list(app.get("button_group")[0].value) == pair
    assert float(next(m.value for m in app.metric if m.label == "Mean |pixel change|")) > 0
