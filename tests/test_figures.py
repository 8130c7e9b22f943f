"""The pure figure builders (steering.run.figures) and the token view's HTML: units, shading, escaping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steering.run import figures


def props_frame(n=10, layers=(0, 1), mults=(-1.0, 0.0, 1.0), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    slopes = rng.normal(0.2, 0.5, n)
    rows = [{"example_id": f"d:{i}", "layer": l, "multiplier": m, "propensity": slopes[i] * m * (l + 1) + 0.1 * i}
            for i in range(n) for l in layers for m in mults]
    return pd.DataFrame(rows)


def test_zero_is_a_bin_edge_so_bins_never_mix_signs():
    for values in ([-0.3, 0.1, 0.25], [0.1, 0.2, 0.3], [-2.0, -1.0], [0.0, 0.0]):
        edges = figures.zero_aligned_bins(np.array(values), 7)
        assert np.isclose(edges, 0).any() and edges[0] <= min(values) and edges[-1] > max(values)


def test_slope_histogram_shades_the_anti_steerable_region_and_labels_units():
    fig = figures.slope_histogram([-0.5, -0.1, 0.2, 0.4, 0.45], "logit_diff")
    assert fig.layout.xaxis.title.text == "steerability (logit difference per unit multiplier)"
    rect = [s for s in fig.layout.shapes if s.type == "rect"][0]
    assert rect.x1 == 0 and rect.x0 < -0.5
    anti, steer = fig.data
    assert sum(anti.y) == 2 and sum(steer.y) == 3 and all(x < 0 for x in anti.x)


def test_mean_interval_matches_a_t_interval():
    from scipy import stats

    df = props_frame(n=12, layers=(0,))
    m = figures.mean_interval(df)
    at1 = df[df.multiplier == 1.0].propensity
    lo, hi = stats.t.interval(0.95, len(at1) - 1, loc=at1.mean(), scale=stats.sem(at1))
    row = m[m.multiplier == 1.0].iloc[0]
    assert row["mean"] == pytest.approx(at1.mean()) and row.lo == pytest.approx(lo) and row.hi == pytest.approx(hi)


def test_propensity_curves_highlight_anti_steerable_examples():
    df = props_frame(layers=(0,))
    fig = figures.propensity_curves(df, ["d:1", "d:2"], "logit_diff", n_sample=6)
    red = [t for t in fig.data if t.line.color == figures.ANTI]
    assert len(red) == 1 and {c for c in red[0].customdata if c} == {"d:1", "d:2"}
    blue = [t for t in fig.data if t.line.color == figures.BASE]
    assert {c for c in blue[0].customdata if c}.isdisjoint({"d:1", "d:2"}) and len(set(blue[0].customdata)) > 1
    gaps = [i for i, x in enumerate(red[0].x) if x is None]  # one gap after each curve: no line joins two items
    assert len(gaps) == 2 and red[0].y[gaps[0]] is None
    assert fig.layout.yaxis.title.text == "propensity (logit difference)"


def test_change_table_is_zero_at_multiplier_zero_and_heatmap_diverges_at_zero():
    df = props_frame()
    table = figures.change_table(df)
    assert np.allclose(table[0.0], 0) and list(table.index) == [0, 1]
    fig = figures.layer_heatmap(df, "logit_diff", selected=1)
    assert fig.data[0].zmid == 0 and fig.layout.title.text.startswith("Mean propensity change")


def test_layer_summary_has_intervals_for_both_panels():
    table = pd.DataFrame({"layer": [0, 1], "mean_slope": [0.1, 0.3], "mean_slope_lo": [0.0, 0.2],
                          "mean_slope_hi": [0.2, 0.5], "frac_anti": [0.4, 0.2], "frac_anti_lo": [0.3, 0.1],
                          "frac_anti_hi": [0.5, 0.35]})
    fig = figures.layer_summary(table, "logit_diff", selected=1)
    assert len(fig.data) == 2 and all(t.error_y.array is not None for t in fig.data)
    assert list(fig.data[1].error_y.array) == pytest.approx([0.1, 0.15])


def test_example_and_answer_figures_and_distribution():
    pts = pd.DataFrame({"multiplier": [-1.0, 0.0, 1.0], "propensity": [1.0, 0.5, 0.0]})
    fig = figures.example_curve(pts, -0.5, 0.5)
    assert fig.data[0].marker.color == figures.ANTI and "slope -0.5" in fig.data[1].name
    probs = figures.answer_probs(pd.DataFrame({"multiplier": [0.0, 1.0], "p_A": [0.2, 0.6], "p_B": [0.7, 0.3]}))
    assert [t.name for t in probs.data] == ["P(A)", "P(B)"] and tuple(probs.layout.yaxis.range) == (0, 1)
    dist = figures.distribution_at([0.0, 0.1], [0.5, 0.7], 1.3, "prob")
    assert dist.data[1].name == "multiplier 1.3" and dist.layout.xaxis.title.text == "propensity (P(positive))"


def test_figures_html_embeds_plotlyjs_once_and_escapes_titles():
    figs = {"a <b>": figures.slope_histogram([0.1, -0.1]), "b": figures.slope_histogram([0.2])}
    html = figures.figures_html(figs, "t <script>")
    assert html.count("plotly.js v") <= 2 and "<script>alert" not in html and "t &lt;script&gt;" in html
    assert html.count("Plotly.newPlot") == 2


def test_token_view_html_escapes_text_and_marks_roles():
    from ui.views import tokens_html

    html = tokens_html([{"text": "<script>x</script>", "index": 0, "role": "prompt"},
                        {"text": "A", "index": 1, "role": "read"},
                        {"text": "\n", "index": 2, "role": "completion"}])
    assert "<script>x" not in html and "&lt;script&gt;" in html
    assert "answer-letter token" in html and "↵<br>" in html


def test_slopes_by_factor_groups_by_letter_and_yes_no():
    steer = pd.DataFrame({"slope": [0.5, 0.4, -0.3, -0.2, 0.1],
                          "pos_is_A": [True, True, False, False, True],
                          "pos_is_yes": [True, False, True, False, True]})
    fig = figures.slopes_by_factor(steer)
    names = [t.name for t in fig.data]
    assert names == ["positive is (A) (n=3)", "positive is (B) (n=2)", "positive is Yes (n=3)", "positive is No (n=2)"]
    assert sorted(fig.data[1].y) == [-0.3, -0.2]
    # Without Yes/No (risk-format data) only the letter split is drawn.
    assert len(figures.slopes_by_factor(steer.assign(pos_is_yes=None)).data) == 2
