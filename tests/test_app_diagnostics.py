"""Dashboard (AppTest, tiny random model): the Diagnostics page, the Inspect verdict and the Home headline."""

from __future__ import annotations

import pytest
from test_app import app_env, assert_clean, charts, computed_app, metrics, new_app, texts  # noqa: F401 - fixture

PAGE = "pages/6_Diagnostics.py"


@pytest.fixture
def diag_app():
    at = computed_app()
    at.switch_page(PAGE).run()
    assert_clean(at)
    assert at.button(key="diag_compute").label == "Compute diagnostics for layer 2"
    at.button(key="diag_compute").click().run()
    assert_clean(at)
    return at


def test_diagnostics_page_computes_and_shows_every_figure(diag_app, app_env):
    at = diag_app
    titles = [f["layout"]["title"]["text"] for f in charts(at)]
    assert titles[0].startswith("Layer 2: per-example slopes against the null")
    assert titles[1].startswith("Layer 2: A/B swap")
    assert sum(t.startswith("Spearman rho") for t in titles) == 3  # the three predictor scatters
    m = metrics(at)
    for label in ("Letter-driven", "Letter-free mean", "Beyond the random null band", "Beyond the shuffled null band"):
        assert label in m
    assert "Directional agreement" in texts(at) and "half-vectors" in texts(at)
    # The swap scatter's two groups add up to the test items, and its counts are the letter-driven share.
    swap = charts(at)[1]
    names = [t["name"] for t in swap["data"]]
    counts = [int(n.split("(")[1].rstrip(")")) for n in names]
    assert sum(counts) == 12
    assert m["Letter-driven"] == f"{counts[0] / 12:.0%}"
    runs = [d for d in app_env.iterdir() if not d.name.startswith(".")]
    assert any((d / "swap.parquet").exists() and (d / "null.parquet").exists() for d in runs)


def test_inspect_shows_the_examples_diagnostics_and_a_verdict(diag_app):
    at = diag_app
    at.switch_page("pages/3_Inspect_examples.py").run()
    assert_clean(at)
    m = metrics(at)
    for label in ("Null z (random)", "Null z (label-shuffled)", "Slope, options swapped", "Own-difference cosine"):
        assert label in m and m[label] != "n/a"
    verdict = [x.value for x in at.markdown if x.value.startswith("**Verdict:**")]
    assert len(verdict) == 1 and len(verdict[0]) > 20
    # The verdict follows its definition for this example.
    if float(m["Slope, options swapped"]) * float(at.subheader[0].value.split("slope ")[1].split(" ")[0]) < 0:
        assert "letter-driven" in verdict[0]


def test_home_headline_adds_letter_free_figures_once_diagnostics_exist(diag_app):
    at = diag_app
    at.switch_page("app.py").run()
    assert_clean(at)
    m = metrics(at)
    assert "Letter-free steerability" in m and "Letter-driven items" in m
    assert "anti-steerable" in texts(at)


def test_diagnostics_page_before_compute_explains_and_offers_the_button():
    at = new_app()
    at.switch_page(PAGE).run()
    assert_clean(at)
    assert "A/B swap" in texts(at) and at.button(key="diag_compute")
