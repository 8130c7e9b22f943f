"""Study overview (the paper's Figure 1, for any stored study): per concept, the spread of per-example
steerability sorted by median, the anti-steerable fraction with its interval, and the spurious-factor
breakdown; a form starts (or resumes) a study; choosing a concept opens it in the per-concept pages."""

import streamlit as st

from steering.analyses.study import figures as study_figures
from ui import page, state, studies, study_overview, views


def body(ctx: state.Context) -> None:
    resume = studies.pending()
    if resume is not None:
        spec, executor = resume
        st.info(f"Resuming study '{spec.name}' (finished cells come from the store).")
        studies.start(spec, executor, ctx.lm if ctx.lm.name in spec.models else None)
        st.rerun()
    study = studies.pick_study()
    study_overview.form(ctx, expanded=study is None)
    if study is None:
        st.info(
            "No study stored yet: start one above, or from the command line with "
            "`python -m steering study --name NAME --datasets bundled --variants id,ood`."
        )
        return
    c = st.columns(3)
    with c[0]:
        model = studies.pick_model(study)
    pairs = [studies.pair_label(p) for p in study.spec.variants]
    if state.get("study_pair") not in pairs:
        state.put("study_pair", pairs[0])
    with c[1]:
        label = state.bound(st.selectbox, "Train → test variant", "study_pair", options=pairs)
    kind = c[2].radio("Distribution as", ["violin", "box"], horizontal=True, key="w_study_kind")
    pair = tuple(label.split("->"))
    d, e = study.datasets, study.examples
    rows = d[(d.model == model) & (d.train_variant == pair[0]) & (d.test_variant == pair[1])]
    ex = e[(e.model == model) & (e.train_variant == pair[0]) & (e.test_variant == pair[1])]
    study_overview.summary(study, model, rows)
    views.chart(study_figures.concept_distributions(ex, rows, study.spec.metric, kind), key="study_dist")
    views.chart(study_figures.spurious_bars(rows), key="study_spurious")
    if note := studies.undefined_shares(rows):
        st.caption(note)
    study_overview.concept_links(study, model, pair, study_figures.concept_order(rows))


page.run("Study overview", body)
