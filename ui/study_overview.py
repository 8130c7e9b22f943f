"""The Study overview page's pieces: the form that starts (or resumes) a study, the summary of one
model and variant pair, and the links that open a concept in the per-concept pages."""

from __future__ import annotations

import streamlit as st

from steering.analyses.study import spec as study_spec
from steering.analyses.study.compute import skipped_lines
from ui import demo, state, studies

STEER_PAGE, INSPECT_PAGE = "pages/1_Steerability.py", "pages/3_Inspect_examples.py"
VARIANT_SETS = ["id", "id,ood", "all"]


def form(ctx: state.Context, expanded: bool) -> None:
    with st.expander("Start a study", expanded=expanded):
        st.caption(
            f"On {ctx.lm.name}, with the sidebar's multipliers, seed, aggregator and metric. Each cell is a "
            "stored sweep: leaving the page stops it, coming back resumes it from the finished cells."
        )
        with st.form("study_form"):
            c = st.columns([2, 3, 2])
            name = c[0].text_input("Study name", value=studies.default_name(), key="w_form_name")
            datasets = c[1].text_input(
                "Concepts",
                value="bundled",
                key="w_form_datasets",
                help="paper-figure1, paper (needs the data directory), bundled, or dataset names, comma-separated",
            )
            variants = c[2].selectbox(
                "Prompt variants",
                VARIANT_SETS,
                index=1,
                help="id = BASE->BASE; ood = BASE->SYS_POS/SYS_NEG/USER_POS/USER_NEG; all = every train x test pair",
            )
            c = st.columns(4)
            layer = c[0].text_input(
                "Layer rule",
                value="0.4",
                key="w_form_layer",
                help="an index (12), a relative depth (0.4), or best "
                "(chosen on a validation half of the training split)",
            )
            n_train = c[1].number_input("Train items", min_value=1, value=int(ctx.settings.n_train))
            n_test = c[2].number_input("Test items", min_value=1, value=int(ctx.settings.n_test))
            executor = c[3].selectbox("Executor", studies.executors())
            go = st.form_submit_button("Run study", type="primary", key="w_form_run")
        if go:
            s = ctx.settings
            data_dir = state.get("data_dir") or None
            # every field a visitor sent passes the demo policy first (names only, bounded, fixed messages)
            spec = study_spec.make_spec(
                demo.check_study_name(name),
                ctx.lm.name,
                demo.resolve_dataset_names(datasets, data_dir),
                demo.check_choice(variants, VARIANT_SETS, "prompt-variant set"),
                demo.check_layer_text(layer),
                data_dir,
                multipliers=list(s.multipliers),
                n_train=int(n_train),
                n_test=int(n_test),
                seed=s.seed,
                aggregator=s.aggregator,
                metric=s.metric,
                balance_train=s.balance_train,
            )
            studies.start(spec, demo.check_choice(executor, studies.executors(), "executor"), ctx.lm)
            st.rerun()


def summary(study, model: str, rows) -> None:
    """The settings line and four metrics over the concepts of one model and variant pair."""
    spec = study.spec
    st.caption(
        f"{model} · layer {study.layer(model)} (rule {spec.layer_rules[model]}) · {len(rows)} concepts · "
        f"{spec.n_train} train / {spec.n_test} test items · multipliers "
        f"{state.format_multipliers(spec.multipliers)} · {spec.aggregator} vector · seed {spec.seed}"
    )
    m = st.columns(4)
    m[0].metric("Concepts", len(rows))
    m[1].metric("Median anti-steerable fraction", f"{rows.frac_anti.median():.0%}")
    m[2].metric("Concepts with ≥ 30% anti-steerable", int((rows.frac_anti >= 0.3).sum()))
    ab_share, ab_help = studies.mean_ab_share(rows)
    m[3].metric("Mean share explained by A/B", ab_share, help=ab_help)
    skipped = skipped_lines(study.meta, model)
    if skipped:  # unusable items are left out of a concept's splits, not fatal: say which and why
        st.warning("Unusable items were left out of these concepts' splits: " + "; ".join(skipped))


def concept_links(study, model: str, pair: tuple[str, str], order: list[str]) -> None:
    st.subheader("Open a concept")
    names = order[::-1]  # most steerable first, as in the figure
    if state.get("study_concept") not in names:
        state.put("study_concept", names[0])
    c = st.columns([3, 1, 1])
    with c[0]:
        concept = state.bound(st.selectbox, "Concept", "study_concept", options=names)
    st.caption(
        "Sets the sidebar (model, concept, layer, variants, split) to this study's settings: the "
        "pages open on its stored run, nothing is recomputed."
    )
    if c[1].button("Steerability →", key="open_steerability", type="primary"):
        studies.open_cell(study, model, concept, pair, STEER_PAGE)
    if c[2].button("Inspect examples →", key="open_inspect"):
        studies.open_cell(study, model, concept, pair, INSPECT_PAGE)
