"""Plotly figures of the diagnostics (pure functions, no Streamlit): null band, swap scatter, predictors, split-half."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from steering.run.diagnostics import stats as diag_stats
from steering.run.figures import ANTI, BASE, STEER, _layout, slope_label, zero_aligned_bins

NULL_COLOURS = {"random": "#8c8c8c", "shuffled": "#ff7f0e"}


def null_histogram(slopes: np.ndarray, null: pd.DataFrame, metric: str, layer: int) -> go.Figure:
    """Real slopes over the null slopes (all items x K vectors), with each null kind's central 95% shaded."""
    fig = go.Figure()
    pooled = np.concatenate([np.asarray(slopes, dtype=float), null.slope.to_numpy()])
    edges = zero_aligned_bins(pooled, 40)
    xbins = dict(start=float(edges[0]), end=float(edges[-1]), size=float(edges[1] - edges[0]))
    for kind, colour in NULL_COLOURS.items():
        ns = null[null.kind == kind].slope.to_numpy()
        if not len(ns):
            continue
        lo, hi = np.quantile(ns, [0.025, 0.975])
        fig.add_vrect(x0=lo, x1=hi, fillcolor=colour, opacity=0.12, line_width=0)
        fig.add_trace(go.Histogram(x=ns, xbins=xbins, name=f"{kind} null (95% band shaded)", marker_color=colour,
                                   opacity=0.45, histnorm="probability"))
    fig.add_trace(go.Histogram(x=slopes, xbins=xbins, name="real vector", marker_color=STEER, opacity=0.8,
                               histnorm="probability"))
    fig.update_layout(barmode="overlay")
    fig.add_vline(x=0, line_color=ANTI, line_dash="dot")
    return _layout(fig, f"Layer {layer}: per-example slopes against the null vectors' slopes", slope_label(metric),
                   "share of items")


def swap_scatter(steer: pd.DataFrame, metric: str, layer: int) -> go.Figure:
    """Slope as given vs slope with the options swapped; the letter-driven quadrants (sign flips) shaded."""
    x, y = steer.slope.to_numpy(), steer.slope_swapped.to_numpy()
    lim = float(np.nanmax(np.abs(np.concatenate([x, y, [1e-6]])))) * 1.1
    fig = go.Figure()
    for x0, x1, y0, y1 in ((-lim, 0, 0, lim), (0, lim, -lim, 0)):
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, fillcolor=ANTI, opacity=0.08, line_width=0)
    driven = diag_stats.letter_driven(x, y)
    for mask, name, colour in ((driven, "letter-driven", ANTI), (~driven, "same sign", STEER)):
        fig.add_trace(go.Scatter(x=x[mask], y=y[mask], mode="markers", name=f"{name} ({int(mask.sum())})",
                                 marker=dict(color=colour, size=8, opacity=0.75),
                                 text=steer.example_id.to_numpy()[mask],
                                 hovertemplate="%{text}<br>slope %{x:.3g}<br>swapped %{y:.3g}<extra></extra>"))
    counts = {(sx, sy): int(((np.sign(x) == sx) & (np.sign(y) == sy)).sum()) for sx in (-1, 1) for sy in (-1, 1)}
    for (sx, sy), c in counts.items():
        fig.add_annotation(x=sx * lim * 0.8, y=sy * lim * 0.9, text=f"{c} items", showarrow=False)
    fig.add_hline(y=0, line_color=BASE, line_width=1)
    fig.add_vline(x=0, line_color=BASE, line_width=1)
    fig.update_xaxes(range=[-lim, lim])
    fig.update_yaxes(range=[-lim, lim])
    return _layout(fig, f"Layer {layer}: A/B swap (shaded: the swap flips the sign)", "slope as given",
                   f"slope with options swapped ({slope_label(metric).split('(', 1)[1].rstrip(')')})", height=420)


PREDICTORS = {"own_cos": "cosine of its own difference with the vector",
              "own_proj": "projection of its own difference on the vector",
              "baseline": "baseline propensity (multiplier 0)"}


def predictor_scatter(steer: pd.DataFrame, column: str, metric: str) -> go.Figure:
    x, y = steer[column].to_numpy(dtype=float), steer.slope.to_numpy()
    rho = diag_stats.spearman_rho(x, y)
    colour = np.where(y > 0, STEER, ANTI)
    fig = go.Figure(go.Scatter(x=x, y=y, mode="markers", marker=dict(color=colour, size=7, opacity=0.75),
                               text=steer.example_id, showlegend=False,
                               hovertemplate="%{text}<br>%{x:.3g}<br>slope %{y:.3g}<extra></extra>"))
    fig.add_hline(y=0, line_color=BASE, line_width=1)
    return _layout(fig, f"Spearman rho = {rho:+.2f}", PREDICTORS.get(column, column), slope_label(metric), height=330)


def split_half_figure(table: pd.DataFrame, current: int | None = None) -> go.Figure:
    """Per layer: cosine of the two half-vectors and Spearman rho of the slopes they give."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=table.layer, y=table.cosine, mode="lines+markers", name="cosine of half-vectors",
                             line=dict(color=STEER)))
    fig.add_trace(go.Scatter(x=table.layer, y=table.spearman, mode="lines+markers",
                             name="Spearman rho of per-example slopes", line=dict(color="#ff7f0e")))
    if current is not None:
        fig.add_vline(x=current, line_color=BASE, line_dash="dot")
    fig.update_yaxes(range=[-1.05, 1.05])
    return _layout(fig, "Split-half stability (vectors from two disjoint halves of the training split)",
                   "layer", "agreement")
