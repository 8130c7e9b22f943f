"""The sidebar's settings as one value (Settings), what a page works on (Context), and the concept list.

Session access is ``ui.session`` and per-process resources are ``ui.resources``; the names a
page uses from them are re-exported here so that a page imports one module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from steering.core.config import (
    SweepConfig,
    check_multipliers,
    parse_multipliers,
)
from steering.core.datasets import (  # noqa: F401 - default_split re-exported for the sidebar
    DEFAULT_DATASET,
    Dataset,
    default_split,
)
from ui import demo
from ui.resources import cache_store, check_request, dataset_infos, model, painted, ready  # noqa: F401 - re-exported
from ui.session import (  # noqa: F401 - re-exported for pages
    SessionMemo,
    bound,
    defaults,
    env_data_dir,
    env_model,
    error_of,
    get,
    init_state,
    put,
    results_dir,
)

if TYPE_CHECKING:  # torch loads in the background while the page paints (ui.resources)
    from steering.engine.models import LoadedModel

UPLOAD_PREFIX = demo.UPLOAD_PREFIX


def format_multipliers(values: list[float]) -> str:
    return ", ".join(f"{m:g}" for m in values)


def parse_multiplier_text(text: str) -> list[float]:
    values = parse_multipliers(text)
    check_multipliers(values)
    return sorted(set(values))


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
    return demo.load_offered(key, get("data_dir"))  # demo mode: only a file the concept list offers


def split_limits(ds: Dataset) -> tuple[int, int]:
    """Largest n_train and n_test the dataset allows (a source's own split bounds each)."""
    if ds.fixed_split is not None:
        return ds.fixed_split
    return max(1, len(ds) - 1), max(1, len(ds) - 1)


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

    lm: "LoadedModel"
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
