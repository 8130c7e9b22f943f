"""Plotly figures of a study (pure functions of its tables; the pages, CLI and tests share them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from steering.analyses.study.stats import spearman
from steering.run.figures import ANTI, BASE, STEER, slope_label

SHARES = (
    ("share_ab", "A/B letter", "#ff7f0e"),
    ("share_yes", "Yes/No", "#9467bd"),
    ("share_unexplained", "unexplained", "#c7c7c7"),
)


def concept_order(rows: pd.DataFrame) -> list[str]:
    """Datasets by median steerability, the most steerable on top."""
    return list(rows.sort_values("median_slope").dataset)


def concept_distributions(
    examples: pd.DataFrame, rows: pd.DataFrame, metric: str = "logit_diff", kind: str = "violin"
) -> go.Figure:
    """Per concept: its per-example slopes (violin or box), sorted by median, beside its anti-steerable
    fraction with its Wilson 95% interval (the paper's Figure 1). One model, one variant pair."""
    order = concept_order(rows)
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        column_widths=[0.72, 0.28],
        horizontal_spacing=0.02,
        subplot_titles=("Per-example steerability", "Anti-steerable (95% CI)"),
    )
    for name in order:
        s = examples[examples.dataset == name].slope
        trace = (
            go.Violin(
                x=s,
                name=name,
                orientation="h",
                side="both",
                points="all",
                pointpos=0,
                jitter=0.3,
                marker=dict(size=3),
                line_color=STEER,
                showlegend=False,
                meanline_visible=False,
                box_visible=True,
                spanmode="hard",
            )
            if kind == "violin"
            else go.Box(
                x=s,
                name=name,
                orientation="h",
                boxpoints="all",
                jitter=0.3,
                marker=dict(size=3),
                line_color=STEER,
                showlegend=False,
            )
        )
        fig.add_trace(trace, row=1, col=1)
    r = rows.set_index("dataset").loc[order]
    fig.add_trace(
        go.Scatter(
            x=r.frac_anti,
            y=order,
            mode="markers",
            marker=dict(color=ANTI, size=9),
            error_x=dict(
                type="data",
                symmetric=False,
                array=r.frac_anti_hi - r.frac_anti,
                arrayminus=r.frac_anti - r.frac_anti_lo,
                color=ANTI,
            ),
            showlegend=False,
            hovertemplate="%{y}: %{x:.0%} anti-steerable<extra></extra>",
        ),
        row=1,
        col=2,
    )
    fig.add_vline(x=0, line_dash="dash", line_color=BASE, row=1, col=1)
    fig.update_xaxes(title_text=slope_label(metric), row=1, col=1)
    fig.update_xaxes(title_text="fraction anti-steerable", range=[0, 1], tickformat=".0%", row=1, col=2)
    fig.update_layout(height=max(380, 34 * len(order) + 120), margin=dict(l=10, r=10, t=40, b=40))
    return fig


def spurious_bars(rows: pd.DataFrame) -> go.Figure:
    """Per concept, the variance of its slopes split into A/B letter, Yes/No and unexplained (stacked)."""
    order = concept_order(rows)
    r = rows.set_index("dataset").loc[order]
    fig = go.Figure(
        [
            go.Bar(
                y=order,
                x=r[col],
                name=label,
                orientation="h",
                marker_color=color,
                hovertemplate="%{y}: %{x:.0%}<extra>" + label + "</extra>",
            )
            for col, label, color in SHARES
        ]
    )
    for name, why in r.share_why.items() if "share_why" in r else ():
        if why and not np.isfinite(r.share_unexplained[name]):  # nothing drawn: say why instead of an empty row
            fig.add_annotation(x=0.01, y=name, text=f"undefined ({why})", showarrow=False, xanchor="left",
                               font=dict(size=11, color="#555"))
    fig.update_layout(
        barmode="stack",
        height=max(320, 30 * len(order) + 110),
        xaxis=dict(range=[0, 1], tickformat=".0%", title="share of the variance of per-example slopes"),
        title="What explains the spread of steerability",
        margin=dict(l=10, r=10, t=50, b=40),
        legend=dict(orientation="h", y=1.02, x=0, yanchor="bottom"),
    )
    return fig


def variant_heatmap(rows: pd.DataFrame, value: str = "median_slope", metric: str = "logit_diff") -> go.Figure:
    """Train variant x test variant for one concept: median steerability or anti-steerable fraction."""
    wide = rows.pivot_table(index="train_variant", columns="test_variant", values=value)
    percent = value == "frac_anti"
    text = [[("" if np.isnan(v) else (f"{v:.0%}" if percent else f"{v:.2f}")) for v in row] for row in wide.to_numpy()]
    fig = go.Figure(
        go.Heatmap(
            z=wide.to_numpy(),
            x=list(wide.columns),
            y=list(wide.index),
            text=text,
            texttemplate="%{text}",
            colorscale="Reds" if percent else "RdBu",
            zmid=None if percent else 0,
            zmin=0 if percent else None,
            zmax=1 if percent else None,
            colorbar=dict(title="anti-steerable" if percent else "median slope"),
        )
    )
    fig.update_layout(
        title="Anti-steerable fraction" if percent else f"Median {slope_label(metric)}",
        xaxis_title="test variant",
        yaxis_title="train variant",
        height=360,
        margin=dict(l=10, r=10, t=50, b=40),
    )
    return fig


def _labelled_scatter(x: pd.Series, y: pd.Series, labels: list[str], title: str, xt: str, yt: str) -> go.Figure:
    lo = float(np.nanmin([x.min(), y.min(), 0])) if len(x) else 0.0
    hi = float(np.nanmax([x.max(), y.max(), 0])) if len(x) else 1.0
    fig = go.Figure(
        [
            go.Scatter(
                x=[lo, hi], y=[lo, hi], mode="lines", line=dict(dash="dot", color=BASE), name="y = x", hoverinfo="skip"
            ),
            go.Scatter(
                x=x,
                y=y,
                mode="markers+text",
                text=labels,
                textposition="top center",
                textfont=dict(size=10),
                marker=dict(color=STEER, size=9),
                name="concept",
                hovertemplate="%{text}<br>%{x:.3f} → %{y:.3f}<extra></extra>",
            ),
        ]
    )
    fig.update_layout(
        title=title, xaxis_title=xt, yaxis_title=yt, height=460, showlegend=False, margin=dict(l=10, r=10, t=50, b=40)
    )
    return fig


def id_ood_scatter(rows: pd.DataFrame, test_variant: str, metric: str = "logit_diff") -> go.Figure:
    """Dataset-level steerability (median slope): ID (BASE->BASE) against OOD (BASE->test_variant)."""
    ident = rows[(rows.train_variant == "BASE") & (rows.test_variant == "BASE")].set_index("dataset").median_slope
    ood = rows[(rows.train_variant == "BASE") & (rows.test_variant == test_variant)].set_index("dataset").median_slope
    both = pd.concat([ident.rename("id"), ood.rename("ood")], axis=1, join="inner")
    rho = spearman(both.id, both.ood)
    return _labelled_scatter(
        both.id,
        both.ood,
        list(both.index),
        f"ID vs OOD (BASE→{test_variant}): Spearman ρ = {rho:.2f} over {len(both)} concepts",
        "median steerability, BASE→BASE",
        f"median steerability, BASE→{test_variant}",
    )


def example_id_ood(examples: pd.DataFrame, test_variant: str, metric: str = "logit_diff") -> go.Figure:
    """Per example of one concept: its ID slope against its OOD slope; red: steerable ID, not OOD."""
    wide = paired_examples(examples, test_variant)
    lost = (wide.id > 0) & (wide.ood <= 0)
    fig = _labelled_scatter(wide.id, wide.ood, [""] * len(wide), "", "slope, BASE→BASE", f"slope, BASE→{test_variant}")
    fig.data[1].update(
        mode="markers",
        text=wide.index,
        customdata=wide.index,
        marker=dict(color=np.where(lost, ANTI, STEER), size=8),
        hovertemplate="%{text}<br>ID %{x:.3f} → OOD %{y:.3f}<extra></extra>",
    )
    fig.add_hline(y=0, line_color=BASE, line_width=1)
    fig.add_vline(x=0, line_color=BASE, line_width=1)
    fig.update_layout(
        title=f"Per example: {int(lost.sum())} of {len(wide)} steerable in distribution lose it "
        f"under {test_variant} (red)"
    )
    return fig


def paired_examples(examples: pd.DataFrame, test_variant: str) -> pd.DataFrame:
    """Slopes of one concept's examples, ID and OOD side by side (index: example_id)."""
    base = examples[examples.train_variant == "BASE"]
    ident = base[base.test_variant == "BASE"].set_index("example_id").slope.rename("id")
    ood = base[base.test_variant == test_variant].set_index("example_id").slope.rename("ood")
    return pd.concat([ident, ood], axis=1, join="inner")


def model_scatter(rows: pd.DataFrame, model_a: str, model_b: str, pair: tuple[str, str]) -> go.Figure:
    """Dataset-level steerability of one model against another for one variant pair."""
    r = rows[(rows.train_variant == pair[0]) & (rows.test_variant == pair[1])]
    wide = r.pivot_table(index="dataset", columns="model", values="median_slope")[[model_a, model_b]].dropna()
    rho = spearman(wide[model_a], wide[model_b])
    return _labelled_scatter(
        wide[model_a],
        wide[model_b],
        list(wide.index),
        f"{pair[0]}→{pair[1]}: Spearman ρ = {rho:.2f} over {len(wide)} concepts",
        f"median steerability, {model_a}",
        f"median steerability, {model_b}",
    )
