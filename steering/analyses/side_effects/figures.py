"""Plotly figures for side effects (pure functions): KL / perplexity heatmaps, capability vs multiplier,
the gain-cost trade-off with its Pareto frontier and the recommended point, and the entanglement matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from steering.analyses.side_effects.tradeoff import pareto
from steering.run.figures import ANTI, BASE, STEER, _layout, propensity_unit


def cell_heatmap(df: pd.DataFrame, column: str, title: str, unit: str, selected: int | None = None) -> go.Figure:
    """``column`` over layer (rows) x multiplier (columns)."""
    m = df.pivot(index="layer", columns="multiplier", values=column).sort_index()
    fig = go.Figure(go.Heatmap(z=m.to_numpy(), x=[f"{c:g}" for c in m.columns], y=m.index.to_numpy(),
                               colorscale="Viridis", colorbar=dict(title=unit),
                               hovertemplate="layer %{y}, multiplier %{x}: %{z:.4g}<extra></extra>"))
    if selected is not None and selected in m.index:
        fig.add_hline(y=selected, line=dict(color="white", width=1, dash="dot"))
    _layout(fig, title, "multiplier", "layer", height=420)
    fig.update_xaxes(type="category")
    fig.update_yaxes(dtick=1 if len(m) <= 12 else 2)  # whole layers only
    return fig


def capability(df: pd.DataFrame, layer: int) -> go.Figure:
    """MC accuracy and mean P(correct) against multiplier at one layer, multiplier 0 marked."""
    d = df[df.layer == layer].sort_values("multiplier")
    fig = go.Figure()
    fig.add_scatter(x=d.multiplier, y=d.mc_accuracy, mode="lines+markers", name="accuracy", line=dict(color=STEER))
    fig.add_scatter(x=d.multiplier, y=d.mc_prob, mode="lines+markers", name="mean P(correct)",
                    line=dict(color=BASE, dash="dash"))
    zero = d[d.multiplier == 0]
    if len(zero):
        fig.add_hline(y=float(zero.mc_accuracy.iloc[0]), line=dict(color=BASE, width=1, dash="dot"),
                      annotation_text="unsteered accuracy", annotation_position="top left")  # chance: right
    fig.add_hline(y=0.5, line=dict(color=ANTI, width=1, dash="dot"), annotation_text="chance",
                  annotation_position="bottom right")
    _layout(fig, f"Capability on the multiple-choice set, layer {layer}", "multiplier", "fraction")
    fig.update_yaxes(range=[0, 1.02])
    return fig


def tradeoff(df: pd.DataFrame, rec: dict | None, cost: str = "kl", gain: str = "val_gain",
             metric: str = "logit_diff", budget: float | None = None) -> go.Figure:
    """Behaviour gain vs cost for every cell with a positive multiplier, the frontier and the recommendation."""
    d = df[df.multiplier > 0].reset_index(drop=True)
    front = d[pareto(d[gain].to_numpy(), d[cost].to_numpy())].sort_values(cost)
    fig = go.Figure()
    fig.add_scatter(x=d[cost], y=d[gain], mode="markers", name="layer × multiplier",
                    marker=dict(color=d.layer, colorscale="Viridis", size=8, colorbar=dict(title="layer")),
                    customdata=np.stack([d.layer, d.multiplier], 1),
                    hovertemplate="layer %{customdata[0]}, multiplier %{customdata[1]}<br>"
                                  "cost %{x:.4g}, gain %{y:.4g}<extra></extra>")
    fig.add_scatter(x=front[cost], y=front[gain], mode="lines", name="Pareto frontier",
                    line=dict(color=ANTI, width=2, shape="hv"))
    if budget is not None and cost == "kl":
        fig.add_vline(x=budget, line=dict(color=BASE, dash="dash"), annotation_text="KL budget")
    if rec and rec.get("found"):
        hit = d[(d.layer == rec["layer"]) & np.isclose(d.multiplier, rec["multiplier"])]
        if len(hit):
            fig.add_scatter(x=hit[cost], y=hit[gain], mode="markers", name="recommended",
                            marker=dict(symbol="star", size=18, color="gold", line=dict(color="black", width=1)))
    label = {"kl": "KL(unsteered ‖ steered), nats per token", "ppl_ratio": "perplexity ratio (steered / unsteered)",
             "mc_drop": "capability drop (accuracy at 0 − accuracy)"}.get(cost, cost)
    which = "validation" if gain.startswith("val") else "test"
    _layout(fig, "Trade-off: behaviour gain against side effects", label,
            f"mean propensity shift on {which} items ({propensity_unit(metric)})", height=460)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0.0),
                      margin=dict(b=60))
    return fig


def entanglement(matrix: pd.DataFrame, layer: int, multiplier: float, normalised: bool = True) -> go.Figure:
    """Rows: the concept whose vector steers; columns: the concept measured (normalised by its own shift, or raw)."""
    z = matrix.to_numpy(dtype=float)
    lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    if normalised:  # a tiny own shift makes its column's ratios huge: keep the colours for the range that reads
        lim = min(lim, 2.0)
    text = [[f"{v:.2f}" if np.isfinite(v) else "–" for v in row] for row in z]
    title = "shift / own shift" if normalised else "mean shift"
    fig = go.Figure(go.Heatmap(z=z, x=list(matrix.columns), y=list(matrix.index), zmid=0, zmin=-lim, zmax=lim,
                               colorscale="RdBu", text=text, texttemplate="%{text}", colorbar=dict(title=title),
                               hovertemplate="steered with %{y}<br>measured on %{x}<br>%{z:.3g}<extra></extra>"))
    _layout(fig, f"Entanglement at layer {layer}, multiplier {multiplier:g}", "measured on (Y)", "steered with (X)",
            height=120 + 60 * len(matrix))
    fig.update_yaxes(autorange="reversed")
    return fig
