"""Side effects of a stored run: neutral-text KL and perplexity, capability on an unrelated
multiple-choice set, behaviour gain on validation and test, and the recommended setting.

Stored beside the run's own files as ``side_effects.parquet`` (one row per layer x multiplier)
with its settings and recommendation under ``"side_effects"`` in the run's manifest; both are
written atomically. The expensive part (neutral text, per layer) resumes from a ``.partial-`` folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from steering.analyses.side_effects import neutral, tradeoff
from steering.core.damage import read_or_quarantine, require_columns
from steering.core.datasets import Dataset, list_datasets, load_dataset
from steering.core.files import atomic_write, name_lock
from steering.core.results import SweepResult
from steering.core.store import Partial, settings_key
from steering.engine.models import LoadedModel
from steering.errors import DatasetError, SweepError

PhaseProgress = Callable[[str, int, int], None]
BUNDLED_MC = Path(__file__).resolve().parents[3] / "data" / "mc" / "general-knowledge.jsonl"
FILE = "side_effects.parquet"
COLUMNS = ("layer", "multiplier", "kl", "ppl", "ppl_ratio", "mc_accuracy", "mc_prob", "mc_drop",
           "val_gain", "val_frac_moved", "test_gain", "test_frac_moved")


@dataclass
class SideEffectsConfig:
    text: str | None = None  # neutral text file (.txt paragraphs or .jsonl {"text"}); None: the bundled set
    mc: str | None = None  # multiple-choice file or dataset name; None: TruthfulQA mc1 if found, else bundled
    n_texts: int = 4  # a subset of the bundled set keeps a 30-layer sweep affordable on a 2-core CPU
    text_tokens: int = 64  # each text cut to this many tokens
    n_mc: int = 40
    val_frac: float = 0.25  # the last part of the training split: held out of a refit vector, to choose on
    kl_budget: float = tradeoff.DEFAULT_KL_BUDGET

    def validate(self) -> None:
        if self.n_texts < 1 or self.text_tokens < 2 or self.n_mc < 1:
            raise SweepError("side effects need n_texts >= 1, text_tokens >= 2 and n_mc >= 1")
        if not 0 < self.val_frac < 1:
            raise SweepError(f"val_frac must be between 0 and 1, got {self.val_frac}")
        if not self.kl_budget >= 0:
            raise SweepError(f"the KL budget must be >= 0 nats per token, got {self.kl_budget}")


def mc_dataset(mc: str | None, data_dir: str | None) -> Dataset:
    """The capability set: the given file/name; else TruthfulQA mc1 from the data directory; else bundled."""
    if mc:
        return load_dataset(mc, data_dir)
    if data_dir:
        if any(i.name == "truthfulqa" for i in list_datasets(data_dir, include_bundled=False)):
            return load_dataset("truthfulqa", data_dir)
    return load_dataset(str(BUNDLED_MC))


def capability(lm: LoadedModel, mc: Dataset, n: int, vectors, layers, cfg,
               progress: PhaseProgress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy, mean P(correct) over the two options), each [layer, multiplier], steering as the run does."""
    from steering.run.sweep import encode_all, evaluate_grid  # analyses sit above the sweep

    mc_cfg = replace(cfg, test_variant="BASE", metric="logprob_diff")  # the letter is the answer: A/B prompts
    pairs = encode_all(lm, mc.examples[:n], mc_cfg, mc.name, "test")
    lp = evaluate_grid(lm, pairs, vectors, layers, mc_cfg, progress=_rename(progress, "mc"))
    return (lp > 0).mean(0), (1 / (1 + np.exp(-lp))).mean(0)


def validation_split(ds: Dataset, cfg, val_frac: float) -> tuple[list, list]:
    """(fit, validation): the training split with its last ``val_frac`` held out. The test split is not touched."""
    from steering.run.sweep import split_of  # analyses sit above the sweep

    train_ex = split_of(cfg, ds).train  # the run's own training items (usable under its metric)
    if len(train_ex) < 2:
        raise SweepError("side effects need at least 2 training items: one to fit the vector, one to validate")
    n_val = min(len(train_ex) - 1, max(1, int(round(len(train_ex) * val_frac))))
    return list(train_ex[:-n_val]), list(train_ex[-n_val:])


def validation_propensities(lm: LoadedModel, ds: Dataset, cfg, layers, val_frac: float,
                            progress: PhaseProgress | None = None) -> tuple[np.ndarray, int]:
    """Propensities [example, layer, multiplier] of the validation items, steered by vectors trained on the
    rest of the training split only (the validation items never shape the vector measured on them), and
    the number of items those vectors were fitted on. Prompted like the test split.

    The run's own vectors (trained on the whole training split) are what the test gain reports: choose on
    held-out items, refit on everything, report on test.
    """
    from steering.run.sweep import encode_all, evaluate_grid, train_vectors

    fit, val = validation_split(ds, cfg, val_frac)
    fit_pairs = encode_all(lm, fit, cfg, ds.name, "train")
    held_out = train_vectors(lm, fit_pairs, cfg, progress=_rename(progress, "val"))
    pairs = encode_all(lm, val, cfg, ds.name, "test")
    vectors = {l: held_out[l] for l in layers}
    return evaluate_grid(lm, pairs, vectors, layers, cfg, progress=_rename(progress, "val")), len(fit)


def test_propensities(result: SweepResult) -> np.ndarray:
    """The run's stored test propensities as [example, layer, multiplier]."""
    p = result.propensities
    cube = p.pivot_table(index="example_id", columns=["layer", "multiplier"], values="propensity")
    layers, mults = result.layers, sorted(result.config.multipliers)
    cube = cube.reindex(columns=pd.MultiIndex.from_product([layers, mults]))
    return cube.to_numpy().reshape(len(cube), len(layers), len(mults))


def _rename(progress: PhaseProgress | None, phase: str):
    return (lambda step, done, total: progress(f"{phase}:{step}", done, total)) if progress else None


def side_settings(result: SweepResult, se: SideEffectsConfig, text_sha: str, mc: Dataset) -> dict:
    s = asdict(se)
    s.pop("kl_budget")  # only the recommendation depends on it, recomputed from the table
    s.update(run=result.manifest["key"], text_sha256=text_sha, mc_name=mc.name, mc_sha256=mc.sha256,
             validation="held out of the vector's training")  # older tables validated on training items
    return s


def table(layers, mults, kl_ppl, acc, prob, val_props, test_props) -> pd.DataFrame:
    """One row per (layer, multiplier), columns ``COLUMNS``."""
    vg, vf = tradeoff.gains(val_props, mults)
    tg, tf = tradeoff.gains(test_props, mults)
    zero = int(np.flatnonzero(np.asarray(mults) == 0)[0])
    L, M = len(layers), len(mults)
    ppl = kl_ppl[..., 1]
    return pd.DataFrame({
        "layer": np.repeat(layers, M), "multiplier": np.tile(np.asarray(mults, float), L),
        "kl": kl_ppl[..., 0].ravel(), "ppl": ppl.ravel(), "ppl_ratio": (ppl / ppl[:, [zero]]).ravel(),
        "mc_accuracy": acc.ravel(), "mc_prob": prob.ravel(), "mc_drop": (acc[:, [zero]] - acc).ravel(),
        "val_gain": vg.ravel(), "val_frac_moved": vf.ravel(), "test_gain": tg.ravel(), "test_frac_moved": tf.ravel(),
    })


def load(result: SweepResult) -> pd.DataFrame | None:
    """The stored table, checked (its columns, one row per layer x multiplier); a damaged one is moved to
    quarantine/ with a note and None is returned, so it is computed again."""
    path = Path(result.run_dir) / FILE
    if "side_effects" not in result.manifest:
        return None
    rows = len(result.layers) * len(result.config.multipliers)

    def read(p: Path) -> pd.DataFrame:
        df = pd.read_parquet(p)
        require_columns(df, COLUMNS, FILE, rows, numeric=COLUMNS)
        return df

    return read_or_quarantine(Path(result.run_dir).parent, path, read, "side-effect table")


def ensure(lm: LoadedModel, result: SweepResult, ds: Dataset, se: SideEffectsConfig, out: str | Path,
           data_dir: str | None = None, progress: PhaseProgress | None = None) -> tuple[pd.DataFrame, dict, bool]:
    """The run's side-effect table and recommendation: from the store when these settings were computed
    before, else computed (resuming a partial computation) and stored. Returns (table, recommendation, cached)."""
    se.validate()
    texts = neutral.read_texts(se.text)
    text_sha = settings_key({"texts": texts})
    try:
        mc = mc_dataset(se.mc, data_dir)
    except DatasetError as e:
        raise DatasetError(f"multiple-choice set: {e}") from e
    settings = side_settings(result, se, text_sha, mc)
    key = settings_key(settings)
    run_dir = Path(result.run_dir)
    # One writer per run's side effects: a second identical request waits and reads the first one's table;
    # the manifest's read-modify-write below never loses another writer's update.
    with name_lock(run_dir.parent, f"{run_dir.name}--side-effects"):
        stored = _stored_entry(run_dir, result)
        df = load(result) if stored.get("key") == key else None
        if df is not None:
            return df, tradeoff.recommend(df, se.kl_budget), True
        return _compute(lm, result, ds, se, out, data_dir, progress, texts, mc, settings, key)


def _stored_entry(run_dir: Path, result: SweepResult) -> dict:
    """The manifest's side-effect entry as stored now (another writer may have added it); {} if unusable."""
    try:
        entry = json.loads((run_dir / "manifest.json").read_text()).get("side_effects", {})
    except (OSError, ValueError, AttributeError):
        entry = result.manifest.get("side_effects", {})
    if isinstance(entry, dict) and isinstance(entry.get("key"), str):
        result.manifest["side_effects"] = entry
        return entry
    return {}


def _compute(lm: LoadedModel, result: SweepResult, ds: Dataset, se: SideEffectsConfig, out: str | Path,
             data_dir: str | None, progress: PhaseProgress | None, texts, mc: Dataset, settings: dict,
             key: str) -> tuple[pd.DataFrame, dict, bool]:
    started = time.time()
    layers, mults = result.layers, sorted(result.config.multipliers)
    vectors = {l: v.to(lm.device, lm.dtype) for l, v in result.vectors.items()}
    rows = neutral.tokenize_texts(lm, texts, se.n_texts, se.text_tokens)
    partial = Partial(out, {**result.manifest["settings"], "side_effects": key})
    finished = {j: v for j, (_, v) in partial.batches().items()}

    def on_layer(j: int, values: np.ndarray) -> None:
        partial.save_batch(j, [layers[j]], values)

    step = (lambda done, total: progress("text", done, total)) if progress else None
    try:
        kl_ppl = neutral.neutral_grid(lm, rows, vectors, layers, mults, progress=step, on_layer=on_layer,
                                      finished=finished)
    except neutral.FastPathUnsupported:  # e.g. soft-capped logits: the naive loop gives the same numbers
        kl_ppl = neutral.reference_neutral(lm, rows, vectors, layers, mults, progress=step)
    cfg = replace(result.config, multipliers=mults)
    acc, prob = capability(lm, mc, se.n_mc, vectors, layers, cfg, progress)
    val, n_fit = validation_propensities(lm, ds, cfg, layers, se.val_frac, progress)
    df = table(layers, mults, kl_ppl, acc, prob, val, test_propensities(result))
    rec = tradeoff.recommend(df, se.kl_budget)

    run_dir = Path(result.run_dir)
    atomic_write(run_dir / FILE, lambda p: df.to_parquet(p, index=False))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["side_effects"] = {"key": key, "settings": settings, "recommendation": rec,
                                "seconds": round(time.time() - started, 2), "n_texts": len(rows),
                                "n_text_tokens": int(sum(map(len, rows))), "n_val": int(val.shape[0]), "n_fit": n_fit,
                                "mc_items": min(se.n_mc, len(mc))}
    atomic_write(run_dir / "manifest.json", lambda p: p.write_text(json.dumps(manifest, indent=2, default=str)))
    result.manifest.update(side_effects=manifest["side_effects"])
    partial.clear()
    return df, rec, False
