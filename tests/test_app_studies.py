"""The study pages with AppTest on a small stored study (tiny random model): each renders cleanly;
choosing a concept on the Overview sets the sidebar so Steerability opens on the study's stored run
(nothing recomputed); Generalisation clicks through to Inspect; the form starts a study that lands in
the same store as the CLI's; bad form input is an in-page error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from steering.analyses.study.compute import list_studies, run_study
from steering.analyses.study.spec import make_spec
from steering.engine.tiny import tiny_random_model

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["pages/7_Study_overview.py", "pages/7_Study_generalisation.py", "pages/7_Study_models.py"]
N_TRAIN, N_TEST = 16, 12


@pytest.fixture(scope="module")
def stored_study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study_results")
    lm = tiny_random_model()
    for model in ("tiny-random",):
        spec = make_spec("small", model, "corrigibility-demo,optimism-demo", "id,ood", "2", n_train=N_TRAIN,
                         n_test=N_TEST)
        run_study(spec, out, models={lm.name: lm})
    return out


@pytest.fixture(autouse=True)
def app_env(tmp_path, monkeypatch, stored_study):
    results = tmp_path / "results"
    shutil.copytree(stored_study, results)
    monkeypatch.setenv("STEERING_MODEL", "tiny-random")
    monkeypatch.setenv("STEERING_RESULTS", str(results))
    monkeypatch.delenv("STEERING_DATA_DIR", raising=False)
    return results


def page_app(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["s_n_train"] = N_TRAIN
    at.session_state["s_n_test"] = N_TEST
    at.run()
    return at.switch_page(page).run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def titles(at: AppTest) -> list[str]:
    import json

    return [json.loads(c.proto.spec).get("layout", {}).get("title", {}).get("text", "") for c in at.get("plotly_chart")]


@pytest.mark.parametrize("page", PAGES)
def test_every_study_page_renders(page):
    at = page_app(page)
    assert_clean(at)
    assert at.selectbox(key="w_study").value == "small"


def test_overview_shows_figure1_and_opens_a_concept_without_recomputing(app_env):
    at = page_app(PAGES[0])
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 2
    assert any("explains" in t for t in titles(at))
    assert at.metric[0].value == "2"  # concepts
    # Both concepts are A/B items: their Yes/No share is shown as undefined with the reason, not as 0.
    notes = [c.value for c in at.caption if c.value.startswith("Undefined (not zero)")]
    assert len(notes) == 1 and notes[0].count("Yes/No share undefined: no item has a Yes/No answer") == 2
    runs_before = sorted(p.name for p in app_env.iterdir())
    at.selectbox(key="w_study_pair").set_value("BASE->SYS_NEG").run()
    at.selectbox(key="w_study_concept").set_value("optimism-demo").run()
    at.button(key="open_steerability").click().run()
    assert_clean(at)
    s = at.session_state
    assert (s["s_layer"], s["s_train_variant"], s["s_test_variant"]) == (2, "BASE", "SYS_NEG")
    assert (s["s_n_train"], s["s_n_test"]) == (N_TRAIN, N_TEST) and s["s_dataset"].endswith("optimism-demo.jsonl")
    at.switch_page("pages/1_Steerability.py").run()
    assert_clean(at)
    assert not [b for b in at.button if b.key == "compute_layer"]  # served from the study's stored run
    assert any(m.label == "Anti-steerable" for m in at.metric)
    assert sorted(p.name for p in app_env.iterdir()) == runs_before  # nothing new was computed


def test_generalisation_heatmaps_scatter_and_click_through_to_inspect():
    at = page_app(PAGES[1])
    assert_clean(at)
    t = titles(at)
    assert any(x.startswith("ID vs OOD") and "Spearman" in x for x in t) and any(x.startswith("Per example") for x in t)
    assert len(t) == 4
    at.selectbox(key="w_study_ood").set_value("USER_POS").run()
    assert_clean(at)
    chosen = at.selectbox(key="w_gen_example").value
    at.button(key="gen_inspect").click().run()
    assert at.session_state["s_example"] == chosen and at.session_state["s_test_variant"] == "USER_POS"
    at.switch_page("pages/3_Inspect_examples.py").run()
    assert_clean(at)
    assert at.selectbox(key="w_example").value == chosen


def test_models_page_explains_a_one_model_study():
    at = page_app(PAGES[2])
    assert_clean(at)
    assert any("has one model" in i.value for i in at.info)


def test_form_starts_a_study_in_the_shared_store_and_bad_input_is_an_error(app_env):
    at = page_app(PAGES[0])
    at.text_input(key="w_form_name").set_value("from-form")
    at.text_input(key="w_form_datasets").set_value("power-seeking-demo")
    at.text_input(key="w_form_layer").set_value("1")
    at.button(key="w_form_run").click().run()
    assert_clean(at)
    assert {s["name"] for s in list_studies(app_env)} == {"small", "from-form"}
    assert at.selectbox(key="w_study").value == "from-form"
    at.text_input(key="w_form_name").set_value("bad name!")
    at.button(key="w_form_run").click().run()
    assert [e.value for e in at.error] and "bad study name" in at.error[0].value
    assert not at.exception


def test_side_effects_page_draws_entanglement_from_the_study(app_env):
    at = page_app("pages/8_Side_effects.py")
    at.radio(key="w_ent_source").set_value("a stored study").run()
    assert_clean(at)
    assert at.selectbox(key="w_ent_study").value == "small"
    at.button(key="ent_compute_study").click().run()
    assert_clean(at)
    heat = [c for c in at.get("plotly_chart") if "Entanglement" in c.proto.spec]
    assert heat
    import json

    from test_app_side_effects import expected_cells

    spec = json.loads(heat[0].proto.spec)
    assert len(spec["data"][0]["text"]) == 2 and spec["data"][0]["text"] == expected_cells(app_env, spec)
