"""Diagnostics: is this vector better than chance, letter-driven, stable, and which items will it steer?"""

import streamlit as st

from ui import diagnostics, diagnostics_view, page, state, views


def body(ctx: state.Context) -> None:
    st.caption(views.settings_line(ctx))
    result = diagnostics.stored(ctx)
    if result is None:
        st.info("Four checks on the sidebar's vector: **null baselines** (8 random directions at its norm and 8 "
                "label-shuffled vectors, on the same items), the **A/B swap** (each item again with its two "
                "options exchanged between the letters), **split-half stability** (vectors from two halves of the "
                "training split) and **per-example predictors** (each item's own activation difference).")
        if diagnostics.button(ctx, "diag_compute"):
            st.rerun()
        return
    layer = ctx.layer
    steer = result.steerability[result.steerability.layer == layer]
    summary = diagnostics.layer_summary(result, layer)
    tables = diagnostics.frames(result)
    line = diagnostics.reading(summary)
    if line:
        st.markdown(f"**Reading.** {line}")

    diagnostics_view.null_section(steer, summary, tables, ctx.metric, layer)
    diagnostics_view.swap_section(steer, summary, ctx.metric, layer)
    diagnostics_view.predictors_section(steer, summary, ctx.metric)
    diagnostics_view.split_section(tables, layer)
    views.provenance(result)


page.run("Diagnostics", body)
