"""What one server process shares between browser sessions: the model, prompt caches, the busy flag.

One model is loaded per process: a session that asks for another model while a
different session is computing on the loaded one is refused with a message (it
would unload the model from under that computation). Every long computation holds
the busy flag for its whole length (``ui.compute.run``).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import streamlit as st

from steering.core.config import env_int
from steering.core.datasets import DatasetInfo, list_datasets
from steering.engine import fast
from steering.engine.models import LoadedModel, load_model
from steering.engine.tiny import TINY_MODEL, tiny_random_model
from steering.errors import ModelError
from ui import demo

DEFAULT_CACHE_BYTES = 2 * 1024**3  # $STEERING_CACHE_BYTES overrides it


@st.cache_resource(max_entries=1, show_spinner=False)  # one model per process: switching unloads the old one
def _cached_model(name: str) -> LoadedModel:
    if name == TINY_MODEL:
        return tiny_random_model()
    return load_model(name)


def model(name: str) -> LoadedModel:
    demo.check_model(name)  # demo mode: only the models the operator allows
    check_switch(name)  # never unload a model another session is computing with
    lm = _cached_model(name)
    loaded(name)
    return lm


@st.cache_resource(show_spinner=False)
def cache_store() -> fast.CacheStore:
    """Prompt caches of recent runs, so the multiplier slider never re-encodes prompts (bounded by bytes)."""
    return fast.CacheStore(max_bytes=env_int("STEERING_CACHE_BYTES", DEFAULT_CACHE_BYTES))


@st.cache_data(ttl=120, max_entries=16, show_spinner=False)
def dataset_infos(data_dir: str) -> list[DatasetInfo]:
    return list_datasets(data_dir or None)


_lock = threading.Lock()
_busy: dict[str, int] = {}  # model name -> computations running on it
_loaded: list[str] = []  # the name of the model the process holds (at most one)


def check_switch(name: str) -> None:
    """Refuse to load ``name`` while another session is computing on the different model that is loaded."""
    with _lock:
        current = _loaded[0] if _loaded else None
        if current is not None and current != name and _busy.get(current, 0) > 0:
            raise ModelError(f"another session is computing with {current}; loading {name} now would unload it. "
                             "Try again when it has finished.")


def loaded(name: str) -> None:
    with _lock:
        _loaded[:] = [name]


@contextmanager
def busy(name: str) -> Iterator[None]:
    """Mark ``name`` as in use for the duration of a computation (model switches wait for it)."""
    with _lock:
        _busy[name] = _busy.get(name, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _busy[name] -= 1
            if not _busy[name]:
                del _busy[name]
