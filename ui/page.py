"""Page scaffold: config, shared sidebar, and errors shown in the page (never a traceback; see ui.failures)."""

from __future__ import annotations

from typing import Callable

import streamlit as st

from ui import demo, failures, sidebar, state


def show_error(e: Exception, where: str = "") -> None:
    """Bad input as its message; a bug as one line naming the log with its traceback (ui.failures)."""
    failures.show(e, state.results_dir(), where)


def run(title: str, body: Callable[[state.Context], None], intro: Callable[[], None] | None = None,
        loading: Callable[[], None] | None = None) -> None:
    """Draw a page: title and ``intro``, the sidebar (its settings feed the body), then ``body(ctx)``.

    While the model is still loading (the first visit after the server started) ``loading()`` is
    shown where the body will be."""
    st.set_page_config(page_title=f"{title} · steering reliability", layout="wide")
    if not demo.gate():  # the operator's password, when one is set
        return
    # Title and intro first: they need no model, so the page shows while the sidebar loads it.
    st.title(title)
    if intro is not None:
        intro()
    try:
        ctx = sidebar.render(loading)
    except Exception as e:  # noqa: BLE001 - the sidebar must never take the page down
        show_error(e, f"{title} (sidebar)")
        ctx = None
    if ctx is None:
        st.info("Choose a model and a concept that load (see the messages in the sidebar).")
        return
    try:
        body(ctx)
    except Exception as e:  # noqa: BLE001 - Streamlit's rerun/stop are BaseException and pass through
        show_error(e, title)
