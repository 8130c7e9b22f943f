"""Inspect examples: find the anti-steerable inputs and see where and how the vector acts on one."""

import streamlit as st

from ui import examples, page, runs, state, views


def body(ctx: state.Context) -> None:
    result = views.result_or_compute(ctx)
    if result is None:
        return
    st.caption(views.settings_line(ctx))
    steer = runs.layer_rows(result, ctx.layer)
    c = st.columns([1, 2, 1])
    only_anti = state.bound(c[0].checkbox, "Anti-steerable only", "only_anti")
    sort_by = state.bound(c[1].selectbox, "Sort by", "sort_by", options=list(examples.SORTS),
                          format_func=examples.SORTS.get)
    descending = state.bound(c[2].checkbox, "Reverse order", "sort_desc")
    table = examples.table(steer, only_anti, sort_by, descending)
    st.caption(f"{len(table)} of {len(steer)} test items · click a row to inspect it")
    event = st.dataframe(table, key="w_table", on_select="rerun", selection_mode="single-row",
                 hide_index=True, height=260,
                 column_config={"slope": st.column_config.NumberColumn(format="%.3f"),
                                "rmse": st.column_config.NumberColumn(format="%.3f"),
                                "spearman": st.column_config.NumberColumn(format="%.2f"),
                                "baseline": st.column_config.NumberColumn(format="%.3f")})
    ids = list(table.example_id)
    examples.apply_click(event.selection.rows, ids)
    current = examples.selected(ids)
    if current is None:
        st.info("No test item matches the filter.")
        return
    state.bound(st.selectbox, "Example", "example", options=ids)
    examples.detail(ctx, result, state.get("example"))


page.run("Inspect examples", body)
