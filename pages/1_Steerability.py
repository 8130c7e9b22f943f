"""Steerability: the distribution of per-example slopes, the curves, and a live multiplier slider."""

import numpy as np
import streamlit as st

from steering.run import figures
from ui import page, runs, state, views


def multiplier_view(ctx: state.Context, result) -> None:
    st.subheader("Propensity at a chosen multiplier")
    m = round(float(state.bound(st.slider, "Multiplier", "slider_multiplier", min_value=-3.0, max_value=3.0, step=0.1,
                                help="Values off the sweep grid are computed live from cached prompt states.")), 2)
    with st.spinner(f"Evaluating the test items at multiplier {m:g}…"):
        steered, live = runs.propensities_at(ctx, result, ctx.layer, m)
        base, _ = runs.propensities_at(ctx, result, ctx.layer, 0.0)
    unit = figures.propensity_unit(ctx.metric)
    c = st.columns(3)
    c[0].metric(f"Mean propensity at {m:g}", f"{np.mean(steered):.3g}", help=unit)
    c[1].metric("Mean change vs multiplier 0", f"{np.mean(steered - base):+.3g}", help=unit)
    c[2].metric("Items moved toward the behaviour", f"{np.mean(steered > base):.0%}",
                help="Share of test items whose propensity is higher than unsteered.")
    views.chart(figures.distribution_at(base, steered, m, ctx.metric), key="distribution")
    st.caption("Computed live from the cached prompt states." if live else "From the stored sweep grid.")


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
    views.chart(figures.slopes_by_factor(steer, ctx.metric), key="factors")


def body(ctx: state.Context) -> None:
    result = views.result_or_compute(ctx)
    if result is None:
        return
    st.caption(views.settings_line(ctx))
    views.headline(ctx, result)
    steer = runs.layer_rows(result, ctx.layer)
    props = runs.layer_rows(result, ctx.layer, "propensities")
    left, right = st.columns(2)
    with left:
        views.chart(figures.slope_histogram(steer.slope, ctx.metric), key="slopes")
    with right:
        anti = steer[steer.anti_steerable].example_id
        views.chart(figures.propensity_curves(props, anti, ctx.metric), key="curves")
    multiplier_view(ctx, result)
    spurious_view(ctx, result, steer)
    views.provenance(result)


page.run("Steerability", body)
