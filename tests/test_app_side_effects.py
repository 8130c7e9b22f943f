"""AppTest for the Side effects page (tiny random model): compute, the four figures, the recommendation
reacting to the KL budget, the entanglement heatmap, and coherence scores beside live generations."""

from __future__ import annotations

from test_app import app_env, assert_clean, charts, computed_app, new_app  # noqa: F401 - app_env: autouse fixture

PAGE = "pages/8_Side_effects.py"


def test_side_effects_page_computes_and_draws(app_env):  # noqa: F811
    at = computed_app()
    at.switch_page(PAGE).run()
    assert_clean(at)
    at.button(key="se_compute").click().run()
    assert_clean(at)
    titles = [c.get("layout", {}).get("title", {}).get("text", "") for c in charts(at)]
    assert any("KL" in t for t in titles) and any("Perplexity ratio" in t for t in titles)
    assert any("Trade-off" in t for t in titles) and any("Capability" in t for t in titles)
    text = " ".join(m.value for m in at.markdown)
    assert "Recommended" in text or "No recommendation" in text
    at.number_input(key="w_se_budget").set_value(1e6).run()  # any setting fits the budget
    assert_clean(at)
    text = " ".join(m.value for m in at.markdown)
    if not any(m.label == "Recommended" for m in at.metric):  # then no setting helps on validation items
        import re

        best = re.search(r"the best validation gain is (-?[0-9.e+-]+)", text)
        assert best and float(best.group(1)) <= 0, text
    assert any("measured with a vector fitted on the other" in c.value for c in at.caption)
    # The stored table is served to a fresh session without recomputing (no Compute button).
    again = new_app()
    again.switch_page(PAGE).run()
    assert_clean(again)
    assert not [b for b in again.button if b.key == "se_compute"]


def test_changed_settings_offer_a_recompute(app_env):  # noqa: F811
    import json

    at = computed_app()
    at.switch_page(PAGE).run()
    at.button(key="se_compute").click().run()
    assert not [b for b in at.button if b.key == "se_recompute"]  # the form matches the stored table
    at.slider(key="w_se_tokens").set_value(32).run()
    assert_clean(at)
    assert any("measured with other settings (text_tokens" in i.value for i in at.info)
    at.button(key="se_recompute").click().run()
    assert_clean(at)
    assert not [b for b in at.button if b.key == "se_recompute"]
    runs = [p for p in app_env.rglob("manifest.json") if "side_effects" in json.loads(p.read_text())]
    assert [json.loads(p.read_text())["side_effects"]["settings"]["text_tokens"] for p in runs] == [32]


def expected_cells(results, heat: dict) -> list[list[str]]:
    """The heatmap's printed cells from the stored raw shifts, in the figure's row (steered with) and column
    (measured on) order: shift[X, Y] / shift[Y, Y]. The shifts themselves are checked against plain sweeps
    in test_side_effects."""
    import pandas as pd

    (path,) = (results / "entanglement").glob("*.parquet")
    shift = pd.read_parquet(path).set_index(["steered_with", "measured_on"])["shift"]
    rows, cols = heat["data"][0]["y"], heat["data"][0]["x"]
    return [[f"{shift[(r, c)] / shift[(c, c)]:.2f}" for c in cols] for r in rows]


def test_entanglement_heatmap_on_the_page(app_env):  # noqa: F811
    at = computed_app()
    at.switch_page(PAGE).run()
    options = at.multiselect(key="w_ent_concepts").options
    at.multiselect(key="w_ent_concepts").set_value([o for o in options if "demo" in o][:2]).run()
    at.button(key="ent_compute").click().run()
    assert_clean(at)
    heat = [c for c in charts(at) if "Entanglement" in c.get("layout", {}).get("title", {}).get("text", "")]
    assert heat
    cells = heat[0]["data"][0]["text"]  # the printed values (z is binary-encoded in the spec)
    assert len(cells) == 2 and cells == expected_cells(app_env, heat[0])
    assert cells[0][1] != cells[1][0]  # off-diagonal cells differ: a transposed matrix would be caught


def test_live_generations_show_coherence(app_env):  # noqa: F811
    at = computed_app()
    at.switch_page("pages/4_Live_steering.py").run()
    at.session_state["s_live_tokens"] = 6
    at.run()
    at.button(key="live_generate").click().run()
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption)
    assert captions.count("distinct-2") >= 2 and "perplexity (unsteered model)" in captions
