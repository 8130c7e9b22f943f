"""Models compared: dataset-level steerability (median slope) of one model against another, per variant
pair, with Spearman's rho: do the same concepts steer well on both?"""

import streamlit as st

from steering.analyses.study import figures as study_figures
from steering.analyses.study import stats as study_stats
from ui import page, state, studies, views


def body(ctx: state.Context) -> None:
    study = studies.pick_study()
    if study is None:
        st.info("No study stored yet: start one on the Study overview page.")
        return
    models = study.spec.models
    if len(models) < 2:
        st.info(f"Study '{study.name}' has one model ({models[0]}). Compare models with a study over two or more, "
                "e.g. `python -m steering study --models smollm2-135m,gemma3-270m ...`.")
        return
    c = st.columns(3)
    a = c[0].selectbox("Model (x axis)", models, index=0, key="w_models_a")
    b = c[1].selectbox("Model (y axis)", [m for m in models if m != a], index=0, key="w_models_b")
    pairs = [studies.pair_label(p) for p in study.spec.variants]
    label = c[2].selectbox("Train → test variant", pairs, key="w_models_pair")
    views.chart(study_figures.model_scatter(study.datasets, a, b, tuple(label.split("->"))), key="models_scatter")
    cross = study_stats.cross_model(study.datasets)
    cross = cross[((cross.model_a == a) & (cross.model_b == b)) | ((cross.model_a == b) & (cross.model_b == a))]
    st.subheader("Spearman ρ per variant pair")
    st.dataframe(cross[["pair", "rho", "n_datasets"]].rename(columns={"pair": "train → test", "rho": "Spearman ρ",
                                                                      "n_datasets": "concepts"}),
                 hide_index=True, width="content")
    st.caption("Layers: " + ", ".join(f"{m} {study.layer(m)}" for m in models))


page.run("Study models", body)
