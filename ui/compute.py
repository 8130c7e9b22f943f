"""The one way the dashboard runs a long computation: a progress bar with phase and ETA, and the
shared model's busy flag held for the whole computation (so no other session can unload the model
under it). The sweep, diagnostics, side effects, entanglement, studies, an imported vector's
evaluation and live generation all go through ``run``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Mapping, TypeVar

import streamlit as st

from steering.core.progress import Measure, Progress
from ui import resources

T = TypeVar("T")
Report = Callable[[str, int, int], None]  # progress(phase, done, total)


def run(fn: Callable[[Report], T], *, model: str | None, labels: Mapping[str, str] | None = None,
        measure: Measure | None = None, start: str = "Starting…", bar: bool = True) -> T:
    """``fn(progress)`` with the busy flag of ``model`` held (None: it uses no shared model).

    With ``bar``, a progress bar shows the phase in words (``labels``), done/total, the time spent
    and the time left (``core.progress``); it is removed when ``fn`` returns or fails.
    """
    widget = st.progress(0.0, text=start) if bar else None
    model_progress = Progress(labels, measure)

    def progress(phase: str, done: int, total: int) -> None:
        snap = model_progress.update(phase, done, total)
        if widget is not None:
            widget.progress(snap.fraction, text=snap.text())

    try:
        with resources.busy(model) if model else nullcontext():
            return fn(progress)
    finally:
        if widget is not None:
            widget.empty()
