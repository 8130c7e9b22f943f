"""Evaluate an imported vector (a llama.cpp control vector or a safetensors vector) with the sidebar's settings."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from steering.errors import ControlVectorError
from steering.interop.controlvec import evaluate_vectors, read_vectors
from steering.run import figures
from ui import demo, failures, state
from ui.compute import run
from ui.runs import PHASES

RESULT_KEY = "imported_vector_result"


def _evaluate(ctx: state.Context, name: str, data: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        safe = Path(name).name  # a visitor-sent file name: no directory part, and never '.' or '..'
        path = Path(tmp) / (safe if safe not in ("", ".", "..") else "upload")
        path.write_bytes(data)
        vectors, info = read_vectors(path)
        layers = [lay for lay in info["layers"] if lay < ctx.lm.n_layers]
        if not layers:
            raise ControlVectorError(f"{name}: layers {info['layers']} are beyond {ctx.lm.name}'s "
                                     f"{ctx.lm.n_layers} layers")
        demo.check_sweep(ctx.config(layers))  # demo mode: layers, items and multipliers are bounded
        result = run(lambda progress: evaluate_vectors(path, ctx.lm, ctx.dataset, ctx.config(layers),
                                                       out=state.results_dir(), progress=progress),
                     model=ctx.lm.name, labels=PHASES, start="Evaluating the imported vector on the test split…")
        return result, info


def section(ctx: state.Context) -> None:
    """Upload, evaluate on the sidebar's model, concept, test split and multipliers, show the per-layer figures."""
    st.subheader("Evaluate an imported vector")
    st.write("A llama.cpp control vector (`.gguf`, e.g. from repeng, EasySteer or this page) or a `.safetensors` "
             "vector (tensors `layer.<n>`), evaluated on the sidebar's model, concept, test split and multipliers. "
             "`direction.N` is read as layer N (the output of block N, counted from 0), as llama.cpp applies it.")
    upload = st.file_uploader("Vector file", type=["gguf", "safetensors"], key="w_import_vector")
    if upload is None:
        return
    if st.button("Evaluate the imported vector", key="b_import_vector"):
        try:
            st.session_state[RESULT_KEY] = (upload.name, *_evaluate(ctx, upload.name, upload.getvalue()))
        except Exception as e:  # noqa: BLE001 - bad input is its message, a bug one line naming its log
            st.session_state.pop(RESULT_KEY, None)
            failures.show(e, state.results_dir(), "importing a vector", prefix="Import: ")
            return
    held = st.session_state.get(RESULT_KEY)
    if not held or held[0] != upload.name:
        return
    name, result, info = held
    st.caption(f"{name}: {info['format']}, recorded model {info['model'] or '(none)'}, layers "
               f"{', '.join(map(str, result.layers))}; run stored in {result.run_dir}")
    st.dataframe(result.layer_table(), hide_index=True)
    layer = ctx.layer if ctx.layer in result.layers else result.layers[0]
    steer = result.steerability[result.steerability.layer == layer]
    st.plotly_chart(figures.slope_histogram(steer.slope, ctx.metric,
                                            title=f"Imported vector: per-example steerability, layer {layer}"),
                    key="imported_hist")
