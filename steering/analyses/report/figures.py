"""Figures of the report card (pure plotly, no Streamlit): steering against asking per item, and the
out-of-distribution medians. The diagnostics' own figures (null band, swap scatter) come from
``steering.run.diagnostics.figures``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from steering.run.figures import ANTI, STEER, _layout, propensity_unit, slope_label

ASK = {"SYS_POS": ("ask_sys", STEER, "circle"), "USER_POS": ("ask_user", "#ff7f0e", "triangle-up")}


def steering_vs_asking(df: pd.DataFrame, layer: int, multiplier: float, metric: str) -> go.Figure:
    """Per item: the shift from steering at (layer, multiplier) against the shift from asking, one trace per way
    of asking; the diagonal marks equal shifts (above it steering moves the item more)."""
    g = df[(df.layer == layer) & (df.multiplier == multiplier)]
    fig = go.Figure()
    values = [g.steer.to_numpy()]
    for variant, (col, colour, symbol) in ASK.items():
        if col not in g:
            continue
        wins = int((g.steer > g[col]).sum())
        values.append(g[col].to_numpy())
        fig.add_scatter(x=g[col], y=g.steer, mode="markers", name=f"asking: {variant} (steering larger on "
                        f"{wins}/{len(g)})", marker=dict(color=colour, symbol=symbol, size=8, opacity=0.75),
                        text=g.example_id, hovertemplate="%{text}<br>asking %{x:.3g}<br>steering %{y:.3g}")
    both = np.concatenate(values) if values else np.zeros(1)
    both = both[np.isfinite(both)]
    lo, hi = (float(both.min()), float(both.max())) if len(both) else (-1.0, 1.0)
    pad = (hi - lo) * 0.05 or 1.0
    lo, hi = min(lo, 0.0) - pad, max(hi, 0.0) + pad
    fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="equal shifts", line=dict(color="#8c8c8c", dash="dash"))
    fig.add_hline(y=0, line_color=ANTI, line_dash="dot", line_width=1)
    fig.add_vline(x=0, line_color=ANTI, line_dash="dot", line_width=1)
    unit = propensity_unit(metric)
    return _layout(fig, f"Per item: steering (layer {layer}, x{multiplier:g}) against asking",
                   f"shift from asking, unsteered ({unit})", f"shift from steering ({unit})", height=440)


def ood_medians(medians: dict[str, float], metric: str) -> go.Figure:
    """Median slope on the card's own test prompts and under each out-of-distribution prompt variant."""
    names = list(medians)
    values = [medians[n] for n in names]
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=[STEER if v > 0 else ANTI for v in values],
                           text=[f"{v:+.3g}" for v in values], textposition="outside"))
    fig.add_hline(y=0, line_color="#8c8c8c")
    return _layout(fig, "Median steerability in and out of distribution", "test prompts", slope_label(metric),
                   height=360)


def card_figures(parts, card) -> dict[str, go.Figure]:
    """Every figure the card's stored parts allow, titled: the HTML report and the page show these."""
    from steering.run.diagnostics import figures as diag_figures
    from steering.run.diagnostics.compute import load_frames

    out: dict[str, go.Figure] = {}
    metric = card.metric
    if parts.prompting is not None:
        st = card.setting
        out["Steering against asking"] = steering_vs_asking(parts.prompting, st["layer"], st["multiplier"], metric)
    if parts.run is not None:
        steer = parts.run.steerability
        steer = steer[steer.layer == card.layer]
        null = load_frames(parts.run.run_dir).get("null.parquet")
        if null is not None:
            out["Null baselines"] = diag_figures.null_histogram(steer.slope.to_numpy(), null[null.layer == card.layer],
                                                                metric, card.layer)
        if "slope_swapped" in steer:
            out["A/B swap"] = diag_figures.swap_scatter(steer, metric, card.layer)
    gen = card.row("generalises").numbers
    if "id_median" in gen:
        medians = {f"{card.settings['test_variant']} (ID)": gen["id_median"]}
        medians.update({k[len("median_"):]: v for k, v in gen.items() if k.startswith("median_")})
        out["Out of distribution"] = ood_medians(medians, metric)
    return out
