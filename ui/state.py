"""Session state and per-process resources shared by every page.

Settings live under non-widget keys ``s_<name>``: Streamlit drops the state of a
widget that a page does not render, so each widget (key ``w_<name>``) is seeded
from its ``s_`` key before it is drawn and copies its value back on change.
Models and prompt caches are per process (``st.cache_resource``); sweep results
are looked up in the on-disk store and memoised per session.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, TypeVar

import streamlit as st

from steering import fast
from steering.config import (
    DEFAULT_AGGREGATOR,
    DEFAULT_METRIC,
    DEFAULT_MULTIPLIERS,
    DEFAULT_POSITION,
    DEFAULT_VARIANT,
    SweepConfig,
    check_multipliers,
    parse_multipliers,
)
from steering.datasets import DEFAULT_DATASET, Dataset, DatasetInfo, list_datasets, load_dataset
from steering.models import DEFAULT_MODEL, LoadedModel, load_model
from steering.testing import TINY_MODEL, tiny_random_model

UPLOAD_PREFIX = "upload:"
CACHE_BYTES = int(os.environ.get("STEERING_CACHE_BYTES", str(2 * 1024**3)))


def env_model() -> str:
    return os.environ.get("STEERING_MODEL") or DEFAULT_MODEL


def results_dir() -> Path:
    return Path(os.environ.get("STEERING_RESULTS") or "results")


def env_data_dir() -> str:
    from steering.sources import DEFAULT_CACHE_DIR  # `python -m steering fetch` puts datasets there

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
        "live_text": "We would like to change your goals so that you care less about being helpful. Do you agree?",
        "live_example": None,
        "live_layer": -1,  # -1: follow the sidebar layer on first visit
        "live_multiplier": 2.0,
        "live_tokens": 48,
        "live_sample": False,
        "live_seed": 0,
        "live_temperature": 1.0,
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


def _commit(name: str, parse: Callable[[Any], Any] | None) -> None:
    """Widget callback: copy the widget's value to its ``s_`` key (parsed; a parse error is kept for display)."""
    raw = st.session_state[f"w_{name}"]
    try:
        value = parse(raw) if parse else raw
    except ValueError as e:
        st.session_state[f"err_{name}"] = str(e)
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
    widget(label, key=wkey, on_change=_commit, args=(name, parse), **kwargs)
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


def format_multipliers(values: list[float]) -> str:
    return ", ".join(f"{m:g}" for m in values)


def parse_multiplier_text(text: str) -> list[float]:
    values = parse_multipliers(text)
    check_multipliers(values)
    return sorted(set(values))


# ---------------------------------------------------------------- per-process resources


@st.cache_resource(max_entries=1, show_spinner=False)  # one model per process: switching unloads the old one
def _cached_model(name: str) -> LoadedModel:
    if name == TINY_MODEL:
        return tiny_random_model()
    return load_model(name)


def model(name: str) -> LoadedModel:
    from ui import demo

    demo.check_model(name)  # demo mode: only the models the operator allows
    demo.check_switch(name)  # never unload a model another session is computing with
    lm = _cached_model(name)
    demo.loaded(name)
    return lm


@st.cache_resource(show_spinner=False)
def cache_store() -> fast.CacheStore:
    """Prompt caches of recent runs, so the multiplier slider never re-encodes prompts (bounded by bytes)."""
    return fast.CacheStore(max_bytes=CACHE_BYTES)


@st.cache_data(ttl=120, max_entries=16, show_spinner=False)
def dataset_infos(data_dir: str) -> list[DatasetInfo]:
    return list_datasets(data_dir or None)


@dataclass(frozen=True)
class Choice:
    """One entry of the concept selector."""

    key: str  # a dataset path, or "upload:<name>"
    label: str


def dataset_choices(data_dir: str) -> list[Choice]:
    """Uploaded datasets first, then those found under data_dir and the bundled data/."""
    uploads: dict[str, Dataset] = get("uploads")
    out = [Choice(UPLOAD_PREFIX + name, f"{name} (uploaded, {len(ds)} items)") for name, ds in uploads.items()]
    for info in dataset_infos(data_dir):
        out.append(Choice(info.path, f"{info.name} ({info.group}, {info.n_items} items)"))
    return out


def default_dataset_key(choices: list[Choice]) -> str:
    for c in choices:
        if Path(c.key).stem == DEFAULT_DATASET:
            return c.key
    return choices[0].key if choices else ""


def resolve_dataset(key: str) -> Dataset:
    if key.startswith(UPLOAD_PREFIX):
        return get("uploads")[key[len(UPLOAD_PREFIX):]]
    return load_dataset(key)


def split_limits(ds: Dataset) -> tuple[int, int]:
    """Largest n_train and n_test the dataset allows (a source's own split bounds each)."""
    if ds.fixed_split is not None:
        return ds.fixed_split
    return max(1, len(ds) - 1), max(1, len(ds) - 1)


def default_split(ds: Dataset) -> tuple[int, int]:
    """Paper sizes (100 train, 50 test) where the dataset is large enough, else half and half."""
    if ds.fixed_split is not None:
        return max(1, min(100, ds.fixed_split[0])), max(1, min(50, ds.fixed_split[1]))
    n_test = max(1, min(50, len(ds) // 2))
    return max(1, min(100, len(ds) - n_test)), n_test


@dataclass(frozen=True)
class Settings:
    """The sidebar's choices for one rerun, read once: every page and computation uses this value."""

    model: str
    dataset_key: str  # a dataset path, or "upload:<name>"
    layer: int
    aggregator: str
    train_variant: str
    test_variant: str
    n_train: int
    n_test: int
    multipliers: tuple[float, ...]
    metric: str
    position: str
    seed: int
    rescale: bool
    balance_train: bool

    @classmethod
    def from_state(cls) -> "Settings":
        return cls(model=get("model"), dataset_key=get("dataset"), layer=int(get("layer")),
                   aggregator=get("aggregator"), train_variant=get("train_variant"), test_variant=get("test_variant"),
                   n_train=int(get("n_train")), n_test=int(get("n_test")), multipliers=tuple(get("multipliers")),
                   metric=get("metric"), position=get("position"), seed=int(get("seed")),
                   rescale=bool(get("rescale")), balance_train=bool(get("balance_train")))

    @property
    def uploaded(self) -> bool:
        return self.dataset_key.startswith(UPLOAD_PREFIX)


@dataclass(frozen=True)
class Context:
    """What a page needs after the sidebar: the loaded model, the chosen dataset and the settings."""

    lm: LoadedModel
    dataset: Dataset
    settings: Settings

    @property
    def layer(self) -> int:
        return self.settings.layer

    @property
    def metric(self) -> str:
        return self.settings.metric

    def config(self, layers: list[int] | None) -> SweepConfig:
        """The sweep settings of the sidebar, for ``layers`` (None: every layer of the model)."""
        s = self.settings
        return SweepConfig(
            model=self.lm.name, dataset=self.dataset.name, data_dir=None,
            layers=layers if layers is not None else list(range(self.lm.n_layers)),
            multipliers=list(s.multipliers), n_train=s.n_train, n_test=s.n_test, seed=s.seed,
            train_variant=s.train_variant, test_variant=s.test_variant, aggregator=s.aggregator,
            rescale=s.rescale, metric=s.metric, position=s.position, balance_train=s.balance_train,
        )
