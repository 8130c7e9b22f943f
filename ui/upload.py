"""Dataset uploads: parsed in memory (size-limited by the backend), kept for the session.

A bad file leaves every setting and every computed result as it was; its message
is kept in ``s_upload_error`` and shown under the uploader.
"""

from __future__ import annotations

import streamlit as st

from steering.core.datasets import Dataset, parse_bytes
from ui import failures, state


def parse_upload(data: bytes, filename: str) -> tuple[Dataset | None, str | None]:
    """(dataset, None) for a good file, (None, message) for a bad one; never raises (it runs in a widget
    callback, where an exception would be a traceback): a parser bug is one line naming its log."""
    try:
        return parse_bytes(data, filename), None
    except Exception as e:  # noqa: BLE001 - bad content is a DatasetError; anything else is a bug, logged
        return None, failures.message(e, state.results_dir(), f"reading the upload {filename}")


def accept(data: bytes, filename: str) -> bool:
    """Parse an upload and, if good, add it to the session's datasets and select it."""
    ds, error = parse_upload(data, filename)
    state.put("upload_error", error)
    if ds is None:
        return False
    uploads = dict(state.get("uploads"))
    uploads[ds.name] = ds
    state.put("uploads", uploads)
    state.put("dataset", state.UPLOAD_PREFIX + ds.name)
    return True


def on_upload() -> None:
    """file_uploader callback (runs before the script, so the concept selector can switch to the new file)."""
    file = st.session_state.get("w_upload")
    if file is None:
        state.put("upload_error", None)
        return
    accept(file.getvalue(), file.name)
