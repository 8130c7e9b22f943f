"""The Side effects page's entanglement section: does concept X's vector move concept Y? Concepts from
a list (trained with the sidebar settings) or from a stored study (its vectors reused)."""

from __future__ import annotations

import streamlit as st

from steering.analyses.side_effects import entanglement as ent
from steering.analyses.side_effects import figures as side_figures
from steering.analyses.study.compute import list_studies
from steering.errors import InputError
from ui import demo, side, state, studies, views


def section(ctx: state.Context) -> None:
    st.subheader("Entanglement: does X's vector move Y?")
    found = [s["name"] for s in list_studies(state.results_dir())]
    source = st.radio("Concepts from", ["a list", "a stored study"] if found else ["a list"], horizontal=True,
                      key="w_ent_source")
    mult = st.number_input("Multiplier", value=1.0, step=0.5, key="w_ent_mult")
    if source == "a stored study":
        study = studies.load(demo.check_stored_study(st.selectbox("Study", found, key="w_ent_study"), found))
        c = st.columns(2)
        model = c[0].selectbox("Model", study.spec.models, key="w_ent_model")
        pair = c[1].selectbox("Variant pair", [tuple(p) for p in study.spec.variants], format_func=studies.pair_label,
                              key="w_ent_pair")
        layer = study.layer(model)
        clicked = st.button(f"Compute the matrix over the study's {len(study.meta['dataset_paths'])} concepts at "
                            f"layer {layer}", key="ent_compute_study", disabled=mult == 0)
        try:
            df = side.study_entanglement(study, model, pair, float(mult), clicked) if mult != 0 else None
        except InputError as e:  # e.g. a study of one concept
            st.error(str(e))
            return
    else:
        choices = state.dataset_choices(state.get("data_dir"))
        paths = {c.label: c.key for c in choices if not c.key.startswith("upload:")}
        default = [l for l in paths][:3]
        picked = st.multiselect("Concepts (at least two; each is trained with the sidebar settings)", list(paths),
                                default=default, key="w_ent_concepts")
        layer = ctx.layer
        ready = len(picked) >= 2 and mult != 0
        clicked = st.button(f"Compute the matrix at layer {layer}", key="ent_compute", disabled=not ready)
        df = side.entanglement(ctx, [paths[p] for p in picked], float(mult), clicked) if ready else None
    if df is None:
        st.caption("Rows steer with concept X's vector; columns measure the mean propensity shift on concept Y's test "
                   "items, divided by Y's own vector's shift (the diagonal is 1). From a study, its settings and "
                   "layer are used and the vectors its runs trained are read from the store.")
        return
    normalised = st.radio("Cells", ["shift / Y's own shift", "raw mean shift"], horizontal=True,
                          key="w_ent_cells") != "raw mean shift"
    m = ent.matrix(df, "normalised" if normalised else "shift")
    views.chart(side_figures.entanglement(m, layer, float(mult), normalised), key="ent_heatmap")
    weak = ent.weak_columns(df)
    if weak and normalised:
        st.warning(f"Barely moved by their own vector (own shift under a tenth of the median): {', '.join(weak)}. "
                   "Their columns divide by almost nothing; read them as raw shifts.")
