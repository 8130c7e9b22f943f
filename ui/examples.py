"""The Inspect page's table, its selection, and the per-example detail: its figures and numbers (memoised
per session), its diagnostics and generations."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from steering.core.results import SweepResult
from steering.run import figures
from steering.run.inspect import example_curve, token_view
from ui import diagnostics, ladder, state, views
from ui.compute import run

COLUMNS = ["example_id", "slope", "rmse", "spearman", "baseline", "pos_is_A", "pos_is_yes", "anti_steerable"]
SORTS = {"slope": "slope (most anti-steerable first)", "rmse": "rmse (least linear first)",
         "baseline": "baseline propensity", "spearman": "Spearman rank correlation"}


def table(steer: pd.DataFrame, only_anti: bool, sort_by: str, descending: bool) -> pd.DataFrame:
    """Rows of one layer, filtered and sorted as the user chose."""
    t = steer[[c for c in COLUMNS if c in steer.columns]]
    if only_anti:
        t = t[t.anti_steerable]
    ascending = not descending if sort_by != "rmse" else descending
    return t.sort_values(sort_by, ascending=ascending, kind="stable").reset_index(drop=True)


def apply_click(rows: list[int], ids: list[str]) -> None:
    """A new row click in the table selects that example (an unchanged selection leaves the choice alone,
    so picking another example in the selectbox is not undone by a stale table selection)."""
    if rows != st.session_state.get("s_table_rows"):
        st.session_state["s_table_rows"] = list(rows)
        if rows and rows[0] < len(ids):
            state.put("example", ids[rows[0]])


def selected(ids: list[str]) -> str | None:
    """The selected example, kept if still listed, else the first row (the most anti-steerable by default)."""
    current = st.session_state.get("s_example")
    if current not in ids:
        current = ids[0] if ids else None
        st.session_state["s_example"] = current
    return current


def row_of(result: SweepResult, layer: int, example_id: str) -> pd.Series:
    s = result.steerability
    return s[(s.layer == layer) & (s.example_id == example_id)].iloc[0]


def points_of(result: SweepResult, layer: int, example_id: str) -> pd.DataFrame:
    p = result.propensities
    return p[(p.layer == layer) & (p.example_id == example_id)][["multiplier", "propensity"]]


TOKENS = state.SessionMemo("tokens", 4)
CURVES = state.SessionMemo("curves", 32)


def tokens(ctx: state.Context, row: pd.Series) -> list[dict]:
    position = ctx.settings.position
    return TOKENS.get_or_compute((ctx.lm.name, row.prompt, row.positive, position),
                                 lambda: token_view(ctx.lm, row.prompt, row.positive, row.negative, position))


def curve(ctx: state.Context, result: SweepResult, row: pd.Series) -> pd.DataFrame:
    """P(A), P(B) and propensity at each grid multiplier (reference path, one example; memoised)."""
    cfg = result.config
    return CURVES.get_or_compute(
        (result.manifest["key"], int(row.layer), row.example_id),
        lambda: run(lambda _: example_curve(ctx.lm, row.prompt, row.positive, row.negative, int(row.layer),
                                            result.vectors[int(row.layer)], cfg.multipliers, cfg.position,
                                            cfg.metric),
                    model=ctx.lm.name, bar=False))  # a few passes (the page shows a spinner): the flag only


def detail(ctx: state.Context, result, example_id: str) -> None:
    """One example: verdict, diagnostics, tokens, its propensity and P(A)/P(B) curves, generations."""
    row = row_of(result, ctx.layer, example_id)
    verdict = ":red[anti-steerable]" if row.anti_steerable else ":blue[steerable]"
    st.subheader(f"{example_id}: slope {row.slope:.3g} ({verdict})")
    st.caption(f"Positive (behaviour-matching) answer {row.positive.strip()}, negative {row.negative.strip()}.")
    diagnostics.example_panel(ctx, example_id)
    st.markdown(views.tokens_html(tokens(ctx, row)), unsafe_allow_html=True)
    left, right = st.columns(2)
    with left:  # from the stored propensities: no model pass
        views.chart(figures.example_curve(points_of(result, ctx.layer, example_id), row.slope,
                                          row.intercept, ctx.metric, title="Propensity of this example"),
                    key="example_curve")
    probs_chart, probs_table = right.empty(), st.empty()  # P(A)/P(B) need passes: filled after the page has drawn
    probs_chart.info("P(A) and P(B) at each multiplier: computing after the page has drawn…")
    st.markdown("**Generation from this prompt**")
    c = st.columns([3, 1, 1])
    m = state.bound(c[0].slider, "Steering multiplier", "inspect_multiplier", min_value=-10.0, max_value=10.0, step=0.5)
    n = state.bound(c[1].number_input, "Max new tokens", "inspect_tokens", min_value=1, max_value=200, step=1)
    if c[2].button("Generate", key="inspect_generate"):
        views.generations(ctx.lm, row.prompt, ctx.layer, result.vectors[ctx.layer], m, "s_inspect_gen",
                          max_new_tokens=int(n), mode=ctx.settings.position)
    else:
        views.last_generations("s_inspect_gen", row.prompt)
    ladder.section(ctx, row.prompt, ctx.layer, result.vectors[ctx.layer], "inspect", {"max_new_tokens": int(n)})
    probs = curve(ctx, result, row)  # memoised: instant when this example was opened before
    with probs_chart.container():
        views.chart(figures.answer_probs(probs), key="answer_probs")
    probs_table.dataframe(probs, hide_index=True, key="curve_table")
