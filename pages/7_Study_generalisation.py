"""Generalisation across prompt variants: per concept a train x test variant heatmap; the ID vs OOD
scatter of dataset-level steerability with Spearman's rho; per example, which inputs lose
steerability under a prompt change, with a click through to Inspect."""

import streamlit as st

from steering.analyses.study import figures as study_figures
from ui import page, state, studies, study_generalisation, views


def body(ctx: state.Context) -> None:
    study = studies.pick_study()
    if study is None:
        st.info("No study stored yet: start one on the Study overview page.")
        return
    d = study.datasets
    c = st.columns(2)
    with c[0]:
        model = studies.pick_model(study)
    rows = d[d.model == model]
    concepts = list(dict.fromkeys(rows.sort_values("dataset").dataset))
    if state.get("study_concept") not in concepts:
        state.put("study_concept", concepts[0])
    with c[1]:
        concept = state.bound(st.selectbox, "Concept", "study_concept", options=concepts)
    st.subheader(f"{concept}: train variant × test variant")
    left, right = st.columns(2)
    one = rows[rows.dataset == concept]
    with left:
        views.chart(study_figures.variant_heatmap(one, "median_slope", study.spec.metric), key="gen_heat_slope")
    with right:
        views.chart(study_figures.variant_heatmap(one, "frac_anti"), key="gen_heat_anti")
    study_generalisation.id_vs_ood(study, model, concept, rows)


page.run("Study generalisation", body)
