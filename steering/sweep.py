"""A sweep: train vectors on the train split, evaluate the test split over layers x multipliers, store it.

This is the one entry point the CLI, the dashboard and the benchmarks share.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from . import evaluate, fast, metrics
from .datasets import Dataset, Example, load_dataset, split_dataset
from .hooks import POSITION_MODES
from .models import LoadedModel, load_model
from .prompts import DEFAULT_SYSTEM, VARIANTS, EncodedPair, encode_example
from .store import Partial, RunWriter, find_run, settings_key
from .validate import check_prompt_lengths
from .vectors import AGGREGATORS, VectorMeta, aggregate, load_vectors, save_vectors

DEFAULT_MULTIPLIERS = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
MAX_MULTIPLIER = 1e4  # beyond this the steered activations overflow to inf/NaN
# phase ("train" | "test" | "grid"), done, total
PhaseProgress = Callable[[str, int, int], None]


class SweepError(ValueError):
    """Bad sweep settings; the message says what would be valid."""


@dataclass
class SweepConfig:
    model: str = "smollm2-135m"
    dataset: str = ""
    data_dir: str | None = None
    layers: list[int] | None = None  # None: all layers
    multipliers: list[float] = field(default_factory=lambda: list(DEFAULT_MULTIPLIERS))
    n_train: int = 100
    n_test: int = 50
    seed: int = 0
    train_variant: str = "BASE"
    test_variant: str = "BASE"
    aggregator: str = "mean"
    rescale: bool = True
    metric: str = "logit_diff"
    position: str = "answer"
    system: str = DEFAULT_SYSTEM
    balance_train: bool = False  # equal positive-is-A and positive-is-B training items
    reference: bool = False  # force the reference path (same numbers, much slower)

    def validate(self, n_layers: int | None = None) -> None:
        if self.train_variant not in VARIANTS or self.test_variant not in VARIANTS:
            raise SweepError(f"unknown prompt variant: choose from {', '.join(VARIANTS)}")
        if self.aggregator not in AGGREGATORS:
            raise SweepError(f"unknown aggregator '{self.aggregator}': choose one of {', '.join(AGGREGATORS)}")
        if self.metric not in evaluate.METRICS:
            raise SweepError(f"unknown metric '{self.metric}': choose one of {', '.join(evaluate.METRICS)}")
        if self.position not in POSITION_MODES:
            raise SweepError(f"unknown position mode '{self.position}': choose one of {', '.join(POSITION_MODES)}")
        check_multipliers(self.multipliers)
        if self.n_train < 1 or self.n_test < 1:
            raise SweepError("n_train and n_test must be at least 1")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise SweepError(f"seed {self.seed} is not allowed: use a whole number from 0 to {2**63 - 1}")
        if n_layers is not None and self.layers is not None:
            bad = [l for l in self.layers if not 0 <= l < n_layers]
            if bad:
                raise SweepError(f"layer {bad[0]} is out of range: the model has layers 0-{n_layers - 1}")


def parse_layers(spec: str | None, n_layers: int) -> list[int]:
    """'13', '0-29', '1,5,9', 'all' -> sorted layer list, checked against the model."""
    if spec is None or spec.strip() == "all":
        return list(range(n_layers))
    layers: set[int] = set()
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = (int(x) for x in part.split("-", 1))
                if b < a:
                    raise SweepError(f"layer range '{part}' is reversed: write it low-high, e.g. {b}-{a}")
                lo, hi = max(a, 0), min(b, n_layers - 1)  # out-of-range ends are reported below
                layers.update(range(lo, hi + 1))
                layers.update(x for x in (a, b) if not 0 <= x < n_layers)
            elif part:
                layers.add(int(part))
    except ValueError as e:
        if isinstance(e, SweepError):
            raise
        raise SweepError(f"cannot read layers '{spec}': use 13, 0-29, 1,5,9 or all") from None
    if not layers:
        raise SweepError(f"no layers in '{spec}': use 13, 0-29, 1,5,9 or all")
    bad = [l for l in sorted(layers) if not 0 <= l < n_layers]
    if bad:
        raise SweepError(f"layer {bad[0]} is out of range: the model has layers 0-{n_layers - 1}")
    return sorted(layers)


def check_multipliers(values: Sequence[float]) -> None:
    bad = [v for v in values if not np.isfinite(v)]
    if bad:
        raise SweepError(f"multiplier {bad[0]} is not a finite number: use values such as -1.5, 0, 1.5")
    big = [v for v in values if abs(v) > MAX_MULTIPLIER]
    if big:
        raise SweepError(f"multiplier {big[0]:g} is too large: use values between -{MAX_MULTIPLIER:g} and {MAX_MULTIPLIER:g}")
    x = np.asarray(values, dtype=float)
    if len(x) and not ((x - x.mean()) ** 2).sum() > 0:  # the slope fit's denominator (tiny spreads underflow)
        raise SweepError("need at least two distinct multipliers to fit a slope, e.g. -1, 0, 1")
    if len(set(values)) < 2:
        raise SweepError("need at least two distinct multipliers to fit a slope, e.g. -1, 0, 1")


def parse_multipliers(spec: str) -> list[float]:
    try:
        values = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise SweepError(f"cannot read multipliers '{spec}': use comma-separated numbers, e.g. -1,0,1") from None
    check_multipliers(values)
    return values


@dataclass
class SweepResult:
    run_dir: Path
    config: SweepConfig
    propensities: pd.DataFrame
    steerability: pd.DataFrame
    train: pd.DataFrame
    vectors: dict[int, torch.Tensor]
    manifest: dict
    cached: bool = False  # served from the store

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)

    def figures(self, layer: int) -> metrics.DatasetFigures:
        s = self.steerability[self.steerability.layer == layer]
        return metrics.dataset_figures(s.slope.to_numpy(), s.pos_is_A.to_numpy(), s.pos_is_yes.to_numpy())

    def layer_table(self) -> pd.DataFrame:
        rows = []
        for layer in self.layers:
            f = self.figures(layer)
            rows.append({"layer": layer, "mean_slope": f.mean_slope, "median_slope": f.median_slope,
                         "frac_anti": f.frac_anti, "frac_anti_lo": f.frac_anti_lo, "frac_anti_hi": f.frac_anti_hi,
                         "mean_slope_lo": f.mean_slope_lo, "mean_slope_hi": f.mean_slope_hi,
                         "r2_pos_is_A": f.r2_pos_is_A})
        return pd.DataFrame(rows)


def settings_of(cfg: SweepConfig, ds: Dataset, layers: list[int]) -> dict:
    s = asdict(cfg)
    s.pop("reference")  # both paths give the same numbers (tested)
    s.pop("data_dir")
    s.update(layers=layers, dataset_name=ds.name, dataset_sha256=ds.sha256)
    return s


def encode_all(lm: LoadedModel, examples: Sequence[Example], variant: str, ds_name: str, system: str) -> list[EncodedPair]:
    try:
        pairs = [encode_example(lm.tokenizer, e, variant, ds_name, system) for e in examples]
        check_prompt_lengths(lm, examples, pairs)  # before any forward pass: a huge item would exhaust memory
        return pairs
    except ValueError as e:
        raise SweepError(str(e)) from e


def use_fast(lm: LoadedModel, cfg: SweepConfig) -> bool:
    return not cfg.reference and cfg.position in fast.FAST_MODES and fast.check_fast_path(lm)


def _phase(progress: PhaseProgress | None, phase: str) -> Callable[[int, int], None] | None:
    """The (done, total) callback the engine's loops take, reporting as ``phase``."""
    return (lambda done, total: progress(phase, done, total)) if progress else None


def train_vectors(lm: LoadedModel, pairs: Sequence[EncodedPair], cfg: SweepConfig,
                  progress: PhaseProgress | None = None) -> dict[int, torch.Tensor]:
    """Vectors for every layer from one pass per training prompt (or two full passes on the reference path)."""
    step = _phase(progress, "train")
    if use_fast(lm, cfg):
        cache = fast.build_cache(lm, pairs, mode="answer", progress=step)
        pos, neg = fast.activation_differences(cache)
        del cache
    else:
        pos, neg = evaluate.reference_differences(lm, pairs, progress=step)
    stacked = aggregate(pos, neg, cfg.aggregator, cfg.rescale)
    return {l: stacked[l].to(lm.device, lm.dtype) for l in range(lm.n_layers)}


def evaluate_grid(lm: LoadedModel, pairs: Sequence[EncodedPair], vectors: dict[int, torch.Tensor],
                  layers: Sequence[int], cfg: SweepConfig, progress: PhaseProgress | None = None,
                  caches: fast.CacheStore | None = None, cache_key: str | None = None,
                  partial: Partial | None = None) -> np.ndarray:
    """Propensities [example, layer, multiplier] on the fast path when it applies.

    With ``partial``, each finished batch is saved and an interrupted call
    resumes from the batches already done (fast path).
    """
    if not use_fast(lm, cfg):
        return evaluate.reference_grid(lm, pairs, vectors, layers, cfg.multipliers, cfg.position, cfg.metric,
                                       progress=_phase(progress, "grid"))
    cache = caches.get(cache_key) if caches is not None and cache_key else None
    if cache is None:
        cache = fast.build_cache(lm, pairs, cfg.position, cfg.metric, progress=_phase(progress, "test"))
        if caches is not None and cache_key:
            caches.put(cache_key, cache)
    finished = {}
    if partial is not None:  # keep only batches whose examples still match (same batching)
        for number, (index, values) in partial.batches().items():
            if number < len(cache.batches) and cache.batches[number].index == index \
                    and values.shape == (len(index), len(layers), len(cfg.multipliers)):
                finished[number] = values
    return fast.grid(lm, cache, vectors, layers, cfg.multipliers, progress=_phase(progress, "grid"),
                     finished=finished, on_batch=partial.save_batch if partial is not None else None)


def _versions() -> dict:
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__, "pandas": pd.__version__}


def run_sweep(
    cfg: SweepConfig,
    lm: LoadedModel | None = None,
    out: str | Path = "results",
    progress: PhaseProgress | None = None,
    caches: fast.CacheStore | None = None,
    dataset: Dataset | None = None,
) -> SweepResult:
    """Train, evaluate, fit and store; the same settings again are read from the store."""
    ds = dataset or load_dataset(cfg.dataset, cfg.data_dir)
    cfg.dataset = cfg.dataset or ds.name
    lm = lm or load_model(cfg.model)
    layers = cfg.layers if cfg.layers is not None else list(range(lm.n_layers))
    cfg.validate(lm.n_layers)
    settings = settings_of(cfg, ds, layers)
    existing = find_run(out, settings)
    if existing is not None:
        return load_run(existing, cached=True)

    train_ex, test_ex = split_dataset(ds, cfg.n_train, cfg.n_test, cfg.seed, cfg.balance_train)
    train_pairs = encode_all(lm, train_ex, cfg.train_variant, ds.name, cfg.system)
    test_pairs = encode_all(lm, test_ex, cfg.test_variant, ds.name, cfg.system)
    started = time.time()
    key = settings_key(settings)
    partial = Partial(out, settings)  # what an interrupted run of these settings already finished
    vectors = None
    if partial.vectors_path.exists():
        try:
            vectors = {l: v.to(lm.device, lm.dtype) for l, v in load_vectors(partial.vectors_path)[0].items()}
        except Exception:  # noqa: BLE001 - damaged partial vectors are trained again
            partial.clear()
    if vectors is None or sorted(vectors) != sorted(layers):
        all_vectors = train_vectors(lm, train_pairs, cfg, progress)
        vectors = {l: all_vectors[l] for l in layers}
        partial.dir.mkdir(parents=True, exist_ok=True)
        save_vectors(partial.vectors_path, vectors, VectorMeta(model=lm.name, layers=layers))
        partial.checkpoint()
    props = evaluate_grid(lm, test_pairs, vectors, layers, cfg, progress, caches, key, partial)
    elapsed = time.time() - started

    prop_df, steer_df = result_frames(cfg, ds.name, lm.name, test_ex, test_pairs, layers, props)
    train_df = pairs_frame(train_ex, train_pairs)
    manifest = {
        "settings": settings, "key": key, "created": datetime.now(timezone.utc).isoformat(),
        "path": "fast" if use_fast(lm, cfg) else "reference", "seconds": round(partial.prior_seconds + elapsed, 2),
        "seconds_this_attempt": round(elapsed, 2),
        "n_layers_model": lm.n_layers, "hidden_size": lm.hidden_size, "dataset_path": ds.path,
        "versions": _versions(), "device": str(lm.device), "dtype": str(lm.dtype),
        # An unbalanced training split leaves the letter (A minus B) in the vector: worth seeing.
        "train_frac_pos_is_A": float(np.mean([e.pos_is_A for e in train_ex])),
    }
    meta = VectorMeta(model=lm.name, layers=layers, aggregator=cfg.aggregator, rescaled=cfg.rescale,
                      dataset=ds.name, dataset_sha256=ds.sha256, n_train=len(train_ex), seed=cfg.seed,
                      variant=cfg.train_variant, hidden_size=lm.hidden_size)
    with RunWriter(out, settings) as w:
        w.parquet("propensities.parquet", prop_df)
        w.parquet("steerability.parquet", steer_df)
        w.parquet("train.parquet", train_df)
        save_vectors(w.path("vectors.safetensors"), vectors, meta)
        w.json("manifest.json", manifest)
        run_dir = w.commit()
    partial.clear()
    return SweepResult(run_dir, cfg, prop_df, steer_df, train_df, vectors, manifest)


def pairs_frame(examples: Sequence[Example], pairs: Sequence[EncodedPair]) -> pd.DataFrame:
    """One row per example as the model saw it: ids, spurious factors, exact prompt and completions."""
    return pd.DataFrame({
        "example_id": [e.example_id for e in examples],
        "pos_is_A": [e.pos_is_A for e in examples],
        "pos_is_yes": [e.pos_is_yes for e in examples],
        "prompt": [p.prompt for p in pairs],
        "positive": [p.positive for p in pairs],
        "negative": [p.negative for p in pairs],
    })


def result_frames(cfg: SweepConfig, ds_name: str, model_name: str, examples: Sequence[Example],
                  pairs: Sequence[EncodedPair], layers: Sequence[int], props: np.ndarray
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long tables: a row per example x layer x multiplier, and a row per example x layer with its fit."""
    n, nl, nm = props.shape
    mults = np.asarray(cfg.multipliers, dtype=float)
    keys = {"model": model_name, "dataset": ds_name, "train_variant": cfg.train_variant,
            "test_variant": cfg.test_variant}
    ex = pairs_frame(examples, pairs)
    prop_df = pd.DataFrame({
        "example": np.repeat(np.arange(n), nl * nm),
        "layer": np.tile(np.repeat(np.asarray(layers), nm), n),
        "multiplier": np.tile(mults, n * nl),
        "propensity": props.reshape(-1),
    })
    prop_df = prop_df.join(ex, on="example").drop(columns="example").assign(**keys)
    rows = []
    for j, layer in enumerate(layers):
        fit = metrics.per_example(mults, props[:, j, :])
        rows.append(pd.DataFrame({"layer": layer, **fit}).join(ex))
    steer_df = pd.concat(rows, ignore_index=True).assign(**keys)
    return prop_df, steer_df


def load_run(path: str | Path, cached: bool = False) -> SweepResult:
    """Read a stored run (no pickles: parquet, safetensors and JSON only)."""
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text())
    s = dict(manifest["settings"])
    cfg = SweepConfig(**{k: v for k, v in s.items() if k in SweepConfig.__dataclass_fields__})
    vectors, _ = load_vectors(path / "vectors.safetensors")
    return SweepResult(path, cfg, pd.read_parquet(path / "propensities.parquet"),
                       pd.read_parquet(path / "steerability.parquet"), pd.read_parquet(path / "train.parquet"),
                       vectors, manifest, cached)


def live_propensities(lm: LoadedModel, result: SweepResult, layer: int, multiplier: float,
                      caches: fast.CacheStore) -> np.ndarray:
    """Test-split propensities at one (possibly off-grid) multiplier, in the stored example order.

    Reuses the cached prompt states of the run when present (the dashboard's
    slider); otherwise builds them once and keeps them in ``caches``.
    """
    cfg = result.config
    key = result.manifest["key"]
    vector = result.vectors[layer].to(lm.device, lm.dtype)
    if not use_fast(lm, cfg):
        pairs = _test_pairs(lm, result)
        return np.array([evaluate.reference_propensity(lm, p, layer, vector, multiplier, cfg.position, cfg.metric)
                         for p in pairs])
    cache = caches.get(key)
    if cache is None:
        cache = fast.build_cache(lm, _test_pairs(lm, result), cfg.position, cfg.metric)
        caches.put(key, cache)
    return fast.slider(lm, cache, layer, vector, multiplier)


def _test_pairs(lm: LoadedModel, result: SweepResult) -> list[EncodedPair]:
    """Rebuild the test pairs exactly as stored (same prompt text and completions)."""
    first_layer = result.propensities.layer.iloc[0]
    rows = result.propensities[(result.propensities.layer == first_layer)
                               & (result.propensities.multiplier == result.config.multipliers[0])]
    from .prompts import encode_pair

    return [encode_pair(lm.tokenizer, r.prompt, r.positive, r.negative) for r in rows.itertuples()]
