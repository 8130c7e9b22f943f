"""Entry point and Home page: what steerability means, the chosen concept, and the Compute button.

Run with `streamlit run app.py` (or `make run`). Pages are in pages/; the shared
sidebar and Streamlit glue in ui/; all computation in the steering package.
st.navigation lists the pages so the first entry reads "Home", not "app".
"""

import streamlit as st

from ui import page, state

INTRO = """
A **steering vector** (Contrastive Activation Addition) is the mean difference of a model's
residual-stream activations between answers that show a behaviour and answers that do not.
Adding *multiplier × vector* at one layer should push every input toward the behaviour.

Per input it often does not. For each test example this dashboard measures the **propensity**
(how much the model prefers the behaviour-matching answer, as a logit difference) at several
multipliers and fits a line: its slope is the example's **steerability**. Examples with a
negative slope are **anti-steerable**: the vector pushes them the wrong way.
See Tan et al. 2024, [*Analyzing the Generalization and Reliability of Steering Vectors*](https://arxiv.org/abs/2407.12404)
(NeurIPS 2024).
"""


def intro() -> None:
    st.markdown(INTRO)


def loading() -> None:
    st.info("Loading the model (once per server start); the page completes when it is ready.")
    st.button("Compute — loading the model…", type="primary", disabled=True, key="compute_loading")


def body(ctx: state.Context) -> None:
    from ui import diagnostics, runs, views  # torch and plotly: imported once the title and settings show

    st.subheader(f"Concept: {ctx.dataset.name}")
    views.concept_summary(ctx)
    st.caption(views.settings_line(ctx))
    st.page_link("pages/0_Report_card.py", label="Should I trust this vector? The report card",
                 icon=":material/fact_check:")
    result = runs.current(ctx)
    if result is None:
        st.write("Compute trains the vector on the training items and measures every test item at each "
                 "multiplier, for the sidebar layer (use the Layer sweep page for all layers).")
        if st.button(f"Compute layer {ctx.layer}", type="primary", key="compute_layer"):
            runs.compute(ctx, "layer")
            st.rerun()  # redraw without the button; the result is now in the store and the session memo
        return
    st.subheader(f"Layer {ctx.layer}: headline figures")
    views.headline(ctx, result)
    diagnostics.headline(ctx)
    views.provenance(result)
    cols = st.columns(4)
    for col, (path, label) in zip(cols, LINKS):
        col.page_link(path, label=label, icon=ICONS[path])


def home() -> None:
    page.run("Steering-vector reliability", body, intro=intro, loading=loading)


PAGES = {
    "pages/0_Report_card.py": ("Report card", ":material/fact_check:"),
    "pages/1_Steerability.py": ("Steerability", ":material/bar_chart:"),
    "pages/2_Layer_sweep.py": ("Layer sweep", ":material/stacked_line_chart:"),
    "pages/3_Inspect_examples.py": ("Inspect examples", ":material/search:"),
    "pages/4_Live_steering.py": ("Live steering", ":material/tune:"),
    "pages/5_Export.py": ("Export", ":material/download:"),
    "pages/6_Diagnostics.py": ("Diagnostics", ":material/troubleshoot:"),
    "pages/7_Study_overview.py": ("Study overview", ":material/view_list:"),
    "pages/7_Study_generalisation.py": ("Study generalisation", ":material/grid_on:"),
    "pages/7_Study_models.py": ("Study models", ":material/compare_arrows:"),
    "pages/8_Side_effects.py": ("Side effects", ":material/warning:"),
}
ICONS = {path: icon for path, (_, icon) in PAGES.items()}
LINKS = [("pages/1_Steerability.py", "Steerability distribution"), ("pages/2_Layer_sweep.py", "Layer sweep"),
         ("pages/3_Inspect_examples.py", "Anti-steerable examples"), ("pages/4_Live_steering.py", "Live steering")]

st.navigation(
    [st.Page(home, title="Home", icon=":material/home:", default=True)]
    + [st.Page(path, title=title, icon=icon) for path, (title, icon) in PAGES.items()]
).run()
