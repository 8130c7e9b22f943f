"""How the dashboard shows a failure: bad input as its own message, a bug as one line naming its log.

The same rule as the command line (steering.errors): an InputError, or an OSError the user can fix, is
the user's message; anything else is an internal error, its traceback written to
``<results>/logs/internal-<UTC time>-<pid>.log`` and never shown in the page. STEERING_DEBUG=1 re-raises
it instead, so Streamlit shows the traceback. Callers pass the results directory
(``state.results_dir()``): this module imports nothing from ui, so the lowest ui modules can use it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from steering.errors import debug, internal_line, user_message, write_log

log = logging.getLogger("steering.app")


def message(e: Exception, results_dir: Path, where: str = "") -> str:
    """The one line to show for ``e`` (a bug's traceback is written to a log first)."""
    text = user_message(e)
    if text is not None:
        return text
    if debug():
        raise e
    line = internal_line(e, write_log(e, results_dir, context=f"dashboard{': ' + where if where else ''}"))
    log.error(line)
    return line


def show(e: Exception, results_dir: Path, where: str = "", container=None, prefix: str = "") -> None:
    """``message(e)`` as an error box in ``container`` (default: the page), below what is already drawn."""
    (container or st).error(prefix + message(e, results_dir, where))
