"""What one server process shares between browser sessions: the model, prompt caches, the busy flag.

One model is loaded per process: a session that asks for another model while a
different session is computing on the loaded one is refused with a message (it
would unload the model from under that computation). Every long computation holds
the busy flag for its whole length (``ui.compute.run``).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import streamlit as st

from steering.core.config import env_int
from steering.core.datasets import DatasetInfo, list_datasets
from steering.core.registry import TINY_MODEL
from steering.errors import ModelError
from ui import demo

if TYPE_CHECKING:  # torch and transformers load in the background thread, not when a page is drawn
    from steering.engine.fast import CacheStore
    from steering.engine.models import LoadedModel

DEFAULT_CACHE_BYTES = 2 * 1024**3  # $STEERING_CACHE_BYTES overrides it


def _load(name: str) -> "LoadedModel":
    # Imported here: a page paints its title and settings before torch and transformers have loaded.
    if name == TINY_MODEL:
        from steering.engine.tiny import tiny_random_model

        return tiny_random_model()
    from steering.engine.models import load_model

    return load_model(name)


_slot_lock = threading.Lock()
_slot: dict[str, Future] = {}  # one model per process: the one loading or loaded (switching drops the old one)


def start_loading(name: str) -> Future:
    """The model ``name`` as a future, its load started in a background thread unless it is loaded or loading.

    A failed load is forgotten once it has been reported, so the next visit tries again."""
    with _slot_lock:
        fut = _slot.get(name)
        if fut is not None and not (fut.done() and fut.exception() is not None):
            return fut
        fut = Future()
        _slot.clear()  # never two models at once: the old one is freed when no computation holds it
        _slot[name] = fut

    def work() -> None:
        try:
            fut.set_result(_load(name))
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits for the model
            fut.set_exception(e)

    threading.Thread(target=work, name=f"load {name}", daemon=True).start()
    return fut


def ready(name: str) -> bool:
    """True when ``name`` has finished loading (or failed to): asking for it will not wait."""
    with _slot_lock:
        fut = _slot.get(name)
    return fut is not None and fut.done()


# Set once a visitor's page has drawn its settings: the launcher's preload waits for it (or a few seconds),
# as both are CPU-bound Python on one interpreter and the first paint should not share it.
painted = threading.Event()


def check_request(name: str) -> None:
    """Raise unless ``name`` may be loaded for this visitor now."""
    demo.check_model(name)  # demo mode: only the models the operator allows
    check_switch(name)  # never unload a model another session is computing with


def model(name: str) -> "LoadedModel":
    """The loaded model ``name``, waiting for its load (started now unless already under way)."""
    check_request(name)
    lm = start_loading(name).result()
    loaded(name)
    return lm


def preload(name: str) -> Future:
    """Start loading ``name`` at server start, before any visitor asks (``ui.launch``)."""
    demo.check_model(name)
    return start_loading(name)


@st.cache_resource(show_spinner=False)
def cache_store() -> "CacheStore":
    """Prompt caches of recent runs, so the multiplier slider never re-encodes prompts (bounded by bytes)."""
    from steering.engine.fast import CacheStore

    return CacheStore(max_bytes=env_int("STEERING_CACHE_BYTES", DEFAULT_CACHE_BYTES))


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
