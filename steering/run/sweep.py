"""A sweep: train vectors on the train split, evaluate the test split over layers x multipliers, store it.

This is the one entry point the CLI, the dashboard, the studies and the benchmarks share.
Settings live in ``config``, the stored result in ``results``, the slider in ``live``.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from steering.core.config import SweepConfig, settings_of
from steering.core.damage import Damaged, log, quarantine, read_or_quarantine
from steering.core.datasets import Dataset, Example, load_dataset, repeated_items
from steering.core.prompts import EncodedPair, encode_example
from steering.core.results import SweepResult, load_run, pairs_frame, result_frames
from steering.core.store import Partial, RunWriter, find_run, run_lock, settings_key
from steering.core.swap import encode_for_metric
from steering.core.usable import RunSplit, run_split, usable
from steering.core.vectors import VectorMeta, aggregate, check_steering_scale, load_vectors, save_vectors
from steering.engine import fast
from steering.engine import reference as evaluate
from steering.engine.models import LoadedModel, load_model
from steering.errors import InputError, SweepError
from steering.run.checks import check_prompt_lengths

# phase ("train" | "test" | "grid"), done, total
PhaseProgress = Callable[[str, int, int], None]


ROLES = ("train", "test")


def encode_all(lm: LoadedModel, examples: Sequence[Example], cfg: SweepConfig, ds_name: str,
               role: str) -> list[EncodedPair]:
    """Tokenised pairs as a run with settings ``cfg`` shows them (variant, system prompt, the metric's form).

    ``role="train"``: the training variant with A/B letters, whatever the metric (a vector is read at the
    answer letter); ``role="test"``: the test variant in the form ``cfg.metric`` scores (letter-free for
    answer_text).
    """
    if role not in ROLES:
        raise ValueError(f"encode_all: role must be one of {ROLES}, not {role!r}")  # a caller's bug
    try:
        if role == "train":
            pairs = [encode_example(lm.tokenizer, e, cfg.train_variant, ds_name, cfg.system) for e in examples]
        else:
            pairs = [encode_for_metric(lm.tokenizer, e, cfg.test_variant, ds_name, cfg.system, cfg.metric)
                     for e in examples]
        check_prompt_lengths(lm, examples, pairs)  # before any forward pass: a huge item would exhaust memory
        return pairs
    except InputError as e:  # an item this encoding cannot take (a bug's ValueError is not the user's)
        raise SweepError(str(e)) from e


def use_fast(lm: LoadedModel, cfg: SweepConfig) -> bool:
    return not cfg.reference and cfg.position in fast.FAST_MODES and fast.check_fast_path(lm)


def _phase(progress: PhaseProgress | None, phase: str) -> Callable[[int, int], None] | None:
    """The (done, total) callback the engine's loops take, reporting as ``phase``."""
    return (lambda done, total: progress(phase, done, total)) if progress else None


def train_vectors(lm: LoadedModel, pairs: Sequence[EncodedPair], cfg: SweepConfig,
                  progress: PhaseProgress | None = None, keep: dict | None = None) -> dict[int, torch.Tensor]:
    """Vectors for every layer from one pass per training prompt (or two full passes on the reference path).

    ``keep`` receives the training activations ("diffs": (pos, neg)) for the diagnostics."""
    step = _phase(progress, "train")
    if use_fast(lm, cfg):
        cache = fast.build_cache(lm, pairs, mode="answer", progress=step)
        pos, neg = fast.activation_differences(cache, lm)
        del cache
    else:
        pos, neg = evaluate.reference_differences(lm, pairs, progress=step)
    if keep is not None:
        keep["diffs"] = (pos, neg)
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
    check_steering_scale({layer: vectors[layer] for layer in layers}, cfg.multipliers)
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


@dataclass
class EncodedSplit:
    """A run's test items and their prompts as the run's settings show them."""

    examples: list[Example]
    pairs: list[EncodedPair]


def split_of(cfg: SweepConfig, ds: Dataset) -> RunSplit:
    """The run's train and test items (sizes, seed, balance), drawn from the items usable under its metric."""
    return run_split(ds, cfg.n_train, cfg.n_test, cfg.seed, cfg.balance_train, cfg.metric)


def encode_test_split(lm: LoadedModel, cfg: SweepConfig, ds: Dataset, split: RunSplit | None = None) -> EncodedSplit:
    """The test split of ``cfg`` (``split`` when the caller has it), encoded for its test variant and metric."""
    test_ex = (split or split_of(cfg, ds)).test
    return EncodedSplit(list(test_ex), encode_all(lm, test_ex, cfg, ds.name, "test"))


def fallback_count(lm: LoadedModel, cfg: SweepConfig, pairs: Sequence[EncodedPair]) -> int:
    """How many of ``pairs`` a run with ``cfg`` evaluates on the reference path although it uses the fast one."""
    return len(fast.unserved(lm, pairs)) if use_fast(lm, cfg) else 0


@dataclass
class Evaluation:
    """Given vectors evaluated on a run's test split: propensities [example, layer, multiplier]."""

    split: EncodedSplit
    layers: list[int]
    props: np.ndarray
    reference_fallback: int = 0  # test items the fast path could not serve (evaluated on the reference path)

    def frames(self, cfg: SweepConfig, ds_name: str, model_name: str, train_ex: Sequence[Example] = (),
               train_pairs: Sequence[EncodedPair] = ()) -> dict[str, pd.DataFrame]:
        """The tables a run stores (file name -> table)."""
        prop_df, steer_df = result_frames(cfg, ds_name, model_name, self.split.examples, self.split.pairs,
                                          self.layers, self.props)
        return {"propensities.parquet": prop_df, "steerability.parquet": steer_df,
                "train.parquet": pairs_frame(train_ex, train_pairs),
                "test.parquet": pairs_frame(self.split.examples, self.split.pairs)}


def evaluate_given_vectors(lm: LoadedModel, cfg: SweepConfig, ds: Dataset, vectors: dict[int, torch.Tensor],
                           layers: Sequence[int] | None = None, progress: PhaseProgress | None = None,
                           caches: fast.CacheStore | None = None, cache_key: str | None = None,
                           partial: Partial | None = None, split: EncodedSplit | None = None) -> Evaluation:
    """The one evaluation of a run: ``vectors`` on the run's test split, with the run's settings.

    The sweep, an imported vector and entanglement all score through here, so the variant, the metric's
    prompt form, the position, the multipliers and the path (fast or reference) are the run's.
    ``layers`` default to the vectors' layers; ``split`` is the already encoded ``encode_test_split(lm,
    cfg, ds)`` when a caller has it (the sweep checks prompt lengths before training; entanglement scores
    several vectors on one split).
    """
    layers = list(layers) if layers is not None else sorted(vectors)
    split = split if split is not None else encode_test_split(lm, cfg, ds)
    props = evaluate_grid(lm, split.pairs, vectors, layers, cfg, progress, caches, cache_key, partial)
    return Evaluation(split, layers, props, fallback_count(lm, cfg, split.pairs))


def base_manifest(lm: LoadedModel, cfg: SweepConfig, ds: Dataset, settings: dict) -> dict:
    """The manifest fields every stored run has, trained or imported."""
    return {"settings": settings, "key": settings_key(settings), "created": datetime.now(timezone.utc).isoformat(),
            "path": "fast" if use_fast(lm, cfg) else "reference", "n_layers_model": lm.n_layers,
            "hidden_size": lm.hidden_size, "dataset_path": ds.path, "versions": _versions(),
            "device": str(lm.device), "dtype": str(lm.dtype),
            **({"path_note": lm.fast_note} if lm.fast_note else {}), **skipped_fields(ds, cfg)}


def skipped_fields(ds: Dataset, cfg: SweepConfig) -> dict:
    """The manifest's record of the items this run's metric cannot use (left out of its split)."""
    skipped = usable(ds, cfg.metric).skipped
    return {"n_skipped_items": len(skipped), "skipped_items": [s.as_dict() for s in skipped]}


def fallback_fields(train: int, test: int) -> dict:
    """The manifest's record of the items evaluated on the reference path where the fast path could not."""
    return {"reference_fallback_items": train + test, "reference_fallback_by_split": {"train": train, "test": test}}


def _versions() -> dict:
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__, "pandas": pd.__version__}


def train_key(cfg: SweepConfig, ds: Dataset, model_name: str) -> str:
    """Key of the settings that determine the trained vectors (not the test variant, layers or multipliers).

    Content-addresses the vector store: every test variant of a study reuses one training.
    """
    key = {"model": model_name, "dataset_sha256": ds.sha256, "dataset_name": ds.name,
           "train_variant": cfg.train_variant, "n_train": cfg.n_train, "n_test": cfg.n_test,
           "seed": cfg.seed, "balance_train": cfg.balance_train, "aggregator": cfg.aggregator,
           "rescale": cfg.rescale, "system": cfg.system}
    skipped = usable(ds, cfg.metric).digest()
    if skipped:  # the metric left items out of the pool, so the training split differs (absent: keys unchanged)
        key["unusable"] = skipped
    return settings_key(key)


def vector_store_path(out: str | Path, key: str) -> Path:
    return Path(out) / ".vectors" / f"{key}.safetensors"  # hidden: a cache beside the runs, not a run


def trained_vectors(lm: LoadedModel, ds: Dataset, cfg: SweepConfig, train_ex: Sequence[Example],
                    train_pairs: Sequence[EncodedPair], out: str | Path | None,
                    progress: PhaseProgress | None = None, keep: dict | None = None
                    ) -> tuple[dict[int, torch.Tensor], bool]:
    """Vectors for every layer, read from the vector store when these training settings were trained before.

    Returns (vectors, reused). ``out=None`` skips the store (workers that must not write).
    """
    path = vector_store_path(out, train_key(cfg, ds, lm.name)) if out is not None else None
    stored = read_stored_vectors(out, path, lm.n_layers, lm.hidden_size) if path is not None else None
    if stored is not None:
        return {l: v.to(lm.device, lm.dtype) for l, v in stored.items()}, True
    vectors = train_vectors(lm, train_pairs, cfg, progress, keep)
    if path is not None:
        save_vectors(path, vectors, vector_meta(lm, ds, cfg, train_ex, list(range(lm.n_layers))))
    return vectors, False


def read_stored_vectors(out: str | Path, path: Path, n_layers: int, hidden: int) -> dict[int, torch.Tensor] | None:
    """A vector-store entry, checked (its sidecar, every layer, the model's size): a damaged one, tensors
    or sidecar, is quarantined with a note and trained again."""
    def read(p: Path) -> dict[int, torch.Tensor]:
        vectors, meta = load_vectors(p)
        if meta is None:
            raise Damaged(f"{p.with_suffix('.json').name} is missing")
        if sorted(vectors) != list(range(n_layers)) or any(v.numel() != hidden for v in vectors.values()):
            raise Damaged(f"holds {len(vectors)} vectors, the model has {n_layers} layers of size {hidden}")
        return vectors

    def damaged(message: str) -> None:
        quarantine(out, Path(path).with_suffix(".json"), "sidecar of damaged stored vectors")  # retrained below
        log.warning(message)

    return read_or_quarantine(out, path, read, "stored vectors", damaged)


def vector_meta(lm: LoadedModel, ds: Dataset, cfg: SweepConfig, train_ex: Sequence[Example],
                layers: list[int]) -> VectorMeta:
    return VectorMeta(model=lm.name, layers=layers, aggregator=cfg.aggregator, rescaled=cfg.rescale,
                      dataset=ds.name, dataset_sha256=ds.sha256, n_train=len(train_ex), seed=cfg.seed,
                      variant=cfg.train_variant, hidden_size=lm.hidden_size)


@dataclass
class RunOutputs:
    """Everything a run stores, computed without touching its run directory (a worker can return it)."""

    settings: dict
    config: SweepConfig
    frames: dict[str, pd.DataFrame]  # file name -> table: propensities, steerability, train, test
    vectors: dict[int, torch.Tensor]  # the run's layers
    meta: VectorMeta
    manifest: dict


def compute_run(cfg: SweepConfig, lm: LoadedModel, ds: Dataset, out: str | Path | None = "results",
                progress: PhaseProgress | None = None, caches: fast.CacheStore | None = None,
                vectors: dict[int, torch.Tensor] | None = None) -> RunOutputs:
    """Train (or reuse) the vectors and evaluate the grid; with ``out``, resume from and save partial work.

    ``vectors``: every layer's vectors already trained for these training settings (a Ray worker's
    memo, so a group trains once without a shared disk); training is then skipped.
    """
    given = vectors
    layers = cfg.layers if cfg.layers is not None else list(range(lm.n_layers))
    cfg.validate(lm.n_layers)
    settings = settings_of(cfg, ds, layers)
    key = settings_key(settings)
    split = split_of(cfg, ds)
    train_ex = split.train
    train_pairs = encode_all(lm, train_ex, cfg, ds.name, "train")
    test = encode_test_split(lm, cfg, ds, split)  # before training: a bad test item fails before any forward pass
    started = time.time()
    partial = Partial(out, settings) if out is not None else None  # what an interrupted run already finished
    reused, keep = False, {}
    if cfg.diagnostics and caches is None:
        caches = fast.CacheStore()  # the diagnostics reuse the test prompt states
    vectors = None
    if partial is not None and partial.vectors_path.exists():
        try:
            vectors = {l: v.to(lm.device, lm.dtype) for l, v in load_vectors(partial.vectors_path)[0].items()}
        except Exception:  # noqa: BLE001 - damaged partial vectors are trained again
            partial.clear()
    if vectors is None or sorted(vectors) != sorted(layers):
        all_vectors, reused = (given, True) if given is not None else \
            trained_vectors(lm, ds, cfg, train_ex, train_pairs, out, progress, keep)
        vectors = {l: all_vectors[l] for l in layers}
        if partial is not None:
            partial.ensure_dir()
            save_vectors(partial.vectors_path, vectors, VectorMeta(model=lm.name, layers=layers))
            partial.checkpoint()
    ev = evaluate_given_vectors(lm, cfg, ds, vectors, layers, progress, caches, key, partial, split=test)
    frames = ev.frames(cfg, ds.name, lm.name, train_ex, train_pairs)
    diag = None
    if cfg.diagnostics:
        from steering.run.diagnostics import (
            compute as diagnostics,  # an analysis above the run; imported only when asked for
        )

        diag = diagnostics.compute(lm, cfg, ds.name, layers, vectors, ev.props, test.examples, test.pairs,
                                   train_pairs, keep.get("diffs"), caches.get(key) if use_fast(lm, cfg) else None,
                                   use_fast(lm, cfg), progress, diagnostics.Stages(partial.dir if partial else None))
        for name, values in diag.columns.items():
            frames["steerability.parquet"][name] = values
        frames.update(diag.frames)
    elapsed = time.time() - started
    manifest = {
        **base_manifest(lm, cfg, ds, settings),
        # the total includes earlier, interrupted attempts of the same run (resume)
        "seconds": round((partial.prior_seconds if partial is not None else 0.0) + elapsed, 2),
        "seconds_this_attempt": round(elapsed, 2),
        # An unbalanced training split leaves the letter (A minus B) in the vector: worth seeing.
        "train_frac_pos_is_A": float(np.mean([e.pos_is_A for e in train_ex])),
        "vectors_reused": reused, "train_key": train_key(cfg, ds, lm.name),
        # The same item text in both splits (a file with duplicates): named so that readers can warn.
        "test_items_in_train": repeated_items(train_ex, test.examples),
        **fallback_fields(fallback_count(lm, cfg, train_pairs), ev.reference_fallback),  # stored vectors too
    }
    if diag is not None:
        manifest["diagnostics"] = diag.summary
    return RunOutputs(settings, cfg, frames, vectors, vector_meta(lm, ds, cfg, train_ex, layers), manifest)


def store_run(out: str | Path, outputs: RunOutputs) -> SweepResult:
    """Write a computed run atomically into the store (the driver's job when workers compute)."""
    with run_lock(out, outputs.settings), RunWriter(out, outputs.settings) as w:
        for name, df in outputs.frames.items():
            w.parquet(name, df)
        save_vectors(w.path("vectors.safetensors"), outputs.vectors, outputs.meta)
        w.json("manifest.json", outputs.manifest)
        run_dir = w.commit()
        Partial(out, outputs.settings).clear()  # under the lock: no writer of this run is using it
    f = outputs.frames
    return SweepResult(run_dir, outputs.config, f["propensities.parquet"], f["steerability.parquet"],
                       f["train.parquet"], outputs.vectors, outputs.manifest, test=f["test.parquet"])


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
    # One writer per run at a time: a second identical sweep waits, then reads the first one's run.
    with run_lock(out, settings):
        existing = find_run(out, settings)
        if existing is not None:
            served = read_or_quarantine(out, existing, lambda p: load_run(p, cached=True), "stored run")
            if served is not None:
                return served
        return store_run(out, compute_run(cfg, lm, ds, out, progress, caches))
