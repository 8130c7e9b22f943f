"""Find a demo setting: the layer and multiplier at which steering changes a prompt's text the most while the
text stays coherent (perplexity under the unsteered model within ``bound`` times the unsteered text's).

Two stages, each batched (``engine.batch_generate``): every layer x multiplier for a few tokens (the
probe), then the best few at full length, where the choice is made. "Most" is the token edit distance
from the unsteered text; ties go to the smaller |multiplier| (the gentler push), then the lower
perplexity ratio, then the lower layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pandas as pd
import torch

from steering.core.config import SweepConfig
from steering.core.datasets import Dataset, split_dataset
from steering.engine.batch_generate import MAX_ROWS, Setting, generate_rows
from steering.engine.models import LoadedModel
from steering.errors import ValidationError
from steering.run.ladder import DEFAULT_LADDER, PPL_BOUND, Row, check_bound, score
from steering.run.sweep import encode_all, trained_vectors

PROBE_TOKENS = 8
FINALISTS = 4
Progress = Callable[[str, int, int], None]  # (phase "probe" | "final", done, total)


@dataclass(frozen=True)
class DemoSearch:
    """The chosen setting (None when no steered text stayed under the bound) and the tables behind it."""

    setting: Setting | None
    probe: pd.DataFrame  # every layer x multiplier after the probe tokens (the unsteered row included)
    final: pd.DataFrame  # the finalists at full length (the unsteered row included)
    bound: float
    reason: str  # one line: what was chosen and why, or why nothing was

    @property
    def chosen(self) -> pd.Series | None:
        if self.setting is None:
            return None
        f = self.final
        return f[(f.layer == self.setting.layer) & (f.multiplier == self.setting.multiplier)].iloc[0]


def table(rows: Sequence[Row]) -> pd.DataFrame:
    return pd.DataFrame([r.as_dict() for r in rows],
                        columns=["layer", "multiplier", "edit_distance", "perplexity", "ppl_ratio", "distinct_2",
                                 "incoherent", "text"])


def ranked(t: pd.DataFrame, bound: float) -> pd.DataFrame:
    """Steered rows that changed the text and stayed under the bound, strongest change first (ties: see
    the module docstring). A row whose ratio is undefined (no tokens) cannot show it stayed coherent."""
    ok = t[t.layer.notna() & (t.multiplier != 0) & (t.edit_distance > 0) & t.ppl_ratio.notna()
           & (t.ppl_ratio <= bound)]
    order = ok.assign(_abs=ok.multiplier.abs())
    order = order.sort_values(["edit_distance", "_abs", "ppl_ratio", "layer"], ascending=[False, True, True, True],
                              kind="stable")
    return order.drop(columns="_abs")


def _run(lm: LoadedModel, prompt: str, settings: list[Setting], vectors: Mapping[int, torch.Tensor],
         tokens: int, batch_rows: int, phase: str, progress: Progress | None, bound: float, **kw) -> list[Row]:
    """Generate and score ``settings`` (the first is the unsteered row) in batches of ``batch_rows``."""
    generated: list[list[int]] = []
    chunks = range(0, len(settings), batch_rows)
    for n, i in enumerate(chunks):
        last: list[list[int]] = [[] for _ in settings[i:i + batch_rows]]
        for step, last in enumerate(generate_rows(lm, prompt, settings[i:i + batch_rows], vectors, tokens, **kw),
                                    start=1):
            if progress:
                progress(phase, n * tokens + step, len(chunks) * tokens)
        generated += last
    return score(lm, prompt, settings, generated, 0, bound, batch_rows)


def find_demo_setting(lm: LoadedModel, prompt: str, vectors_by_layer: Mapping[int, torch.Tensor],
                      layers: Sequence[int] | None = None, multipliers: Sequence[float] = DEFAULT_LADDER,
                      max_new_tokens: int = 48, probe_tokens: int = PROBE_TOKENS, finalists: int = FINALISTS,
                      bound: float = PPL_BOUND, seed: int = 0, sample: bool = False, temperature: float = 1.0,
                      mode: str = "answer", batch_rows: int = 64, progress: Progress | None = None) -> DemoSearch:
    """Search ``layers`` (default: every layer with a vector) x the non-zero ``multipliers`` on ``prompt``."""
    bound = check_bound(bound)
    layers = sorted(vectors_by_layer) if layers is None else sorted(set(layers))
    missing = [l for l in layers if l not in vectors_by_layer]
    if missing:
        raise ValidationError(f"no steering vector for layer {missing[0]}: train or load it first")
    ms = sorted({float(m) for m in multipliers} - {0.0})
    if not layers or not ms:
        raise ValidationError("the search needs at least one layer and one non-zero multiplier")
    probe_tokens = min(probe_tokens, max_new_tokens)  # a short full length is its own probe
    if probe_tokens < 1:
        raise ValidationError(f"probe tokens must be at least 1, not {probe_tokens}")
    if finalists < 1 or not 2 <= batch_rows <= MAX_ROWS:
        raise ValidationError(f"finalists must be >= 1 and batch rows between 2 and {MAX_ROWS}")
    kw = dict(mode=mode, sample=sample, seed=seed, temperature=temperature)
    unsteered = Setting(None, 0.0)
    grid = [unsteered] + [Setting(l, m) for l in layers for m in ms]
    probe = table(_run(lm, prompt, grid, vectors_by_layer, probe_tokens, batch_rows, "probe", progress, bound, **kw))
    best = ranked(probe, bound).head(finalists)
    if best.empty:
        return DemoSearch(None, probe, table([]), bound,
                          f"no layer x multiplier changed the first {probe_tokens} tokens while staying within "
                          f"{bound:g}x the unsteered perplexity")
    picks = [unsteered] + [Setting(int(r.layer), float(r.multiplier)) for r in best.itertuples()]
    final = table(_run(lm, prompt, picks, vectors_by_layer, max_new_tokens, batch_rows, "final", progress, bound,
                       **kw))
    top = ranked(final, bound)
    if top.empty:
        return DemoSearch(None, probe, final, bound,
                          f"none of the {len(picks) - 1} best probe settings stayed within {bound:g}x the unsteered "
                          f"perplexity at {max_new_tokens} tokens while changing the text")
    r = top.iloc[0]
    setting = Setting(int(r.layer), float(r.multiplier))
    return DemoSearch(setting, probe, final, bound,
                      f"layer {setting.layer}, multiplier {setting.multiplier:g}: {int(r.edit_distance)} tokens "
                      f"edited from the unsteered text, perplexity {r.ppl_ratio:.2f}x the unsteered text's "
                      f"(bound {bound:g}x); {len(probe) - 1} settings probed at {probe_tokens} tokens, "
                      f"{len(picks) - 1} at {max_new_tokens}")


def concept_vectors(lm: LoadedModel, ds: Dataset, cfg: SweepConfig, out: str | Path | None,
                    progress: Progress | None = None) -> dict[int, torch.Tensor]:
    """Every layer's vector for a concept, as the sweep trains it (read from the vector store when the same
    training settings were trained before)."""
    train_ex, _ = split_dataset(ds, cfg.n_train, cfg.n_test, cfg.seed, cfg.balance_train)
    pairs = encode_all(lm, train_ex, cfg, ds.name, "train")
    vectors, _ = trained_vectors(lm, ds, cfg, train_ex, pairs, out, progress)
    return vectors
