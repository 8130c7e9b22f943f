"""Diagnostics of a run: null baselines, the A/B-swap counterfactual, split-half stability, predictors.

Computed by ``sweep.compute_run`` when the run's settings ask for them (they are
part of its key), from the same trained vectors and cached test prompt states:

- null: K random directions at the vector's norm and K label-shuffled vectors
  are more vectors on the cached states (``multivector.grid_many``): no prompt pass.
- swap: every test item again with its option texts exchanged between the
  letters: one prompt pass of its own, then the run's grid.
- split_half: vectors from two disjoint halves of the training split; their
  cosine and the Spearman rho of the per-example slopes they give.
- predictors: each test item's own activation difference at the read token
  (cosine with and projection on the vector), and the training differences'
  directional agreement (Braun et al. 2025).

Pure statistics live in ``diag_stats``; nothing here imports Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from steering.core.datasets import Example
from steering.core.files import atomic_write, mkdir_robust
from steering.core.metrics import ols_fit
from steering.core.prompts import EncodedPair
from steering.core.swap import encode_for_metric, swap_example
from steering.core.vectors import aggregate
from steering.engine import fast
from steering.engine import reference as evaluate
from steering.engine.models import LoadedModel
from steering.engine.multivector import grid_many, reference_many
from steering.errors import InputError, SweepError
from steering.run.diagnostics import stats

PhaseProgress = Callable[[str, int, int], None]
KINDS = ("random", "shuffled")


@dataclass
class DiagnosticsOutput:
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # new steerability columns, in its row order
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)  # file name -> table stored with the run
    summary: dict = field(default_factory=dict)  # manifest["diagnostics"]


class Stages:
    """Finished diagnostics of an interrupted run (``.npz``, no pickles), so a rerun resumes."""

    def __init__(self, directory: Path | None):
        self.dir = directory

    def get(self, name: str) -> dict[str, np.ndarray] | None:
        f = self.dir / f"diag-{name}.npz" if self.dir is not None else None
        if f is None or not f.exists():
            return None
        try:
            with np.load(f, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception:  # noqa: BLE001 - a damaged stage of an unfinished run is computed again
            f.unlink(missing_ok=True)
            return None

    def put(self, name: str, **arrays: np.ndarray) -> None:
        if self.dir is None:
            return
        mkdir_robust(self.dir)
        atomic_write(self.dir / f"diag-{name}.npz", lambda p: _savez(p, arrays))


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would otherwise append ".npz" to the name
        np.savez(f, **arrays)


def random_vectors(vector: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """K seeded Gaussian directions [K, d], each scaled to the vector's norm."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(k, vector.shape[-1], generator=g, dtype=torch.float64)
    return (r / r.norm(dim=1, keepdim=True) * float(vector.float().norm())).float()


def shuffled_vectors(pos: torch.Tensor, neg: torch.Tensor, k: int, aggregator: str, rescale: bool,
                     seed: int) -> torch.Tensor:
    """K label-shuffled vectors [K, layer, d]: each training pair's sides swapped at random (the same
    draw for every layer), then aggregated like the real vector. pos, neg: [layer, pair, d]."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(k):
        flip = (torch.rand(pos.shape[1], generator=g) < 0.5).view(1, -1, 1)
        out.append(aggregate(torch.where(flip, neg, pos), torch.where(flip, pos, neg), aggregator, rescale))
    return torch.stack(out)


def split_half_vectors(pos: torch.Tensor, neg: torch.Tensor, aggregator: str, rescale: bool,
                       seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors [layer, d] from two disjoint, seeded halves of the training pairs."""
    order = torch.randperm(pos.shape[1], generator=torch.Generator().manual_seed(seed))
    h = pos.shape[1] // 2
    a, b = order[:h], order[h : 2 * h]
    return aggregate(pos[:, a], neg[:, a], aggregator, rescale), aggregate(pos[:, b], neg[:, b], aggregator, rescale)


def slopes_of(multipliers: Sequence[float], props: np.ndarray) -> np.ndarray:
    """OLS slopes over the last axis of props [..., M]."""
    flat = props.reshape(-1, props.shape[-1])
    return ols_fit(np.asarray(multipliers, dtype=float), flat)[0].reshape(props.shape[:-1])


class Engine:
    """Grids on the fast path when the run used it, else the reference path (same numbers, tested)."""

    def __init__(self, lm: LoadedModel, cfg, fast_ok: bool, progress: PhaseProgress | None):
        self.lm, self.cfg, self.fast_ok, self.progress = lm, cfg, fast_ok, progress

    def step(self, phase: str):
        return (lambda d, t: self.progress(phase, d, t)) if self.progress else None

    def cache(self, pairs: Sequence[EncodedPair], phase: str) -> fast.PromptCache | None:
        if not self.fast_ok:
            return None
        return fast.build_cache(self.lm, pairs, self.cfg.position, self.cfg.metric, progress=self.step(phase))

    def many(self, cache, pairs, layer: int, vectors: torch.Tensor, phase: str) -> np.ndarray:
        m = self.cfg.multipliers
        if cache is not None:
            return grid_many(self.lm, cache, layer, vectors, m, progress=self.step(phase))
        return reference_many(self.lm, pairs, layer, vectors, m, self.cfg.position, self.cfg.metric,
                              progress=self.step(phase))

    def grid(self, cache, pairs, vectors: dict[int, torch.Tensor], layers: Sequence[int], phase: str) -> np.ndarray:
        if cache is not None:
            return fast.grid(self.lm, cache, vectors, layers, self.cfg.multipliers, progress=self.step(phase))
        return evaluate.reference_grid(self.lm, pairs, vectors, layers, self.cfg.multipliers, self.cfg.position,
                                       self.cfg.metric, progress=self.step(phase))

    def differences(self, cache, pairs, phase: str) -> tuple[torch.Tensor, torch.Tensor]:
        if cache is None:
            return evaluate.reference_differences(self.lm, pairs, progress=self.step(phase))
        return fast.activation_differences(cache, self.lm)


def compute(lm: LoadedModel, cfg, ds_name: str, layers: Sequence[int], vectors: dict[int, torch.Tensor],
            props: np.ndarray, test_ex: Sequence[Example], test_pairs: Sequence[EncodedPair],
            train_pairs: Sequence[EncodedPair], train_diffs: tuple[torch.Tensor, torch.Tensor] | None,
            test_cache: fast.PromptCache | None, fast_ok: bool, progress: PhaseProgress | None = None,
            stages: Stages | None = None) -> DiagnosticsOutput:
    """Every diagnostic the config asks for. props: the run's grid [n, layer, M]."""
    stages = stages or Stages(None)
    eng = Engine(lm, cfg, fast_ok, progress)
    out = DiagnosticsOutput(summary={"computed": {"null": cfg.null, "swap": cfg.swap, "predictors": cfg.predictors,
                                                  "split_half": cfg.split_half}, "layers": {}})
    slopes = slopes_of(cfg.multipliers, props)  # [n, layer]
    ids = [e.example_id for e in test_ex]
    per_layer = {str(l): {} for l in layers}
    if test_cache is None and fast_ok and (cfg.null or cfg.split_half or cfg.predictors):
        test_cache = eng.cache(test_pairs, "test")
    need_train = cfg.null or cfg.split_half or cfg.predictors
    if need_train and train_diffs is None:
        train_diffs = eng.differences(eng.cache(train_pairs, "train"), train_pairs, "train")
    pos, neg = train_diffs if need_train else (None, None)

    if cfg.null:
        _null(out, eng, cfg, layers, vectors, slopes, ids, pos, neg, test_cache, test_pairs, stages, per_layer)
    if cfg.swap:
        _swap(out, eng, lm, cfg, ds_name, layers, vectors, slopes, test_ex, stages, per_layer)
    if cfg.split_half:
        _split(out, eng, cfg, layers, vectors, pos, neg, test_cache, test_pairs, stages, per_layer)
    if cfg.predictors:
        _predictors(out, eng, layers, vectors, slopes, props, cfg, pos, neg, test_cache, test_pairs, stages,
                    per_layer)
    out.summary["layers"] = per_layer
    return out


def _null(out, eng, cfg, layers, vectors, slopes, ids, pos, neg, cache, pairs, stages, per_layer) -> None:
    K = cfg.null
    done = stages.get("null")
    if done is None:
        shuffled = shuffled_vectors(pos, neg, K, cfg.aggregator, cfg.rescale, cfg.seed + 1)  # [K, L, d]
        null = np.zeros((len(pairs), len(layers), 2, K))
        for j, layer in enumerate(layers):
            rnd = random_vectors(vectors[layer].float().cpu(), K, cfg.seed * 1000 + layer)
            both = torch.cat([rnd, shuffled[:, layer]])
            null[:, j] = slopes_of(cfg.multipliers, eng.many(cache, pairs, layer, both, "null")).reshape(-1, 2, K)
        stages.put("null", slopes=null)
    else:
        null = done["slopes"]
    rows = []
    z = {kind: [] for kind in KINDS}
    for j, layer in enumerate(layers):
        for i, kind in enumerate(KINDS):
            ns = null[:, j, i, :]
            z[kind].append(stats.null_z(slopes[:, j], ns))
            per_layer[str(layer)][f"null_{kind}"] = stats.null_summary(slopes[:, j], ns)
            rows.append(pd.DataFrame({"example_id": np.repeat(ids, K), "layer": layer, "kind": kind,
                                      "k": np.tile(np.arange(K), len(ids)), "slope": ns.reshape(-1)}))
    out.columns["null_z_random"] = np.concatenate(z["random"])
    out.columns["null_z_shuffled"] = np.concatenate(z["shuffled"])
    out.frames["null.parquet"] = pd.concat(rows, ignore_index=True)


def _swap(out, eng, lm, cfg, ds_name, layers, vectors, slopes, test_ex, stages, per_layer) -> None:
    try:
        swapped_ex = [swap_example(e) for e in test_ex]
        pairs = [encode_for_metric(lm.tokenizer, e, cfg.test_variant, ds_name, cfg.system, cfg.metric)
                 for e in swapped_ex]
    except InputError as e:  # an item without an (A)/(B) block to swap
        raise SweepError(f"A/B swap: {e}") from e
    done = stages.get("swap")
    if done is None:
        props = eng.grid(eng.cache(pairs, "swap"), pairs, vectors, layers, "swap")
        stages.put("swap", props=props)
    else:
        props = done["props"]
    sw = slopes_of(cfg.multipliers, props)  # [n, layer]
    cols = {"slope_swapped": [], "letter_driven": [], "slope_letter_free": []}
    for j, layer in enumerate(layers):
        driven = stats.letter_driven(slopes[:, j], sw[:, j])
        cols["slope_swapped"].append(sw[:, j])
        cols["letter_driven"].append(driven)
        cols["slope_letter_free"].append((slopes[:, j] + sw[:, j]) / 2)
        per_layer[str(layer)]["swap"] = stats.swap_summary(slopes[:, j], sw[:, j])
    out.columns.update({k: np.concatenate(v) for k, v in cols.items()})
    n, nl, nm = props.shape
    out.frames["swap.parquet"] = pd.DataFrame({
        "example_id": np.repeat([e.example_id for e in swapped_ex], nl * nm),
        "layer": np.tile(np.repeat(np.asarray(layers), nm), n),
        "multiplier": np.tile(np.asarray(cfg.multipliers, dtype=float), n * nl),
        "propensity": props.reshape(-1),
        "pos_is_A": np.repeat([e.pos_is_A for e in swapped_ex], nl * nm),
        "prompt": np.repeat([p.prompt for p in pairs], nl * nm),
        "positive": np.repeat([p.positive for p in pairs], nl * nm),
        "negative": np.repeat([p.negative for p in pairs], nl * nm),
    })


def _split(out, eng, cfg, layers, vectors, pos, neg, cache, pairs, stages, per_layer) -> None:
    if pos.shape[1] < 4:
        per_layer_note = "needs at least 4 training pairs"
        for layer in layers:
            per_layer[str(layer)]["split_half"] = {"note": per_layer_note}
        return
    a, b = split_half_vectors(pos, neg, cfg.aggregator, cfg.rescale, cfg.seed + 2)
    done = stages.get("split")
    if done is None:
        half = np.zeros((len(pairs), len(layers), 2))
        for j, layer in enumerate(layers):
            props = eng.many(cache, pairs, layer, torch.stack([a[layer], b[layer]]), "split")
            half[:, j] = slopes_of(cfg.multipliers, props)
        stages.put("split", slopes=half)
    else:
        half = done["slopes"]
    rows = []
    for j, layer in enumerate(layers):
        s = {"cosine": stats.cosine(a[layer], b[layer]), "spearman": stats.spearman_rho(half[:, j, 0], half[:, j, 1]),
             "n_half": int(pos.shape[1] // 2)}
        per_layer[str(layer)]["split_half"] = s
        rows.append({"layer": layer, **s})
    out.frames["split_half.parquet"] = pd.DataFrame(rows)


def _predictors(out, eng, layers, vectors, slopes, props, cfg, pos, neg, cache, pairs, stages, per_layer) -> None:
    done = stages.get("predictors")
    if done is None:
        tp, tn = eng.differences(cache, pairs, "predictors")
        own = (tp - tn)[list(layers)].numpy()  # [layer, n, d]
        stages.put("predictors", own=own)
    else:
        own = done["own"]
    mults = np.asarray(cfg.multipliers, dtype=float)
    zero = np.flatnonzero(mults == 0)
    cos_cols, proj_cols = [], []
    for j, layer in enumerate(layers):
        v = vectors[layer].float().cpu().numpy()
        c, p = stats.own_cos_proj(own[j], v)
        cos_cols.append(c)
        proj_cols.append(p)
        base = props[:, j, zero[0]] if len(zero) else np.full(len(c), np.nan)
        per_layer[str(layer)]["predictors"] = {
            "directional_agreement": stats.directional_agreement((pos[layer] - neg[layer]).numpy()),
            "rho_own_cos": stats.spearman_rho(slopes[:, j], c), "rho_own_proj": stats.spearman_rho(slopes[:, j], p),
            "rho_baseline": stats.spearman_rho(slopes[:, j], base)}
    out.columns["own_cos"] = np.concatenate(cos_cols)
    out.columns["own_proj"] = np.concatenate(proj_cols)


def summary_lines(summary: dict) -> list[str]:
    """One line per diagnostic per layer, for the CLI."""
    lines = []
    for layer, d in summary.get("layers", {}).items():
        for kind in KINDS:
            s = d.get(f"null_{kind}")
            if s:
                lines.append(f"layer {layer} null {kind:<8} K={s['k']}: null mean slope {s['null_mean_lo']:+.3f} to "
                             f"{s['null_mean_hi']:+.3f} (real {s['mean_slope']:+.3f}), null anti-steerable "
                             f"{s['null_anti_lo']:.0%}-{s['null_anti_hi']:.0%} (real {s['frac_anti']:.0%}), "
                             f"{stats.frac_beyond_text(s)} of items steered beyond the 95% null band "
                             f"(|z| > {stats.Z95:.2f}), "
                             f"median z {s['median_z']:+.2f}")
        s = d.get("swap")
        if s:
            lines.append(f"layer {layer} swap: {s['frac_letter_driven']:.0%} letter-driven (slope flips sign when the "
                         f"options are swapped); letter-free mean {s['letter_free_mean']:+.3f}, median "
                         f"{s['letter_free_median']:+.3f}, anti-steerable {s['letter_free_anti']:.0%} "
                         f"(as given {s['frac_anti']:.0%}, swapped {s['swapped_anti']:.0%})")
        s = d.get("split_half")
        if s and "cosine" in s:
            lines.append(f"layer {layer} split-half: cosine of half-vectors {s['cosine']:.3f}, Spearman rho of "
                         f"per-example slopes {s['spearman']:.3f} ({s['n_half']} training pairs each)")
        elif s:
            lines.append(f"layer {layer} split-half: {s['note']}")
        s = d.get("predictors")
        if s:
            lines.append(f"layer {layer} predictors: directional agreement {s['directional_agreement']:.3f}; "
                         f"Spearman rho of slope with own-difference cosine {s['rho_own_cos']:+.2f}, projection "
                         f"{s['rho_own_proj']:+.2f}, baseline propensity {s['rho_baseline']:+.2f}")
    return lines


DIAG_FILES = ("null.parquet", "swap.parquet", "split_half.parquet")


def load_frames(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """The diagnostics tables stored with a run (only those it computed)."""
    run_dir = Path(run_dir)
    return {name: pd.read_parquet(run_dir / name) for name in DIAG_FILES if (run_dir / name).exists()}
