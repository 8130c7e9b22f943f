"""Steerability: the distribution of per-example slopes, the curves, and a live multiplier slider."""

import numpy as np
import streamlit as st

from steering.run import figures
from ui import page, runs, state, views

FIGURES = state.SessionMemo("steerability_figures", 4)  # (run, layer, metric) -> the page's fixed figures

SOURCES = {"stored": "From the stored sweep grid.",
           "computed": "Computed live from the cached prompt states.",
           "interpolated": "Interpolated from the stored sweep grid: refining…"}


@st.fragment  # a slider step reruns only this part: the page's other figures are not rebuilt or resent
def multiplier_view(ctx: state.Context, result) -> None:
    st.subheader("Propensity at a chosen multiplier")
    lo, hi, step = runs.SLIDER
    m = round(float(state.bound(st.slider, "Multiplier", "slider_multiplier", min_value=lo, max_value=hi, step=step,
                                help="A value off the sweep grid shows at once, interpolated from the grid, then "
                                     "is computed from the cached prompt states (with its neighbours, so the "
                                     "next step is exact at once).")), 2)
    box = st.empty()
    base = runs.propensities_at(ctx, result, ctx.layer, 0.0)[0]
    steered, source = runs.propensities_at(ctx, result, ctx.layer, m)
    distribution(ctx, box, m, base, steered, source)
    if source == "interpolated" and runs.refine(ctx, result, ctx.layer, [m]):  # after the estimate has drawn
        steered, source = runs.propensities_at(ctx, result, ctx.layer, m)
        distribution(ctx, box, m, base, steered, source)
    runs.prefetch(ctx, result, ctx.layer, runs.neighbours(m))  # in the background: the next step is exact at once


def distribution(ctx: state.Context, box, m: float, base, steered, source: str) -> None:
    unit = figures.propensity_unit(ctx.metric)
    with box.container():
        c = st.columns(3)
        c[0].metric(f"Mean propensity at {m:g}", f"{np.mean(steered):.3g}", help=unit)
        c[1].metric("Mean change vs multiplier 0", f"{np.mean(steered - base):+.3g}", help=unit)
        c[2].metric("Items moved toward the behaviour", f"{np.mean(steered > base):.0%}",
                    help="Share of test items whose propensity is higher than unsteered.")
        views.chart(figures.distribution_at(base, steered, m, ctx.metric), key=f"distribution_{source}")
        st.caption(SOURCES[source])


def spurious_view(ctx: state.Context, result, steer) -> None:
    st.subheader("Spurious factors")
    f = result.figures(ctx.layer)
    why = f.undefined
    parts = [f"answer letter explains **{f.r2_pos_is_A:.0%}**" if f.r2_pos_is_A is not None
             else f"the answer letter's share is undefined ({why['r2_pos_is_A']})" if "r2_pos_is_A" in why else None,
             f"Yes/No explains **{f.r2_pos_is_yes:.0%}**" if f.r2_pos_is_yes is not None
             else f"the Yes/No share is undefined ({why['r2_pos_is_yes']})" if "r2_pos_is_yes" in why else None]
    shown = [p for p in parts if p]
    st.markdown("Of the variance of the slopes, " + (" and ".join(shown) if shown else "no factor varies here")
                + " (R² of an OLS fit on the factor).")
    views.chart(fixed_figures(ctx, result, steer)["factors"], key="factors")


def fixed_figures(ctx: state.Context, result, steer) -> dict:
    """The figures that depend only on the run, layer and metric: built once, not on every visit."""
    def build() -> dict:
        props = runs.layer_rows(result, ctx.layer, "propensities")
        anti = steer[steer.anti_steerable].example_id
        return {"slopes": figures.slope_histogram(steer.slope, ctx.metric),
                "curves": figures.propensity_curves(props, anti, ctx.metric),
                "factors": figures.slopes_by_factor(steer, ctx.metric)}

    return FIGURES.get_or_compute((result.manifest["key"], ctx.layer, ctx.metric), build)


def body(ctx: state.Context) -> None:
    result = views.result_or_compute(ctx)
    if result is None:
        return
    st.caption(views.settings_line(ctx))
    views.headline(ctx, result)
    steer = runs.layer_rows(result, ctx.layer)
    figs = fixed_figures(ctx, result, steer)
    left, right = st.columns(2)
    with left:
        views.chart(figs["slopes"], key="slopes")
    with right:
        views.chart(figs["curves"], key="curves")
    multiplier_view(ctx, result)
    spurious_view(ctx, result, steer)
    views.provenance(result)


page.run("Steerability", body)
