"""A sweep: train vectors on the train split, evaluate the test split over layers x multipliers, store it.

This is the one entry point the CLI, the dashboard, the studies and the benchmarks share.
Settings live in ``config``, the stored result in ``results``, the slider in ``live``.
"""

from __future__ import annotations

import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from . import evaluate, fast
from .config import SweepConfig, SweepError, settings_of
from .datasets import Dataset, Example, load_dataset, split_dataset
from .models import LoadedModel, load_model
from .prompts import EncodedPair, encode_example
from .results import SweepResult, load_run, pairs_frame, result_frames
from .store import Partial, RunWriter, find_run, settings_key
from .vectors import VectorMeta, aggregate, load_vectors, save_vectors

# phase ("train" | "test" | "grid"), done, total
PhaseProgress = Callable[[str, int, int], None]


def encode_all(lm: LoadedModel, examples: Sequence[Example], variant: str, ds_name: str, system: str) -> list[EncodedPair]:
    try:
        return [encode_example(lm.tokenizer, e, variant, ds_name, system) for e in examples]
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
    if partial.vectors_path.exists():
        vectors = {l: v.to(lm.device, lm.dtype) for l, v in load_vectors(partial.vectors_path)[0].items()}
    else:
        all_vectors = train_vectors(lm, train_pairs, cfg, progress)
        vectors = {l: all_vectors[l] for l in layers}
        partial.dir.mkdir(parents=True, exist_ok=True)
        save_vectors(partial.vectors_path, vectors, VectorMeta(model=lm.name, layers=layers))
    props = evaluate_grid(lm, test_pairs, vectors, layers, cfg, progress, caches, key, partial)
    elapsed = time.time() - started

    prop_df, steer_df = result_frames(cfg, ds.name, lm.name, test_ex, test_pairs, layers, props)
    train_df = pairs_frame(train_ex, train_pairs)
    test_df = pairs_frame(test_ex, test_pairs)
    manifest = {
        "settings": settings, "key": key, "created": datetime.now(timezone.utc).isoformat(),
        "path": "fast" if use_fast(lm, cfg) else "reference", "seconds": round(elapsed, 2),
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
        w.parquet("test.parquet", test_df)
        save_vectors(w.path("vectors.safetensors"), vectors, meta)
        w.json("manifest.json", manifest)
        run_dir = w.commit()
    partial.clear()
    return SweepResult(run_dir, cfg, prop_df, steer_df, train_df, vectors, manifest, test=test_df)
