"""Files in the data directory that could not be read as datasets, shown under the concept list."""

from __future__ import annotations

import streamlit as st

from steering.core.datasets import list_unreadable
from steering.errors import DatasetError
from ui import demo


@st.cache_data(ttl=30, show_spinner=False)
def _unreadable(data_dir: str) -> list[tuple[str, str, str]]:
    try:
        return list_unreadable(data_dir or None)
    except DatasetError:
        return []  # a missing data directory is reported by the sidebar itself


def show(data_dir: str | None) -> None:
    """A collapsed sidebar list of the files left out of the concept list, each with its reason."""
    bad = _unreadable(data_dir or "")
    if not bad:
        return
    with st.sidebar.expander(f"{len(bad)} file(s) not read as datasets"):
        if demo.enabled():  # a reason can quote the file and a path shows the server's layout
            st.caption(", ".join(sorted({name for name, _, _ in bad})))
            return
        for name, path, reason in bad:
            st.caption(f"**{name}** — {reason}  \n`{path}`")
