"""The Diagnostics page's four sections for one layer: null baselines, the A/B swap, per-example predictors
and split-half stability (the numbers are the diagnostics run's, ``ui.diagnostics``)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from steering.run.diagnostics import figures as diag_figures
from steering.run.diagnostics import stats as diag_stats
from ui import views


def null_section(steer: pd.DataFrame, summary: dict, tables: dict, metric: str, layer: int) -> None:
    st.subheader("Null baselines")
    if "null.parquet" in tables:
        null = tables["null.parquet"]
        c = st.columns(4)
        for i, kind in enumerate(("random", "shuffled")):
            s = summary.get(f"null_{kind}", {})
            if s:
                c[2 * i].metric(f"Beyond the {kind} null band", diag_stats.frac_beyond_text(s),
                                help="Items whose slope lies outside their own 95% null band, on either side "
                                     "(|z| > 1.96), among the items with a z.")
                c[2 * i + 1].metric(f"Null mean slope ({kind})", f"{s['null_mean_lo']:.2g} … {s['null_mean_hi']:.2g}",
                                    help=f"Range of the mean slope over the {s['k']} null vectors "
                                         f"(real vector: {s['mean_slope']:.3g}); null anti-steerable "
                                         f"{s['null_anti_lo']:.0%}–{s['null_anti_hi']:.0%}.")
        views.chart(diag_figures.null_histogram(steer.slope.to_numpy(), null[null.layer == layer], metric,
                                                layer), key="diag_null")



def swap_section(steer: pd.DataFrame, summary: dict, metric: str, layer: int) -> None:
    st.subheader("A/B swap")
    if "slope_swapped" in steer:
        s = summary.get("swap", {})
        c = st.columns(4)
        c[0].metric("Letter-driven", f"{s['frac_letter_driven']:.0%}")
        c[1].metric("Letter-free mean", f"{s['letter_free_mean']:.3g}")
        c[2].metric("Letter-free median", f"{s['letter_free_median']:.3g}")
        c[3].metric("Letter-free anti-steerable", f"{s['letter_free_anti']:.0%}")
        views.chart(diag_figures.swap_scatter(steer, metric, layer), key="diag_swap")
    else:
        st.caption("No swap for the answer_text metric: its prompts show no letters.")



def predictors_section(steer: pd.DataFrame, summary: dict, metric: str) -> None:
    st.subheader("Per-example predictors")
    p = summary.get("predictors")
    if p:
        st.caption(f"Directional agreement of the training differences: {p['directional_agreement']:.3f} "
                   "(mean cosine of each training difference with their mean; Braun et al. 2025).")
        cols = st.columns(3)
        for col, name in zip(cols, ("own_cos", "own_proj", "baseline")):
            with col:
                views.chart(diag_figures.predictor_scatter(steer, name, metric), key=f"diag_pred_{name}")



def split_section(tables: dict, layer: int) -> None:
    st.subheader("Split-half stability")
    if "split_half.parquet" in tables:
        split = tables["split_half.parquet"]
        row = split[split.layer == layer]
        if len(row):
            r = row.iloc[0]
            st.markdown(f"Layer {layer}: cosine of the two half-vectors **{r.cosine:.3f}**, Spearman rho of the "
                        f"per-example slopes they give **{r.spearman:.3f}** ({int(r.n_half)} training pairs each). "
                        "Every layer: the Layer sweep page.")
