"""Report card: should I trust this steering vector, for this model and concept, and at what setting?"""

import streamlit as st

from ui import page, report, state, views

INTRO = """
One card from every analysis: does the vector **steer at all** (letter-free), is it **better than chance**
(null vectors), **reliable per input**, driven by **the answer letter**, **stable** across halves of the
training data, does it **generalise** to other prompts, does it **beat just asking** (AxBench: prompting
often wins), and is it **affordable** (KL, perplexity, capability at the setting chosen on validation items).
"""


def intro() -> None:
    st.markdown(INTRO)


def body(ctx: state.Context) -> None:
    st.caption(views.settings_line(ctx))
    th = report.thresholds_form()
    parts = report.parts(ctx)
    if report.complete_button(ctx, parts):
        st.rerun()  # redraw from the store, without the button
    card = report.card_for(parts, th)
    report.show(card)
    report.download(card, parts)
    report.worst(card)
    report.figures(parts, card)
    report.study_section(th)


page.run("Report card", body, intro=intro)
