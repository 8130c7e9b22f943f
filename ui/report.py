"""Streamlit glue for the Report card page: the stored parts for the sidebar's settings, completing the
missing ones under one progress bar, the thresholds form, the card's views, the HTML download and the
study table. Every number comes from ``steering.analyses.report``."""

from __future__ import annotations

import streamlit as st

from steering.analyses.report import criteria as cr
from steering.analyses.report import html as report_html
from steering.analyses.report.card import Card, build
from steering.analyses.report.figures import card_figures
from steering.analyses.report.parts import Parts, complete, find, steps
from steering.analyses.report.study_table import table as study_table
from steering.analyses.side_effects.compute import SideEffectsConfig
from steering.analyses.study.compute import list_studies
from steering.analyses.study.spec import ID_PAIR
from ui import resources, state, studies, views

PAGE = "pages/0_Report_card.py"
INSPECT = "pages/3_Inspect_examples.py"
WORDS = {"train": "training activations", "test": "encoding prompts", "grid": "the multiplier grid",
         "null": "null vectors", "swap": "A/B-swapped prompts", "split": "split-half vectors",
         "predictors": "per-item activation differences", "text": "neutral text (KL, perplexity)",
         "mc": "capability set", "val": "validation items"}


def parts(ctx: state.Context) -> Parts:
    """What the store holds for the sidebar's settings at the sidebar layer (cheap: no model work)."""
    return find(ctx.config([ctx.layer]), ctx.dataset, ctx.layer, state.results_dir())


def thresholds_form() -> cr.Thresholds:
    """Every threshold, editable; the card below follows them."""
    values = {}
    with st.expander("Thresholds (defaults and sources in the README)"):
        cols = st.columns(3)
        for i, t in enumerate(cr.threshold_table()):
            values[t["name"]] = cols[i % 3].number_input(t["label"], value=float(t["default"]), format="%.3f",
                                                         help=t["source"], key=f"w_th_{t['name']}")
    try:
        return cr.Thresholds().with_overrides(values)
    except ValueError as e:
        st.error(f"{e}; the defaults are used")
        return cr.Thresholds()


def _phase_words(phase: str) -> str:
    return " · ".join(WORDS.get(p, p) for p in phase.split(":"))


def complete_button(ctx: state.Context, p: Parts) -> bool:
    """"Complete the report card": every missing part under one progress bar with its phases named."""
    plan = steps(p)
    if not plan:
        return False
    st.info("Missing: " + "; ".join(label for _, label in plan) + ". Complete the card to compute them "
            "(stored, so every page and the CLI reuse them).")
    if not st.button("Complete the report card", type="primary", key="report_complete"):
        return False
    bar = st.progress(0.0, text="Starting…")
    at = {"i": 0, "n": len(plan), "label": ""}

    def step(i: int, n: int, label: str) -> None:
        at.update(i=i, n=n, label=label)
        bar.progress(min(i / max(n, 1), 1.0), text=f"Step {min(i + 1, n)}/{n}: {label}")

    def progress(phase: str, done: int, total: int) -> None:
        inner = phase.split(": ", 1)[-1]
        frac = (at["i"] + min(done / max(total, 1), 1.0)) / max(at["n"], 1)
        bar.progress(min(frac, 1.0), text=f"Step {at['i'] + 1}/{at['n']}: {at['label']} — {_phase_words(inner)}: "
                                          f"{done}/{total}")

    with resources.busy(ctx.lm.name):  # no other session may unload the model meanwhile
        complete(p, ctx.lm, state.results_dir(), SideEffectsConfig(), state.get("data_dir") or None, progress, step,
                 caches=state.cache_store())
    bar.empty()
    return True


def show(card: Card) -> None:
    st.markdown(f"**Verdict.** {card.verdict}")
    st.markdown(report_html.card_table(card), unsafe_allow_html=True)  # every word readable, marks coloured
    st.caption(f"Shifts and costs are read at layer {card.setting['layer']}, multiplier "
               f"{card.setting['multiplier']:g}: {card.setting['why']}.")


def figures(p: Parts, card: Card) -> None:
    for i, (name, fig) in enumerate(card_figures(p, card).items()):
        st.markdown(f"**{name}**")
        views.chart(fig, key=f"report_fig_{i}")


def worst(card: Card) -> None:
    if not card.worst:
        return
    st.subheader("Five worst inputs")
    st.caption(f"Most anti-steerable first, ranked by {card.worst_by}.")
    for r in card.worst:
        c = st.columns([5, 1])
        free = f", letter-free {r['slope_letter_free']:+.3g}" if "slope_letter_free" in r else ""
        c[0].markdown(f"`{r['example_id']}` slope {r['slope']:+.3g}{free} — {r['question']}")
        if c[1].button("Inspect", key=f"report_inspect_{r['example_id']}"):
            state.put("example", r["example_id"])
            state.put("only_anti", False)
            st.switch_page(INSPECT)


def download(card: Card, p: Parts) -> None:
    # Rendered only when clicked: the file inlines plotly.js (~5 MB), too much to resend on every rerun.
    st.download_button("Download the report (HTML, opens offline)",
                       lambda: report_html.render(card, card_figures(p, card)).encode("utf-8"),
                       file_name=f"report-{card.dataset}-L{card.layer}.html", mime="text/html",
                       key="report_download")


def study_section(th: cr.Thresholds) -> None:
    found = [s["name"] for s in list_studies(state.results_dir())]
    if not found:
        return
    st.subheader("A stored study, concept by concept")
    name = st.selectbox("Study", found, key="w_report_study")
    study = studies.load(name)
    df = study_table(study, state.results_dir(), th)
    marks = list(df.columns[3:-2])
    st.dataframe(df.style.map(_colour, subset=marks), hide_index=True, width="stretch", key="report_study_table")
    rows = [(r.model, r.dataset) for r in df.itertuples()]
    c = st.columns([3, 1])
    pick = c[0].selectbox("Open the card of", rows, format_func=lambda r: f"{r[1]} ({r[0]})", key="w_report_open")
    if c[1].button("Open its card", key="report_open"):
        studies.open_cell(study, pick[0], pick[1], ID_PAIR, PAGE)


def _colour(mark: str) -> str:
    return f"background-color: {report_html.COLOURS.get(mark, '#616161')}; color: white"


def card_for(p: Parts, th: cr.Thresholds) -> Card:
    return build(p, th)
