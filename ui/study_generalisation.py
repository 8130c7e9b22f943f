"""The Study generalisation page's lower half: in distribution against out of distribution (dataset-level
scatter with Spearman's rho), and per example which inputs lose steerability, with a click through to Inspect."""

from __future__ import annotations

import streamlit as st

from steering.analyses.study import figures as study_figures
from steering.analyses.study import stats as study_stats
from ui import state, studies, views

INSPECT_PAGE = "pages/3_Inspect_examples.py"


def id_vs_ood(study, model: str, concept: str, rows) -> None:
    """Needs BASE->BASE and BASE->other pairs (``rows``: the model's dataset-level rows)."""
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
