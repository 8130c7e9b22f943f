"""Layer sweep: which layer and multiplier steer this concept, and how reliably."""

import streamlit as st

from steering.run import figures
from steering.run.diagnostics import figures as diag_figures
from ui import diagnostics, page, runs, state, views


def _pick_layer(layers: list[int]) -> None:
    if st.session_state["w_pick_layer"] in layers:  # a forged message may send anything else: ignored
        state.put("layer", int(st.session_state["w_pick_layer"]))  # the sidebar layer follows


def split_half(ctx: state.Context) -> None:
    """Per-layer split-half stability (a split-half-only diagnostics run over every layer)."""
    layers = list(range(ctx.lm.n_layers))
    result = diagnostics.stored(ctx, layers, only_split=True)
    if result is None:
        if st.button("Compute split-half stability for every layer", key="split_all"):
            diagnostics.compute(ctx, layers, only_split=True)
            st.rerun()
        return
    views.chart(diag_figures.split_half_figure(diagnostics.frames(result)["split_half.parquet"], ctx.layer),
                key="split_half")


def body(ctx: state.Context) -> None:
    result = runs.stored(ctx, "all")
    if result is None:
        st.info(f"Sweeps every one of the {ctx.lm.n_layers} layers of {ctx.lm.name} with the sidebar settings: "
                "one pass per prompt trains all vectors; each layer then costs only the answer tokens.")
        if st.button(f"Sweep all {ctx.lm.n_layers} layers", type="primary", key="sweep_all"):
            runs.compute(ctx, "all")
            st.rerun()  # redraw from the stored result, without the button
        return
    table = result.layer_table()
    best = table.loc[table.mean_slope.idxmax()]
    safest = table.loc[table.frac_anti.idxmin()]
    st.markdown(f"Largest mean steerability at **layer {int(best.layer)}** ({best.mean_slope:.3g}); "
                f"fewest anti-steerable items at **layer {int(safest.layer)}** ({safest.frac_anti:.0%}).")
    st.session_state["w_pick_layer"] = ctx.layer
    layers = [int(layer) for layer in table.layer]
    st.selectbox("Layer (sets the sidebar layer for every page)", options=layers,
                 key="w_pick_layer", on_change=_pick_layer, args=(layers,),
                 format_func=lambda l: f"layer {l}: mean slope {table.set_index('layer').mean_slope[l]:.3g}, "
                                       f"{table.set_index('layer').frac_anti[l]:.0%} anti-steerable")
    left, right = st.columns(2)
    with left:
        views.chart(figures.layer_heatmap(result.propensities, ctx.metric, ctx.layer), key="heatmap")
    with right:
        views.chart(figures.layer_summary(table, ctx.metric, ctx.layer), key="by_layer")
    st.dataframe(table, hide_index=True, key="layer_table")
    split_half(ctx)
    views.provenance(result)


page.run("Layer sweep", body)
