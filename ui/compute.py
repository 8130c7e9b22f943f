"""The one way the dashboard runs a long computation: a turn in the process-wide job queue, a progress bar
with phase and ETA, and the shared model's busy flag held for the whole computation (so no other session
can unload the model under it). The sweep, diagnostics, side effects, entanglement, studies, an imported
vector's evaluation and live generation all go through ``run``.

The queue (``ui.jobs``): in the shared-demo mode at most ``STEERING_DEMO_JOBS`` computations with a
progress bar run at once; the others wait first come, first served, and their page says how many jobs
are ahead. Outside demo mode nobody waits. A job does not survive its tab: while it waits the page
redraws its waiting line each half second, which is where Streamlit interrupts a script whose visitor
left the page or changed a widget (RerunException) or whose session was shut down (StopException); and
both while waiting and at every progress report it asks the server whether its session is still
connected, stopping the script (``st.stop``) when it is not. Either way the ticket is released, so the
queue moves on. Quick computations without a bar (a slider value, a few passes) do not queue.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from typing import Callable, Mapping, TypeVar

import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from steering.core.progress import Measure, Progress
from ui import demo, jobs, resources

T = TypeVar("T")
Report = Callable[[str, int, int], None]  # progress(phase, done, total)

QUEUE = jobs.JobQueue(slots=None)  # one per server process; its slots follow the mode on each run
_held = threading.local()  # a computation inside another one of the same script run does not queue again


def session_alive(session_id: str | None = None) -> bool:
    """Whether a browser session (default: this script's) is still connected; True where no server can tell
    (tests, bare mode)."""
    if session_id is None:
        ctx = get_script_run_ctx(suppress_warning=True)
        session_id = ctx.session_id if ctx is not None else None
    if session_id is None or not runtime.exists():
        return True
    return runtime.get_instance().is_active_session(session_id)


def waiting_line(n: int) -> str:
    return (f"Waiting: {n} job{'s' if n != 1 else ''} ahead of yours. This server runs "
            f"{QUEUE.slots} computation{'s' if QUEUE.slots != 1 else ''} at a time, first come first served; "
            "yours starts by itself. Leaving this page gives up your place.")


def _turn(line: Callable[[int], None]):
    """The queue's context for one computation (none when nested or when nobody waits)."""
    QUEUE.slots = demo.job_slots()
    if getattr(_held, "ticket", False) or QUEUE.slots is None:
        return nullcontext()
    ctx = get_script_run_ctx(suppress_warning=True)
    owner = ctx.session_id if ctx is not None else None

    def alive() -> bool:  # bound to this session: every waiter asks it, so a closed tab is dropped for all
        return session_alive(owner)

    def on_wait(n: int) -> None:
        if not alive():
            st.stop()
        line(n)

    return QUEUE.slot(alive=alive, on_wait=on_wait)


def run(fn: Callable[[Report], T], *, model: str | None, labels: Mapping[str, str] | None = None,
        measure: Measure | None = None, start: str = "Starting…", bar: bool = True) -> T:
    """``fn(progress)`` with the busy flag of ``model`` held (None: it uses no shared model).

    With ``bar``, it first waits for its turn in the queue (in demo mode), then a progress bar shows the
    phase in words (``labels``), done/total, the time spent and the time left (``core.progress``); it is
    removed when ``fn`` returns or fails.
    """
    waiting = st.empty() if bar else None
    try:
        with _turn(lambda n: waiting.info(waiting_line(n), icon=":material/hourglass_top:")) if bar \
                else nullcontext():
            if waiting is not None:
                waiting.empty()
            return _run(fn, model, labels, measure, start, bar)
    except jobs.JobDropped:  # its session ended while it waited: there is no page to answer
        st.stop()
        raise
    finally:
        if waiting is not None:
            waiting.empty()


def _run(fn, model, labels, measure, start, bar):
    widget = st.progress(0.0, text=start) if bar else None
    model_progress = Progress(labels, measure)

    def progress(phase: str, done: int, total: int) -> None:
        if not session_alive():  # the tab is gone: stop here rather than finish work nobody will see
            st.stop()
        snap = model_progress.update(phase, done, total)
        if widget is not None:
            widget.progress(snap.fraction, text=snap.text())

    outer = getattr(_held, "ticket", False)
    _held.ticket = True
    try:
        with resources.busy(model) if model else nullcontext():
            return fn(progress)
    finally:
        _held.ticket = outer
        if widget is not None:
            widget.empty()
