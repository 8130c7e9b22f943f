"""The prompting baseline: is steering better than just asking? (AxBench, Wu et al. 2025)

For every test item of a run, unsteered and steered with the run's vectors at its multipliers:

- asking: propensity under SYS_POS / USER_POS ("You are X." as the system prompt, or before the user
  turn), unsteered, minus under BASE, unsteered;
- steering: propensity on BASE at multiplier m minus at 0 (the run's own grid when it tests BASE);
- both: SYS_POS / USER_POS at multiplier m minus BASE at 0.

Prompts use the run's metric, so the baseline is letter-free where the run is (answer_text).
Stored beside the run like its side effects: ``prompting.parquet`` (a row per item x layer x
multiplier) and a ``"prompting"`` section of its manifest (key, settings, summary), both written
atomically; each variant's grid is kept in a ``.partial-`` folder until then, so a rerun resumes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from steering.core.datasets import Dataset, Example, split_dataset
from steering.core.results import SweepResult
from steering.core.store import Partial, settings_key
from steering.core.swap import encode_for_metric
from steering.engine.models import LoadedModel
from steering.errors import SweepError
from steering.run.checks import check_prompt_lengths
from steering.run.sweep import evaluate_grid, use_fast

PhaseProgress = Callable[[str, int, int], None]
ASK_VARIANTS = ("SYS_POS", "USER_POS")
FILE = "prompting.parquet"
SECTION = "prompting"
VERSION = 1  # bump when the stored table changes meaning
SHORT = {"SYS_POS": "sys", "USER_POS": "user"}


def zero_index(multipliers: Sequence[float]) -> int:
    zero = np.flatnonzero(np.asarray(multipliers, dtype=float) == 0)
    if not len(zero):
        raise SweepError("the prompting baseline measures shifts against multiplier 0: include 0 in the multipliers")
    return int(zero[0])


def shifts(base: np.ndarray, asked: dict[str, np.ndarray], multipliers: Sequence[float]) -> dict[str, np.ndarray]:
    """Per-item shifts from propensities [item, layer, multiplier] on BASE and under each asking variant.

    Returns steer [n, L, M] (BASE at m minus BASE at 0), ask_<v> [n, L] (variant at 0 minus BASE at 0)
    and both_<v> [n, L, M] (variant at m minus BASE at 0).
    """
    z = zero_index(multipliers)
    b0 = base[:, :, z]
    out = {"steer": base - b0[:, :, None]}
    for v, p in asked.items():
        out[f"ask_{SHORT[v]}"] = p[:, :, z] - b0
        out[f"both_{SHORT[v]}"] = p - b0[:, :, None]
    return out


def table(ids: Sequence[str], layers: Sequence[int], multipliers: Sequence[float], base: np.ndarray,
          asked: dict[str, np.ndarray]) -> pd.DataFrame:
    """A row per item x layer x multiplier: the three propensities and every shift."""
    n, L, M = base.shape
    s = shifts(base, asked, multipliers)
    cols = {"example_id": np.repeat(np.asarray(ids), L * M), "layer": np.tile(np.repeat(np.asarray(layers), M), n),
            "multiplier": np.tile(np.asarray(multipliers, dtype=float), n * L), "p_base": base.reshape(-1)}
    for v, p in asked.items():
        cols[f"p_{SHORT[v]}"] = p.reshape(-1)
    cols["steer"] = s["steer"].reshape(-1)
    for v in asked:
        k = SHORT[v]
        cols[f"ask_{k}"] = np.repeat(s[f"ask_{k}"][:, :, None], M, axis=2).reshape(-1)
        cols[f"both_{k}"] = s[f"both_{k}"].reshape(-1)
    return pd.DataFrame(cols)


def summary(df: pd.DataFrame) -> list[dict]:
    """Per layer and positive multiplier: mean shifts, and for how many items steering beats each way of asking."""
    rows = []
    for (layer, m), g in df[df.multiplier > 0].groupby(["layer", "multiplier"]):
        r = {"layer": int(layer), "multiplier": float(m), "n": len(g), "steer_mean": float(g.steer.mean())}
        for k in SHORT.values():
            if f"ask_{k}" in g:
                r[f"ask_{k}_mean"] = float(g[f"ask_{k}"].mean())
                r[f"both_{k}_mean"] = float(g[f"both_{k}"].mean())
                r[f"steer_beats_{k}"] = int((g.steer > g[f"ask_{k}"]).sum())
        rows.append(r)
    return rows


def ordered_cube(props: pd.DataFrame, ids: Sequence[str], layers: Sequence[int],
                 multipliers: Sequence[float]) -> np.ndarray:
    """A run's long propensity table as [item, layer, multiplier] in the given orders."""
    cube = props.pivot_table(index="example_id", columns=["layer", "multiplier"], values="propensity")
    cube = cube.reindex(index=list(ids), columns=pd.MultiIndex.from_product([list(layers), list(multipliers)]))
    if cube.isna().to_numpy().any():
        raise SweepError("the run's stored propensities do not cover its test items, layers and multipliers")
    return cube.to_numpy().reshape(len(ids), len(layers), len(multipliers))


def encode(lm: LoadedModel, examples: Sequence[Example], variant: str, ds_name: str, cfg):
    """Test items under ``variant`` in the run's metric (letter-free for answer_text); lengths checked."""
    try:
        pairs = [encode_for_metric(lm.tokenizer, e, variant, ds_name, cfg.system, cfg.metric) for e in examples]
    except ValueError as e:
        raise SweepError(f"prompting baseline ({variant}): {e}") from e
    check_prompt_lengths(lm, examples, pairs)
    return pairs


def grids(lm: LoadedModel, ds: Dataset, cfg, test_ex: Sequence[Example], vectors: dict, layers: Sequence[int],
          variants: Sequence[str], progress: PhaseProgress | None = None,
          finished: dict[str, np.ndarray] | None = None,
          on_variant: Callable[[str, np.ndarray], None] | None = None) -> dict[str, np.ndarray]:
    """Propensities [item, layer, multiplier] of the test items under each variant, steered with ``vectors``.

    Fast path unless ``cfg.reference`` (or the model needs the reference path): same numbers, tested.
    """
    out = dict(finished or {})
    for v in variants:
        if v in out:
            continue
        step = (lambda phase, d, t, v=v: progress(f"{v}:{phase}", d, t)) if progress else None
        out[v] = evaluate_grid(lm, encode(lm, test_ex, v, ds.name, cfg), vectors, layers, cfg, step)
        if on_variant is not None:
            on_variant(v, out[v])
    return out


def stored(result: SweepResult) -> tuple[pd.DataFrame, dict] | None:
    """The run's stored baseline and its manifest section, if computed for this run's settings."""
    info = result.manifest.get(SECTION)
    path = Path(result.run_dir) / FILE
    if not info or info.get("key") != key_of(result) or not path.exists():
        return None
    return pd.read_parquet(path), info


def key_of(result: SweepResult) -> str:
    return settings_key({"run": result.manifest["key"], "variants": list(ASK_VARIANTS), "version": VERSION})


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure(lm: LoadedModel, result: SweepResult, ds: Dataset, out: str | Path,
           progress: PhaseProgress | None = None, reference: bool = False) -> tuple[pd.DataFrame, dict, bool]:
    """The run's prompting baseline: from the store, else computed (resuming a partial one) and stored.

    Returns (table, manifest section, cached)."""
    hit = stored(result)
    if hit is not None:
        return (*hit, True)
    started = time.time()
    cfg = replace(result.config, multipliers=sorted(result.config.multipliers), reference=reference)
    zero_index(cfg.multipliers)
    layers = result.layers
    _, test_ex = split_dataset(ds, cfg.n_train, cfg.n_test, cfg.seed, cfg.balance_train)
    ids = [e.example_id for e in test_ex]
    if list(result.test_pairs().example_id) != ids:
        raise SweepError(f"{ds.name}: the dataset's test split no longer matches the stored run's; compute the run "
                         "again")
    key = key_of(result)
    partial = Partial(out, {**result.manifest["settings"], SECTION: key})
    names = ["BASE", *ASK_VARIANTS]
    finished = {names[j]: values for j, (_, values) in partial.batches().items() if j < len(names)}
    if cfg.test_variant == "BASE":  # the run's own grid is the BASE one
        finished["BASE"] = ordered_cube(result.propensities, ids, layers, cfg.multipliers)
    vectors = {l: v.to(lm.device, lm.dtype) for l, v in result.vectors.items()}

    def keep(v: str, values: np.ndarray) -> None:
        partial.save_batch(names.index(v), [names.index(v)], values)

    props = grids(lm, ds, cfg, test_ex, vectors, layers, names, progress, finished, keep)
    df = table(ids, layers, cfg.multipliers, props["BASE"], {v: props[v] for v in ASK_VARIANTS})
    info = {"key": key, "settings": {"run": result.manifest["key"], "variants": list(ASK_VARIANTS),
                                     "metric": cfg.metric, "version": VERSION},
            "summary": summary(df), "seconds": round(time.time() - started, 2), "n_items": len(ids),
            "path": "fast" if use_fast(lm, cfg) else "reference"}
    run_dir = Path(result.run_dir)
    _atomic_write(run_dir / FILE, lambda p: df.to_parquet(p, index=False))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest[SECTION] = info
    _atomic_write(run_dir / "manifest.json", lambda p: p.write_text(json.dumps(manifest, indent=2, default=str)))
    result.manifest[SECTION] = info
    partial.clear()
    return df, info, False
