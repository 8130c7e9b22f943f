"""Page scaffold: config, shared sidebar, and errors shown in the page (never a traceback)."""

from __future__ import annotations

import logging
from typing import Callable

import streamlit as st

from steering.errors import DatasetError, ModelError, SweepError
from ui import demo, sidebar, state

log = logging.getLogger("steering.app")
# Errors whose message is written for the user (what is wrong and what is valid).
USER_ERRORS = (ModelError, DatasetError, SweepError, ValueError, OSError)


def show_error(e: Exception) -> None:
    if isinstance(e, USER_ERRORS):
        st.error(str(e) or type(e).__name__)
    else:  # a bug: keep the demo alive, put the traceback in the server log
        log.exception("page error")
        st.error(f"Something went wrong ({type(e).__name__}: {e}). The details are in the server log.")


def run(title: str, body: Callable[[state.Context], None], intro: Callable[[], None] | None = None) -> None:
    """Draw a page: sidebar first (its settings feed the body), then ``intro`` and ``body(ctx)``."""
    st.set_page_config(page_title=f"{title} · steering reliability", layout="wide")
    if not demo.gate():  # the operator's password, when one is set
        return
    # Title and intro first: they need no model, so the page shows while the sidebar loads it.
    st.title(title)
    if intro is not None:
        intro()
    try:
        ctx = sidebar.render()
    except Exception as e:  # noqa: BLE001 - the sidebar must never take the page down
        show_error(e)
        ctx = None
    if ctx is None:
        st.info("Choose a model and a concept that load (see the messages in the sidebar).")
        return
    try:
        body(ctx)
    except Exception as e:  # noqa: BLE001 - Streamlit's rerun/stop are BaseException and pass through
        show_error(e)
