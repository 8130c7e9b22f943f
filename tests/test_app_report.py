"""AppTest for the Report card page (tiny random model): missing parts offered before anything is computed,
one button completing the card, the card's rows, thresholds that move its marks, the HTML download, the
worst inputs opening Inspect, a stored study's concept table, and Home's link to the page."""

from __future__ import annotations

import re

from test_app import app_env, assert_clean, charts, new_app  # noqa: F401 - app_env: autouse fixture

PAGE = "pages/0_Report_card.py"
KEYS = ["steers", "chance", "reliable", "letter", "stable", "generalises", "beats", "affordable"]


def marks(at) -> dict[str, str]:
    """criterion key -> mark, read off the card's HTML table."""
    card = next(m.value for m in at.markdown if "data-key=" in m.value)
    return dict(re.findall(r"data-key='(\w+)'><td class='mark'[^>]*>(\w+)<", card))


def report_app():
    at = new_app()
    at.switch_page(PAGE).run()
    assert_clean(at)
    return at


def test_report_page_offers_the_missing_parts_then_completes_the_card(app_env):  # noqa: F811
    at = report_app()
    info = " ".join(i.value for i in at.info)
    assert "Missing: diagnostics" in info and "prompting baseline" in info and "side effects" in info
    assert list(marks(at)) == KEYS and set(marks(at).values()) == {"missing"}
    assert not re.search(r"\bnan\b", " ".join(m.value for m in at.markdown), re.I)
    at.button(key="report_complete").click().run(timeout=600)
    assert_clean(at)
    assert not [b for b in at.button if b.key == "report_complete"]  # nothing left to compute
    assert list(marks(at)) == KEYS and "missing" not in marks(at).values()
    assert any(m.value.startswith("**Verdict.**") for m in at.markdown)
    titles = [c.get("layout", {}).get("title", {}).get("text", "") for c in charts(at)]
    assert any("against asking" in t for t in titles) and len(titles) == 4
    assert [d.key for d in at.get("download_button")] == ["report_download"]
    # Thresholds move the marks: everything anti-steerable is tolerated, so that row turns green.
    at.number_input(key="w_th_anti_red").set_value(1.0).run()
    at.number_input(key="w_th_anti_green").set_value(1.0).run()
    assert_clean(at)
    assert marks(at)["reliable"] == "green"
    # A worst input opens in Inspect examples.
    first = next(b for b in at.button if b.key.startswith("report_inspect_"))
    example = first.key[len("report_inspect_"):]
    first.click().run()
    assert_clean(at)
    assert at.session_state["s_example"] == example


def test_study_table_has_a_row_per_concept_and_opens_a_card(app_env):  # noqa: F811
    from steering.analyses.study.compute import run_study
    from steering.analyses.study.spec import make_spec
    from steering.engine.tiny import tiny_random_model

    lm = tiny_random_model()
    spec = make_spec("cards", "tiny-random", "corrigibility-demo,optimism-demo", "id,ood", "2", n_train=16,
                     n_test=12)
    run_study(spec, app_env, models={lm.name: lm})
    at = report_app()
    study = at.dataframe[0].value
    assert list(study.dataset) == ["corrigibility-demo", "optimism-demo"]
    assert study["generalises"].str.contains("missing").sum() == 0  # the study's OOD cells
    at.selectbox(key="w_report_open").set_value(("tiny-random", "optimism-demo")).run()
    at.button(key="report_open").click().run()
    assert_clean(at)
    assert at.session_state["s_dataset"].endswith("optimism-demo.jsonl") and at.session_state["s_layer"] == 2


def test_home_links_to_the_report_card(app_env):  # noqa: F811
    at = new_app()
    assert_clean(at)
    assert any(p.proto.page == "Report_card" and "report card" in p.proto.label for p in at.get("page_link"))
