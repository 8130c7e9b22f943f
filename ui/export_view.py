"""The Export page's download sections: per-example tables, the vectors (safetensors, sidecar, GGUF) and the
figures (HTML, PNG, SVG); the bytes come from ``ui.export``."""

from __future__ import annotations

import streamlit as st

from steering.core.results import SweepResult
from ui import export, state


def tables(result: SweepResult, stem: str) -> None:
    st.subheader("Per-example results")
    st.write(f"Steerability: one row per test item and layer ({len(result.steerability)} rows: slope, intercept, "
             "rmse, Spearman, baseline, anti_steerable, prompt, answers). Propensities: one row per item, layer "
             f"and multiplier ({len(result.propensities)} rows).")
    c = st.columns(4)
    c[0].download_button("Steerability (CSV)", export.csv_bytes(result.steerability), f"{stem}-steerability.csv",
                         "text/csv", key="dl_steer_csv", on_click="ignore")
    c[1].download_button("Steerability (Parquet)", export.parquet_bytes(result.steerability),
                         f"{stem}-steerability.parquet", "application/octet-stream", key="dl_steer_pq",
                         on_click="ignore")
    c[2].download_button("Propensities (CSV)", export.csv_bytes(result.propensities), f"{stem}-propensities.csv",
                         "text/csv", key="dl_prop_csv", on_click="ignore")
    c[3].download_button("Propensities (Parquet)", export.parquet_bytes(result.propensities),
                         f"{stem}-propensities.parquet", "application/octet-stream", key="dl_prop_pq",
                         on_click="ignore")


def vectors(result: SweepResult, stem: str) -> None:
    st.subheader("Steering vectors")
    layers = ", ".join(map(str, result.layers))
    st.write(f"{'Layers' if len(result.layers) > 1 else 'Layer'} {layers} as safetensors (tensors `layer.<n>`), "
             "with a JSON sidecar: model, layers, read position, aggregator, norms, dataset hash, split and seed.")
    c = st.columns(4)
    c[0].download_button("Vectors (safetensors)", export.run_file(result, "vectors.safetensors"),
                         f"{stem}-vectors.safetensors", "application/octet-stream", key="dl_vec", on_click="ignore")
    c[1].download_button("Sidecar (JSON)", export.run_file(result, "vectors.json"), f"{stem}-vectors.json",
                         "application/json", key="dl_vec_json", on_click="ignore")
    c[2].download_button("Run manifest (JSON)", export.run_file(result, "manifest.json"), f"{stem}-manifest.json",
                         "application/json", key="dl_manifest", on_click="ignore")
    if any(layer > 0 for layer in result.layers):
        c[3].download_button("llama.cpp control vector (GGUF)", lambda: export.gguf_bytes(result),
                             f"{stem}-control-vector.gguf", "application/octet-stream", key="dl_gguf",
                             on_click="ignore",
                             help="For llama.cpp's --control-vector (or --control-vector-scaled FILE m for "
                                  "multiplier m). direction.N is added to the output of block N, as here; layer 0 "
                                  "is left out (llama.cpp never steers it). llama.cpp adds it at every position.")


def figures(ctx: state.Context, result: SweepResult, stem: str) -> None:
    st.subheader("Figures")
    st.download_button("Interactive figures (HTML, works offline)",
                       lambda: export.report_html(result, ctx.layer, ctx.metric).encode(), f"{stem}-figures.html",
                       "text/html", key="dl_html", on_click="ignore")
    if export.png_available():
        for i, (name, fig) in enumerate(export.report_figures(result, ctx.layer, ctx.metric).items()):
            c = st.columns([3, 1, 1])
            c[0].write(name)
            c[1].download_button("PNG", lambda fig=fig: export.image_bytes(fig, "png"), f"{stem}-figure{i}.png",
                                 "image/png", key=f"dl_png_{i}", on_click="ignore")
            c[2].download_button("SVG", lambda fig=fig: export.image_bytes(fig, "svg"), f"{stem}-figure{i}.svg",
                                 "image/svg+xml", key=f"dl_svg_{i}", on_click="ignore")
    else:
        st.caption(f"{export.static_unavailable_reason()}. Each chart's camera icon (top right, on hover) saves "
                   "that chart as PNG from the browser.")
