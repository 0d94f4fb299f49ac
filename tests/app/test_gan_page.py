"""AppTest of the GAN pixel maps page (study 3): empty store, the page's own small run, the views of
a run.
"""

from __future__ import annotations

import json
import time

from streamlit.testing.v1 import AppTest

from msa_core.analysis import study3
from msa_core.runs import RunStore, execute
from msa_core.zoo import gan


def chart_titles(app: AppTest) -> list[str]:
    return [
        json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in app.get("plotly_chart")
    ]


def test_empty_store_explains_and_the_small_run_fills_the_page(cache_dir, open_page):
    """Runs the page's own 5-permutation run of seed 0 in the background worker (about 15 s on this
    machine).
    """
    app = open_page("pages/gan.py")
    assert any("No finished run" in info.value for info in app.info)
    assert not app.get("plotly_chart") and not app.error
    promise = next(c.value for c in app.caption if "evaluations of" in c.value)
    # 2 + 5 x 112, measured time per evaluation
    assert promise.startswith("562 evaluations of 113 units: about")
    next(b for b in app.button if b.label == "Run now").click().run()
    # the page is not blocked
    assert any("Running in the background" in info.value for info in app.info)
    deadline = time.time() + 240
    while not RunStore(cache_dir).list() and time.time() < deadline:
        time.sleep(0.5)
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    titles = chart_titles(app)
    assert any(t.startswith("Layer hierarchy") for t in titles)
    assert any(t.startswith("Per-layer summed modes of sample 0") for t in titles)
    table = app.dataframe[0].value
    assert table["layer"].tolist() == ["up4.relu", "up8.relu", "up16.relu", "out.act"]
    assert any("median spectral centroid" in md.value for md in app.markdown)
    assert not any(t.startswith("Cluster lesion") for t in titles)  # closed tabs are not computed
    app.session_state["gan_tab"] = "Channel gallery"
    app.run()
    assert any(t.startswith("up16.relu: channel modes of sample 0") for t in chart_titles(app))
    app.session_state["gan_tab"] = "Cluster lesion"
    app.run()
    assert any(t.startswith("Cluster lesion, sample 0") for t in chart_titles(app))


def test_a_stored_run_can_be_browsed_by_sample_layer_and_cluster(cache_dir, open_page):
    execute(study3.study_request(gan.name_of(1), n_permutations=2), RunStore(cache_dir))
    app = open_page("pages/gan.py")
    assert any("No finished run" in info.value for info in app.info)  # seed 0 has none
    app.selectbox(key="gan_model").select(gan.name_of(1)).run()
    assert not app.exception and app.selectbox(key="gan_run").value
    app.slider(key="gan_sample").set_value(7).run()
    app.session_state["gan_tab"] = "Channel gallery"
    app.run()
    app.selectbox(key="gan_gallery_layer").select("up4.relu").run()
    assert any(t.startswith("up4.relu: channel modes of sample 7") for t in chart_titles(app))
    app.session_state["gan_tab"] = "Cluster lesion"
    app.run()
    app.selectbox(key="gan_cluster").select(1).run()
    app.multiselect(key="gan_extra").select("up8.relu.c0").run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert any(t.startswith("Cluster lesion, sample 7") for t in chart_titles(app))
    assert any("digit **7**" in caption.value for caption in app.caption)
