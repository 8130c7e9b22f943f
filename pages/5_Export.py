"""Export: per-example results, the vectors, the figures and the code that reproduces the run."""

import streamlit as st

from ui import export, export_view, import_vectors, page, state, views


def body(ctx: state.Context) -> None:
    result = views.result_or_compute(ctx)
    if result is None:
        return
    st.caption(views.settings_line(ctx))
    stem = f"{result.config.dataset}--{result.manifest.get('key', 'run')}"
    export_view.tables(result, stem)
    export_view.vectors(result, stem)
    export_view.figures(ctx, result, stem)
    import_vectors.section(ctx)
    st.subheader("Reproduce with the backend")
    st.code(export.snippet(ctx, result), language="python")
    views.provenance(result)


page.run("Export", body)
