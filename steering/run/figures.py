"""Plotly figures of a sweep, as pure functions (no Streamlit): the pages, the CLI and tests share them.

No template is set, so Streamlit's theme (light or dark) styles them in the app
and plotly's default styles them in exported HTML. Colours are chosen to read on
both backgrounds: blue for steerable, red for anti-steerable, grey for unsteered.
Axis titles carry units: propensity in the metric's unit, slopes in that unit
per unit multiplier.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from steering.core import metrics

STEER = "#1f77b4"
ANTI = "#d62728"
BASE = "#8c8c8c"
ANTI_FILL = "rgba(214, 39, 40, 0.12)"
BAND_FILL = "rgba(31, 119, 180, 0.22)"

_SHORT_UNITS = {"logit_diff": "logit difference", "logprob_diff": "log-probability difference",
                "prob": "P(positive)", "answer_text": "mean token log-prob difference"}


def propensity_unit(metric: str = "logit_diff") -> str:
    return _SHORT_UNITS.get(metric, metric)


def propensity_label(metric: str = "logit_diff") -> str:
    return f"propensity ({propensity_unit(metric)})"


def slope_label(metric: str = "logit_diff") -> str:
    return f"steerability ({propensity_unit(metric)} per unit multiplier)"


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 380) -> go.Figure:
    fig.update_layout(title=dict(text=title), height=height, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=y)
    return fig


def _vline(fig: go.Figure, x: float, colour: str, dash: str, text: str | None = None) -> None:
    """A vertical line across the plot (plotly's add_vline costs several ms each: these figures redraw live)."""
    fig.add_shape(type="line", x0=x, x1=x, y0=0, y1=1, xref="x", yref="paper", line=dict(color=colour, dash=dash))
    if text:
        fig.add_annotation(x=x, y=1, xref="x", yref="paper", text=text, showarrow=False, xanchor="left",
                           yanchor="bottom")


def zero_aligned_bins(values: np.ndarray, nbins: int = 30) -> np.ndarray:
    """Histogram bin edges with 0 as an edge, so no bin mixes anti-steerable and steerable slopes."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    lo, hi = (min(v.min(), 0.0), max(v.max(), 0.0)) if len(v) else (-1.0, 1.0)
    width = (hi - lo) / max(nbins, 1) or max(abs(lo), abs(hi), 1.0) * 0.1
    first = np.floor(lo / width) * width
    last = (np.floor(hi / width) + 1) * width
    return np.arange(first, last + width / 2, width)


def slope_histogram(slopes: Sequence[float], metric: str = "logit_diff", nbins: int = 30,
                    title: str = "Per-example steerability") -> go.Figure:
    """Histogram of per-example slopes; anti-steerable examples (slope ≤ 0, the paper's rule) are red,
    counted by example so a slope of exactly 0 is never drawn as steerable."""
    s = np.asarray(slopes, dtype=float)
    edges = zero_aligned_bins(s, nbins)
    centers, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    anti = metrics.anti_steerable(s)
    fig = go.Figure()
    parts = ((s[anti], "anti-steerable (slope ≤ 0)", ANTI), (s[~anti], "steerable (slope > 0)", STEER))
    for subset, name, colour in parts:
        counts, _ = np.histogram(subset, edges)
        keep = counts > 0
        fig.add_bar(x=centers[keep], y=counts[keep], width=width * 0.95, name=name, marker_color=colour,
                    customdata=np.stack([edges[:-1][keep], edges[1:][keep]], -1),
                    hovertemplate="slope %{customdata[0]:.3g} to %{customdata[1]:.3g}: %{y} examples<extra></extra>")
    fig.add_shape(type="rect", x0=edges[0], x1=0, y0=0, y1=1, xref="x", yref="paper", fillcolor=ANTI_FILL,
                  line_width=0, layer="below")
    _vline(fig, 0, ANTI, "dot")
    if len(s):
        _vline(fig, float(s.mean()), STEER, "dash", f"mean {s.mean():.3g}")
    fig.update_layout(barmode="stack", bargap=0)
    return _layout(fig, title, slope_label(metric), "examples")


def slopes_by_factor(steer: pd.DataFrame, metric: str = "logit_diff",
                     title: str = "Steerability by spurious factor") -> go.Figure:
    """Slopes split by which letter holds the positive answer (and Yes/No where known).

    Tan et al. found much of the per-example variance follows such factors;
    two well separated boxes here mean the vector mostly moves the letter.
    """
    groups = [("positive is (A)", steer.pos_is_A.astype(bool)), ("positive is (B)", ~steer.pos_is_A.astype(bool))]
    yes = steer.pos_is_yes
    if yes.notna().all() and len(yes):
        yes = yes.astype(bool)
        groups += [("positive is Yes", yes), ("positive is No", ~yes)]
    fig = go.Figure()
    for name, mask in groups:
        fig.add_box(y=steer.slope[mask], name=f"{name} (n={int(mask.sum())})", boxpoints="all", jitter=0.4,
                    pointpos=0, marker_color=STEER, line_color=STEER, showlegend=False,
                    hovertemplate="slope %{y:.3g}<extra></extra>")
    fig.add_hline(y=0, line_color=ANTI, line_dash="dot")
    return _layout(fig, title, "", slope_label(metric))


def mean_interval(props: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean propensity per multiplier with a t-interval over examples: multiplier, mean, lo, hi, n."""
    from scipy import stats

    g = props.groupby("multiplier")["propensity"]
    out = g.agg(["mean", "std", "count"]).reset_index()
    sem = out["std"].fillna(0) / np.sqrt(out["count"].clip(lower=1))
    t = stats.t.ppf(0.5 + level / 2, (out["count"] - 1).clip(lower=1))
    out["lo"], out["hi"] = out["mean"] - t * sem, out["mean"] + t * sem
    return out.rename(columns={"count": "n"}).drop(columns="std")


def _curve_sample(ids: Sequence[str], anti: set[str], n: int, seed: int) -> list[str]:
    """Up to n example ids, anti-steerable ones first (up to half), so they are always visible."""
    rng = np.random.default_rng(seed)
    bad = [i for i in ids if i in anti]
    good = [i for i in ids if i not in anti]
    bad = list(rng.permutation(bad)[: max(n // 2, n - len(good))]) if bad else []
    good = list(rng.permutation(good)[: n - len(bad)]) if good else []
    return bad + good


def propensity_curves(props: pd.DataFrame, anti_ids: Iterable[str] = (), metric: str = "logit_diff",
                      n_sample: int = 40, seed: int = 0, title: str = "Propensity vs multiplier") -> go.Figure:
    """Mean with 95% interval band, plus a sample of per-example curves (anti-steerable ones in red).

    props: rows of one layer with example_id, multiplier, propensity.
    """
    anti = set(anti_ids)
    fig = go.Figure()
    ids = list(dict.fromkeys(props["example_id"]))
    curves = {eid: rows for eid, rows in props.sort_values("multiplier").groupby("example_id", sort=False)}
    sample = _curve_sample(ids, anti, n_sample, seed)
    # One trace per kind, the curves separated by gaps: a few traces draw and send far faster than forty.
    for kind, colour, members in (("steerable example", BASE, [e for e in sample if e not in anti]),
                                  ("anti-steerable example", ANTI, [e for e in sample if e in anti])):
        if not members:
            continue
        xs, ys, names = [], [], []
        for eid in members:
            rows = curves[eid]
            xs += list(rows.multiplier) + [None]
            ys += list(rows.propensity) + [None]
            names += [eid] * len(rows) + [None]
        fig.add_scatter(x=xs, y=ys, customdata=names, mode="lines", name=kind, opacity=0.45, connectgaps=False,
                        line=dict(color=colour, width=1),
                        hovertemplate="%{customdata}<br>multiplier %{x}: %{y:.3g}<extra></extra>")
    m = mean_interval(props)
    fig.add_scatter(x=list(m.multiplier) + list(m.multiplier[::-1]), y=list(m.hi) + list(m.lo[::-1]),
                    mode="lines", fill="toself", fillcolor=BAND_FILL, line=dict(width=0),
                    name="95% interval of the mean",
                    hoverinfo="skip")
    fig.add_scatter(x=m.multiplier, y=m["mean"], mode="lines+markers", name="mean over examples",
                    line=dict(color=STEER, width=3),
                    hovertemplate="multiplier %{x}: mean %{y:.3g}<extra></extra>")
    return _layout(fig, title, "multiplier", propensity_label(metric))


def distribution_at(base: Sequence[float], steered: Sequence[float], multiplier: float,
                    metric: str = "logit_diff", nbins: int = 30) -> go.Figure:
    """Overlaid histograms of the test examples' propensity at multiplier 0 and at ``multiplier``."""
    b, s = np.asarray(base, dtype=float), np.asarray(steered, dtype=float)
    both = np.concatenate([b, s])
    lo, hi = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
    size = (hi - lo) / nbins or 0.1
    fig = go.Figure()
    for values, name, colour in ((b, "multiplier 0 (unsteered)", BASE), (s, f"multiplier {multiplier:g}", STEER)):
        fig.add_histogram(x=values, name=name, marker_color=colour, opacity=0.6,
                          xbins=dict(start=lo - size / 2, end=hi + size, size=size))
        if len(values):
            _vline(fig, float(values.mean()), colour, "dash")
    fig.update_layout(barmode="overlay")
    return _layout(fig, f"Propensity at multiplier {multiplier:g} vs unsteered", propensity_label(metric), "examples")


def change_table(props: pd.DataFrame) -> pd.DataFrame:
    """Mean propensity change vs multiplier 0, per layer (rows) x multiplier (columns)."""
    mean = props.groupby(["layer", "multiplier"])["propensity"].mean().unstack("multiplier")
    if 0.0 in mean.columns:
        mean = mean.sub(mean[0.0], axis=0)
    return mean.sort_index()


def layer_heatmap(props: pd.DataFrame, metric: str = "logit_diff", selected: int | None = None) -> go.Figure:
    """Layer x multiplier heatmap of the mean propensity change vs multiplier 0 (blue up, red down)."""
    table = change_table(props)
    has_zero = 0.0 in table.columns
    z = table.to_numpy()
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{m:g}" for m in table.columns], y=table.index.to_numpy(), colorscale="RdBu", zmid=0,
        colorbar=dict(title=dict(text="change" if has_zero else "mean")),
        hovertemplate="layer %{y}, multiplier %{x}: %{z:.3g}<extra></extra>"))
    if selected is not None and selected in table.index:
        fig.add_hline(y=selected, line_color=BASE, line_dash="dot")
    what = "Mean propensity change vs multiplier 0" if has_zero else "Mean propensity"
    fig.update_yaxes(autorange=True, dtick=max(1, len(table) // 15))
    return _layout(fig, what, "multiplier", "layer", height=max(320, 18 * len(table) + 120))


def layer_summary(table: pd.DataFrame, metric: str = "logit_diff", selected: int | None = None) -> go.Figure:
    """Mean steerability and fraction anti-steerable by layer, each with its 95% interval.

    table: ``SweepResult.layer_table()``.
    """
    t = table.sort_values("layer")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Mean steerability", "Fraction anti-steerable"))
    fig.add_scatter(x=t.layer, y=t.mean_slope, mode="lines+markers", name="mean steerability",
                    line=dict(color=STEER), row=1, col=1,
                    error_y=dict(type="data", array=t.mean_slope_hi - t.mean_slope,
                                 arrayminus=t.mean_slope - t.mean_slope_lo))
    fig.add_scatter(x=t.layer, y=t.frac_anti, mode="lines+markers", name="fraction anti-steerable",
                    line=dict(color=ANTI), row=2, col=1,
                    error_y=dict(type="data", array=t.frac_anti_hi - t.frac_anti,
                                 arrayminus=t.frac_anti - t.frac_anti_lo))
    fig.add_hline(y=0, line_dash="dot", line_color=BASE, row=1, col=1)
    if selected is not None:
        fig.add_vline(x=selected, line_dash="dot", line_color=BASE)
    fig.update_yaxes(title_text=f"{propensity_unit(metric)} / unit multiplier", row=1, col=1)
    fig.update_yaxes(title_text="fraction (95% interval)", range=[0, 1], row=2, col=1)
    fig.update_xaxes(title_text="layer", row=2, col=1)
    fig.update_layout(height=520, showlegend=False, margin=dict(l=10, r=10, t=50, b=10),
                      title=dict(text="Steerability by layer"))
    return fig


def example_curve(points: pd.DataFrame, slope: float, intercept: float, metric: str = "logit_diff",
                  title: str = "This example") -> go.Figure:
    """One example's propensity at each grid multiplier and its least-squares line."""
    colour = ANTI if metrics.anti_steerable([slope])[0] else STEER
    p = points.sort_values("multiplier")
    x = np.array([p.multiplier.min(), p.multiplier.max()], dtype=float)
    fig = go.Figure()
    fig.add_scatter(x=p.multiplier, y=p.propensity, mode="markers", name="propensity",
                    marker=dict(color=colour, size=9))
    fig.add_scatter(x=x, y=intercept + slope * x, mode="lines", name=f"fit: slope {slope:.3g}",
                    line=dict(color=colour, dash="dash"))
    return _layout(fig, title, "multiplier", propensity_label(metric), height=340)


def answer_probs(curve: pd.DataFrame, title: str = "P(A) and P(B) vs multiplier") -> go.Figure:
    """Probability of the letters A and B at the answer-letter position, per multiplier."""
    c = curve.sort_values("multiplier")
    fig = go.Figure()
    fig.add_scatter(x=c.multiplier, y=c.p_A, mode="lines+markers", name="P(A)", line=dict(color="#2ca02c"))
    fig.add_scatter(x=c.multiplier, y=c.p_B, mode="lines+markers", name="P(B)", line=dict(color="#9467bd"))
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, title, "multiplier", "probability of the answer letter", height=340)


def figures_html(figures: Mapping[str, go.Figure], title: str = "Steerability report") -> str:
    """One self-contained interactive HTML page with all figures (plotly.js embedded once, works offline)."""
    parts = [f"<html><head><meta charset='utf-8'><title>{_esc(title)}</title></head><body>",
             f"<h1 style='font-family:sans-serif'>{_esc(title)}</h1>"]
    for i, (name, fig) in enumerate(figures.items()):
        parts.append(f"<h2 style='font-family:sans-serif'>{_esc(name)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>")
    return "\n".join(parts)


def _esc(text: str) -> str:
    import html

    return html.escape(str(text))
