"""Inspect examples: find the anti-steerable inputs and see where and how the vector acts on one."""

import streamlit as st

from steering.run import figures
from ui import diagnostics, examples, page, runs, state, views


def detail(ctx: state.Context, result, example_id: str) -> None:
    row = examples.row_of(result, ctx.layer, example_id)
    verdict = ":red[anti-steerable]" if row.anti_steerable else ":blue[steerable]"
    st.subheader(f"{example_id}: slope {row.slope:.3g} ({verdict})")
    st.caption(f"Positive (behaviour-matching) answer {row.positive.strip()}, negative {row.negative.strip()}.")
    diagnostics.example_panel(ctx, example_id)
    st.markdown(views.tokens_html(examples.tokens(ctx, row)), unsafe_allow_html=True)
    left, right = st.columns(2)
    with left:
        views.chart(figures.example_curve(examples.points_of(result, ctx.layer, example_id), row.slope,
                                          row.intercept, ctx.metric, title="Propensity of this example"),
                    key="example_curve")
    with st.spinner("Computing P(A) and P(B) at each multiplier…"):
        curve = examples.curve(ctx, result, row)
    with right:
        views.chart(figures.answer_probs(curve), key="answer_probs")
    st.dataframe(curve, hide_index=True, key="curve_table")
    st.markdown("**Generation from this prompt**")
    c = st.columns([3, 1, 1])
    m = state.bound(c[0].slider, "Steering multiplier", "inspect_multiplier", min_value=-10.0, max_value=10.0, step=0.5)
    n = state.bound(c[1].number_input, "Max new tokens", "inspect_tokens", min_value=1, max_value=200, step=1)
    if c[2].button("Generate", key="inspect_generate"):
        views.generations(ctx.lm, row.prompt, ctx.layer, result.vectors[ctx.layer], m, "s_inspect_gen",
                          max_new_tokens=int(n), mode=ctx.settings.position)
    else:
        views.last_generations("s_inspect_gen", row.prompt)


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
    detail(ctx, result, state.get("example"))


page.run("Inspect examples", body)
