"""Generalisation across prompt variants: per concept a train x test variant heatmap; the ID vs OOD
scatter of dataset-level steerability with Spearman's rho; per example, which inputs lose
steerability under a prompt change, with a click through to Inspect."""

import streamlit as st

from steering.analyses.study import figures as study_figures
from steering.analyses.study import stats as study_stats
from ui import page, state, studies, views

INSPECT_PAGE = "pages/3_Inspect_examples.py"


def example_view(study, model: str, concept: str, ood: str) -> None:
    e = study.examples
    ex = e[(e.model == model) & (e.dataset == concept)]
    views.chart(study_figures.example_id_ood(ex, ood, study.spec.metric), key="gen_examples")
    wide = study_figures.paired_examples(ex, ood)
    wide = wide.assign(change=wide.ood - wide.id).sort_values("change")  # the largest losses first
    if wide.empty:
        return
    c = st.columns([3, 1])
    with c[0]:
        chosen = st.selectbox("Example (largest loss of steerability first)", list(wide.index), key="w_gen_example",
                              format_func=lambda i: f"{i}: ID {wide.id[i]:+.2f} → OOD {wide.ood[i]:+.2f}")
    if c[1].button("Inspect under " + ood + " →", key="gen_inspect", type="primary"):
        studies.open_cell(study, model, concept, ("BASE", ood), INSPECT_PAGE, example=chosen)


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
    oods = [t for t in dict.fromkeys(rows[(rows.train_variant == "BASE") & (rows.test_variant != "BASE")].test_variant)]
    has_id = ((rows.train_variant == "BASE") & (rows.test_variant == "BASE")).any()
    if not oods or not has_id:
        st.info("This study has no BASE->BASE and BASE->other pairs: run it with --variants id,ood to compare "
                "in- and out-of-distribution steerability.")
        return
    st.subheader("In distribution vs out of distribution")
    if state.get("study_ood") not in oods:
        state.put("study_ood", oods[0])
    ood = state.bound(st.selectbox, "Out-of-distribution test variant (vector trained on BASE)", "study_ood",
                      options=oods)
    rho = study_stats.id_vs_ood(rows)
    views.chart(study_figures.id_ood_scatter(rows, ood, study.spec.metric), key="gen_scatter")
    st.caption("Spearman ρ of dataset-level steerability (median slope), ID against each OOD variant: "
               + " · ".join(f"{r.pair}: {r.rho:+.2f}" for r in rho.itertuples()))
    st.subheader(f"{concept}: which inputs lose steerability under {ood}")
    example_view(study, model, concept, ood)


page.run("Study generalisation", body)
