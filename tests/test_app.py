"""Dashboard tests with Streamlit's AppTest on a tiny random-weight model (STEERING_MODEL=tiny-random).

Every page renders without an exception; Compute produces the figures; the
multiplier slider changes what is shown (live off the grid); choosing a layer on
the Layer sweep page moves the sidebar layer; an anti-steerable example's detail
shows its tokens and curves; bad input (upload, model, multipliers) is an
in-page error message, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["pages/1_Steerability.py", "pages/2_Layer_sweep.py", "pages/3_Inspect_examples.py",
         "pages/4_Live_steering.py", "pages/5_Export.py"]
N_TRAIN, N_TEST = 16, 12


@pytest.fixture(autouse=True)
def app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERING_MODEL", "tiny-random")
    monkeypatch.setenv("STEERING_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("STEERING_DATA_DIR", raising=False)
    monkeypatch.delenv("STEERING_DEMO", raising=False)
    return tmp_path / "results"


def new_app(**state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["s_n_train"] = N_TRAIN
    at.session_state["s_n_test"] = N_TEST
    for k, v in state.items():
        at.session_state[f"s_{k}"] = v
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def computed_app(**state) -> AppTest:
    at = new_app(**state)
    assert_clean(at)
    at.button(key="compute_layer").click().run()
    assert_clean(at)
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def values(v) -> list:
    """A plotly array as a list (plotly 6+ sends numeric arrays as base64 'bdata')."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
                     + [s.value for s in at.subheader])


# ---------------------------------------------------------------- rendering


def test_home_explains_and_offers_compute_before_any_result():
    at = new_app()
    assert_clean(at)
    assert "anti-steerable" in texts(at).lower() and "Tan et al. 2024" in texts(at)
    m = metrics(at)
    assert m["Items"] == "64" and m["Positive answer is (A)"] == "50%"
    assert at.button(key="compute_layer").label == "Compute layer 2"  # the middle layer of 4
    assert [s.key for s in at.sidebar.slider] == ["w_layer"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_before_compute(page):
    at = new_app()
    at.switch_page(page).run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="w_dataset").value.endswith("corrigibility-demo.jsonl")


def test_every_page_renders_after_compute_and_settings_survive_page_switches():
    at = computed_app()
    at.sidebar.selectbox(key="w_aggregator").set_value("pca").run()
    for page in PAGES:
        at.switch_page(page).run()
        assert_clean(at)
        assert at.sidebar.selectbox(key="w_aggregator").value == "pca"
        assert at.sidebar.number_input(key="w_n_test").value == N_TEST
    at.switch_page("app.py").run()
    assert at.sidebar.selectbox(key="w_aggregator").value == "pca"


# ---------------------------------------------------------------- compute and the store


def test_compute_shows_headline_figures_and_stores_the_run(app_env):
    at = computed_app()
    m = metrics(at)
    for label in ("Mean steerability", "Median steerability", "Anti-steerable", "Variance from spurious factors"):
        assert label in m
    assert "95% interval" in texts(at)
    runs = [d for d in app_env.iterdir() if not d.name.startswith(".")]
    assert len(runs) == 1 and (runs[0] / "steerability.parquet").exists()
    # The headline mean is the mean of the run's stored per-example slopes at the sidebar's layer (2 of 4).
    from steering.core.results import load_run

    steer = load_run(runs[0]).steerability
    slopes = steer[steer.layer == 2].slope.to_numpy()
    assert len(slopes) == N_TEST and m["Mean steerability"] == f"{slopes.mean():.3g}"
    # A new session with the same settings is served from the store: no Compute needed.
    again = new_app()
    assert_clean(again)
    assert metrics(again)["Mean steerability"] == m["Mean steerability"]
    assert "served from the results store" in texts(again)
    assert not [b for b in again.button if b.key == "compute_layer"]


# ---------------------------------------------------------------- steerability page


def test_steerability_page_figures_and_live_multiplier_slider():
    at = computed_app()
    at.switch_page("pages/1_Steerability.py").run()
    assert_clean(at)
    figs = charts(at)
    assert len(figs) == 4
    hist = figs[0]
    assert figs[3]["data"][0]["name"].startswith("positive is (A)")  # the spurious-factor split
    assert "per unit multiplier" in hist["layout"]["xaxis"]["title"]["text"]
    assert any(s.get("type") == "rect" and s.get("x1") == 0 for s in hist["layout"]["shapes"])  # shaded slope < 0
    assert {t["name"] for t in figs[1]["data"]} >= {"mean over examples", "95% interval of the mean"}
    before = metrics(at)
    assert "Mean propensity at 1" in before and "From the stored sweep grid." in texts(at)

    at.slider(key="w_slider_multiplier").set_value(2.3).run()  # off the grid: interpolated, then computed live
    assert_clean(at)
    after = metrics(at)
    assert "Mean propensity at 2.3" in after
    assert after["Mean change vs multiplier 0"] != before["Mean change vs multiplier 0"]
    assert "Computed live from the cached prompt states." in texts(at)
    import ui.runs

    for fut in list(ui.runs._pending.values()):  # the neighbours are computed in the background
        fut.result(60)
    run_key = next(iter(at.session_state["memo_results"].values())).manifest["key"]
    computed = ui.runs.SLIDER_VALUES[(run_key, at.session_state["s_layer"])]
    assert {2.2, 2.3, 2.4} <= set(computed)  # the next notch either way is exact at once
    # ... and what the background worker stored is the live computation, in the steerability table's order
    import numpy as np

    from steering.engine import fast
    from steering.run.live import live_propensities
    from ui import resources

    result = next(iter(at.session_state["memo_results"].values()))
    layer = at.session_state["s_layer"]
    fresh = live_propensities(resources.model("tiny-random"), result, layer, 2.2, fast.CacheStore(max_bytes=2**28))
    table_ids = result.steerability[result.steerability.layer == layer].example_id.to_numpy()
    order = [list(result.test_pairs().example_id).index(e) for e in table_ids]
    np.testing.assert_allclose(computed[2.2], fresh[order], rtol=1e-5, atol=1e-6)
    live_fig = charts(at)[2]
    assert live_fig["data"][1]["name"] == "multiplier 2.3"

    at.slider(key="w_slider_multiplier").set_value(-1.5).run()  # on the grid: from the stored table
    assert "Mean propensity at -1.5" in metrics(at) and "From the stored sweep grid." in texts(at)
    # The value survives a page switch.
    at.switch_page("app.py").run().switch_page("pages/1_Steerability.py").run()
    assert at.slider(key="w_slider_multiplier").value == -1.5


def test_off_grid_slider_value_shows_the_interpolated_estimate_until_refined(monkeypatch):
    import numpy as np

    import ui.runs
    from steering.run.live import interpolate

    monkeypatch.setattr(ui.runs, "refine", lambda *a: False)  # as if the computation had not finished yet
    monkeypatch.setattr(ui.runs, "prefetch", lambda *a: [])
    monkeypatch.setattr(ui.runs, "SLIDER_VALUES", type(ui.runs.SLIDER_VALUES)())
    at = computed_app()
    at.switch_page("pages/1_Steerability.py").run()
    at.slider(key="w_slider_multiplier").set_value(1.2).run()
    assert_clean(at)
    assert "Interpolated from the stored sweep grid: refining…" in texts(at)
    result = next(iter(at.session_state["memo_results"].values()))
    props = result.propensities
    table = props.pivot_table(index="example_id", columns="multiplier", values="propensity")
    expected = np.mean(interpolate(table.columns.to_numpy(), table.to_numpy(), 1.2))
    assert metrics(at)["Mean propensity at 1.2"] == f"{expected:.3g}"


# ---------------------------------------------------------------- layer sweep page


def test_layer_sweep_computes_all_layers_and_sets_the_sidebar_layer():
    at = new_app()
    at.switch_page("pages/2_Layer_sweep.py").run()
    assert_clean(at)
    at.button(key="sweep_all").click().run()
    assert_clean(at)
    figs = charts(at)
    assert figs[0]["data"][0]["type"] == "heatmap" and values(figs[0]["data"][0]["y"]) == [0, 1, 2, 3]
    assert "Fraction anti-steerable" in json.dumps(figs[1]["layout"])
    at.selectbox(key="w_pick_layer").set_value(1).run()
    assert_clean(at)
    assert at.sidebar.slider(key="w_layer").value == 1
    # The all-layers run serves every layer: the Steerability page needs no new compute.
    at.switch_page("pages/1_Steerability.py").run()
    assert_clean(at)
    assert "Mean steerability" in metrics(at) and len(charts(at)) == 4


# ---------------------------------------------------------------- inspect page


def test_inspect_shows_an_anti_steerable_example_with_tokens_and_curves():
    at = computed_app()
    at.switch_page("pages/3_Inspect_examples.py").run()
    assert_clean(at)
    at.checkbox(key="w_only_anti").check().run()
    assert_clean(at)
    table = at.dataframe(key="w_table").value
    assert len(table) and table.anti_steerable.all()
    assert list(table.slope) == sorted(table.slope)  # most anti-steerable first
    target = table.example_id.iloc[-1]
    at.selectbox(key="w_example").set_value(target).run()
    assert_clean(at)
    heading = [s.value for s in at.subheader if target in s.value]
    assert heading and "anti-steerable" in heading[0]
    token_html = [m.value for m in at.markdown if "token-view" in m.value]
    assert token_html and "read token" in token_html[0] and "outline" in token_html[0]
    figs = charts(at)
    assert [f["layout"]["title"]["text"] for f in figs] == ["Propensity of this example", "P(A) and P(B) vs multiplier"]
    curve = [d.value for d in at.dataframe if "p_A" in d.value.columns][0]
    assert list(curve.columns) == ["multiplier", "propensity", "p_A", "p_B"]
    assert ((curve.p_A >= 0) & (curve.p_A <= 1)).all()
    # Sorting by rmse reorders; the selection is kept while it is still listed.
    at.selectbox(key="w_sort_by").set_value("rmse").run()
    assert at.selectbox(key="w_example").value == target


def test_inspect_row_click_selects_the_example():
    at = computed_app()
    at.switch_page("pages/3_Inspect_examples.py").run()
    ids = list(at.dataframe(key="w_table").value.example_id)
    assert at.selectbox(key="w_example").value == ids[0]  # the most anti-steerable by default
    at.session_state["w_table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}  # a row click
    at.run()
    assert_clean(at)
    assert at.selectbox(key="w_example").value == ids[2]
    # Choosing another example in the selectbox is not undone by the table's (unchanged) selection.
    at.selectbox(key="w_example").set_value(ids[3]).run()
    assert at.selectbox(key="w_example").value == ids[3]


def test_inspect_generation_shows_steered_next_to_unsteered():
    at = computed_app()
    at.switch_page("pages/3_Inspect_examples.py").run()
    at.number_input(key="w_inspect_tokens").set_value(4).run()
    at.button(key="inspect_generate").click().run()
    assert_clean(at)
    md = " ".join(m.value for m in at.markdown)
    assert "Unsteered" in md and "Steered" in md
    assert len(at.code) >= 2


# ---------------------------------------------------------------- live steering page


def test_live_steering_free_prompt_streams_both_generations():
    at = computed_app()
    at.switch_page("pages/4_Live_steering.py").run()
    assert_clean(at)
    at.slider(key="w_live_tokens").set_value(5).run()
    at.button(key="live_generate").click().run()
    assert_clean(at)
    outputs = [c.value for c in at.code][-2:]
    assert len(outputs) == 2 and all(outputs)
    # A layer without a vector offers to train it, instead of failing.
    at.slider(key="w_live_layer").set_value(0).run()
    assert_clean(at)
    at.button(key="live_train").click().run()
    assert_clean(at)
    at.radio(key="w_live_source").set_value("Test item").run()
    assert_clean(at)
    assert at.selectbox(key="w_live_example").value


# ---------------------------------------------------------------- export page


def test_export_offers_tables_vectors_figures_and_a_working_snippet(app_env):
    at = computed_app()
    at.switch_page("pages/5_Export.py").run()
    assert_clean(at)
    keys = {b.key for b in at.get("download_button")}
    assert {"dl_steer_csv", "dl_steer_pq", "dl_vec", "dl_vec_json", "dl_html", "dl_gguf"} <= keys
    from steering.interop.static_figures import unavailable_reason

    if unavailable_reason() is None:
        assert {"dl_png_0", "dl_svg_0"} <= keys
    else:
        assert unavailable_reason() in texts(at)
    code = [c.value for c in at.code if "run_sweep" in c.value][0]
    scope: dict = {}
    exec(compile(code.replace("print(", "(lambda *a: None)("), "snippet", "exec"), scope)  # noqa: S102
    assert scope["result"].cached  # the snippet reproduces exactly the stored run
    # The deferred HTML download: every figure, plotly.js embedded once (offline).
    from ui.export import report_html

    html = report_html(scope["result"], 2, "logit_diff")
    assert "Per-example steerability, layer 2" in html and html.count("Plotly.newPlot") == 3


# ---------------------------------------------------------------- errors are messages


def test_bad_upload_is_an_error_message_and_keeps_results():
    at = computed_app()
    before = metrics(at)["Mean steerability"]
    at.sidebar.file_uploader(key="w_upload").set_value(("broken.jsonl", b'{"question": "Q?"}\n', "application/json"))
    at.run()
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert errors and "Upload rejected" in errors[0] and "broken.jsonl" in errors[0] and "line 1" in errors[0]
    assert metrics(at)["Mean steerability"] == before  # nothing computed before is lost
    assert at.sidebar.selectbox(key="w_dataset").value.endswith("corrigibility-demo.jsonl")


def test_good_upload_becomes_the_concept():
    good = b"".join(
        json.dumps({"question": f"Q{i}?\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": " (A)"
                    if i % 2 else " (B)"}).encode() + b"\n" for i in range(40))
    at = new_app()
    at.sidebar.file_uploader(key="w_upload").set_value(("mine.jsonl", good, "application/json")).run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="w_dataset").value == "upload:mine"
    assert metrics(at)["Items"] == "40"


def test_switching_concept_resets_split_sizes_to_its_defaults():
    good = b"".join(json.dumps({"question": f"Q{i}?\n\nChoices:\n (A) yes\n (B) no",
                                "answer_matching_behavior": " (A)"}).encode() + b"\n" for i in range(200))
    at = new_app()
    assert at.sidebar.number_input(key="w_n_train").value == N_TRAIN  # preset sizes kept on first load
    at.sidebar.file_uploader(key="w_upload").set_value(("big.jsonl", good, "application/json")).run()
    assert_clean(at)
    assert at.sidebar.number_input(key="w_n_train").value == 100 and at.sidebar.number_input(key="w_n_test").value == 50
    one = json.dumps({"question": "Q?\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": " (A)"})
    at.sidebar.file_uploader(key="w_upload").set_value(("one.jsonl", one.encode(), "application/json")).run()
    assert not at.exception
    assert any("needs at least 2" in e.value for e in at.sidebar.error)


def test_upload_helper_rejects_oversized_and_malformed_files():
    from steering.core.datasets import MAX_UPLOAD_BYTES
    from ui.upload import parse_upload

    ds, err = parse_upload(b"x" * (MAX_UPLOAD_BYTES + 1), "big.jsonl")
    assert ds is None and "limit is 20 MB" in err
    ds, err = parse_upload(b"\xff\xfe\x00garbage", "bad.csv")
    assert ds is None and err
    ds, err = parse_upload(b"a,b\n1,2\n", "data.txt")
    assert ds is None and "extension" in err


def test_unloadable_model_is_reported_not_raised():
    at = new_app(model="no-such-model")
    assert not at.exception
    assert any("unknown model 'no-such-model'" in e.value for e in at.sidebar.error)
    assert any("Choose a model" in i.value for i in at.info)
    at.switch_page("pages/1_Steerability.py").run()
    assert not at.exception


def test_bad_multipliers_are_reported_and_previous_grid_kept():
    at = new_app()
    at.sidebar.text_input(key="w_multipliers").set_value("-1, oops").run()
    assert not at.exception
    assert any("cannot read multipliers" in e.value for e in at.error)
    assert at.session_state["s_multipliers"] == [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
    at.sidebar.text_input(key="w_multipliers").set_value("-2, 0, 2").run()
    assert_clean(at)
    assert at.session_state["s_multipliers"] == [-2.0, 0.0, 2.0]


def test_missing_data_directory_falls_back_to_bundled(monkeypatch, tmp_path):
    monkeypatch.setenv("STEERING_DATA_DIR", str(tmp_path / "nowhere"))
    at = new_app()
    assert not at.exception
    assert any("data directory does not exist" in e.value for e in at.sidebar.error)
    assert metrics(at)["Items"] == "64"


def test_sweep_error_in_the_page_is_a_message():
    at = new_app(n_train=60, n_test=30)  # 90 > 64 items: clamped by the sidebar, not an exception
    assert_clean(at)
    assert at.sidebar.number_input(key="w_n_train").value + at.sidebar.number_input(key="w_n_test").value <= 64
