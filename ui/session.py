"""This browser session's settings: the ``s_`` keys, widgets bound to them, and a per-session memo.

Settings live under non-widget keys ``s_<name>``: Streamlit drops the state of a
widget that a page does not render, so each widget (key ``w_<name>``) is seeded
from its ``s_`` key before it is drawn and copies its value back on change.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable, TypeVar

import streamlit as st

from steering.core.config import (
    DEFAULT_AGGREGATOR,
    DEFAULT_LADDER,
    DEFAULT_METRIC,
    DEFAULT_MULTIPLIERS,
    DEFAULT_POSITION,
    DEFAULT_VARIANT,
    PPL_BOUND,
)
from steering.core.prompts import DEMO_PROMPT
from steering.core.registry import DEFAULT_MODEL
from ui import failures


def env_model() -> str:
    return os.environ.get("STEERING_MODEL") or DEFAULT_MODEL


def results_dir() -> Path:
    return Path(os.environ.get("STEERING_RESULTS") or "results")


def env_data_dir() -> str:
    from steering.core.sources import DEFAULT_CACHE_DIR  # `python -m steering fetch` puts datasets there

    return os.environ.get("STEERING_DATA_DIR") or (str(DEFAULT_CACHE_DIR) if DEFAULT_CACHE_DIR.is_dir() else "")


def defaults() -> dict[str, Any]:
    return {
        "model": env_model(),
        "data_dir": env_data_dir(),
        "dataset": "",  # a dataset file path, or "upload:<name>"; resolved on first use
        "layer": None,  # the model's middle layer once it is loaded
        "aggregator": DEFAULT_AGGREGATOR,
        "train_variant": DEFAULT_VARIANT,
        "test_variant": DEFAULT_VARIANT,
        "n_train": None,  # sized to the dataset once it is known
        "n_test": None,
        "multipliers": list(DEFAULT_MULTIPLIERS),
        "metric": DEFAULT_METRIC,
        "position": DEFAULT_POSITION,
        "seed": 0,
        "rescale": True,
        "balance_train": False,
        "slider_multiplier": 1.0,
        # Inspect page
        "only_anti": False,
        "sort_by": "slope",
        "sort_desc": False,
        "example": None,
        "inspect_multiplier": 2.0,
        "inspect_tokens": 48,
        # Live steering page
        "live_source": "Free prompt",
        "live_text": DEMO_PROMPT,
        "live_example": None,
        "live_layer": -1,  # -1: follow the sidebar layer on first visit
        "live_multiplier": 2.0,
        "live_tokens": 48,
        "live_sample": False,
        "live_seed": 0,
        "live_temperature": 1.0,
        # the multiplier ladder (Live steering and Inspect)
        "ladder_multipliers": list(DEFAULT_LADDER),
        "ladder_bound": PPL_BOUND,
        "uploads": {},  # name -> Dataset parsed from an upload, kept for the session
        "upload_error": None,
    }


def init_state() -> None:
    """Set every ``s_`` default once per session (later runs keep the user's values)."""
    for name, value in defaults().items():
        st.session_state.setdefault(f"s_{name}", value)


def get(name: str) -> Any:
    return st.session_state[f"s_{name}"]


def put(name: str, value: Any) -> None:
    st.session_state[f"s_{name}"] = value


def _commit(name: str, parse: Callable[[Any], Any] | None, options: list | None = None) -> None:
    """Widget callback: copy the widget's value to its ``s_`` key (parsed; a parse error is kept for display).

    A choice widget's value that is not one of its options (only a forged message sends one) is ignored."""
    raw = st.session_state[f"w_{name}"]
    if options is not None and raw not in options:
        return
    try:
        value = parse(raw) if parse else raw
    except Exception as e:  # noqa: BLE001 - a callback: an escaping bug would be a traceback in the page
        st.session_state[f"err_{name}"] = failures.message(e, results_dir(), f"reading the {name} setting")
        st.session_state[f"raw_{name}"] = raw
        return
    st.session_state.pop(f"err_{name}", None)
    st.session_state.pop(f"raw_{name}", None)
    put(name, value)


def bound(widget: Callable[..., Any], label: str, name: str, *, fmt: Callable[[Any], Any] | None = None,
          parse: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
    """Draw ``widget`` (e.g. ``st.sidebar.selectbox``) bound to setting ``name``; returns the setting's value."""
    wkey = f"w_{name}"
    st.session_state[wkey] = st.session_state.get(f"raw_{name}", fmt(get(name)) if fmt else get(name))
    options = list(kwargs["options"]) if "options" in kwargs else None
    widget(label, key=wkey, on_change=_commit, args=(name, parse, options), **kwargs)
    return get(name)


def error_of(name: str) -> str | None:
    """The message of the last value a bound widget could not accept (the setting kept its previous value)."""
    return st.session_state.get(f"err_{name}")


T = TypeVar("T")


class SessionMemo:
    """A bounded, least-recently-used memo in this browser session (one per ``name``)."""

    def __init__(self, name: str, size: int):
        self.key, self.size = f"memo_{name}", size

    def _items(self) -> OrderedDict:
        return st.session_state.setdefault(self.key, OrderedDict())

    def get(self, key: Hashable) -> Any | None:
        items = self._items()
        if key in items:
            items.move_to_end(key)
            return items[key]
        return None

    def put(self, key: Hashable, value: T) -> T:
        items = self._items()
        items[key] = value
        items.move_to_end(key)
        while len(items) > self.size:
            items.popitem(last=False)
        return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        hit = self.get(key)
        return hit if hit is not None else self.put(key, compute())
