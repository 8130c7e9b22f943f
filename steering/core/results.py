"""A stored sweep: the SweepResult value, its long tables, and reading it back from the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from steering.core import jsonfile, metrics
from steering.core.config import SweepConfig, config_from_settings
from steering.core.damage import require_columns
from steering.core.datasets import Example
from steering.core.prompts import EncodedPair
from steering.core.vectors import load_vectors
from steering.errors import ValidationError


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
    test: pd.DataFrame | None = None  # the test pairs exactly as the model saw them

    @property
    def layers(self) -> list[int]:
        return sorted(self.vectors)

    def figures(self, layer: int) -> metrics.DatasetFigures:
        s = self.steerability[self.steerability.layer == layer]
        f = metrics.dataset_figures(s.slope.to_numpy(), s.pos_is_A.to_numpy(), s.pos_is_yes.to_numpy())
        p = self.propensities[self.propensities.layer == layer]
        grid = p.pivot_table(index="example_id", columns="multiplier", values="propensity", sort=True)
        why = metrics.saturation_reason(grid.columns.to_numpy(), grid.to_numpy())
        if why and "frac_anti" not in f.undefined:
            f.frac_anti = f.frac_anti_lo = f.frac_anti_hi = float("nan")
            f.undefined["frac_anti"] = why
        return f

    def layer_table(self) -> pd.DataFrame:
        rows = []
        for layer in self.layers:
            f = self.figures(layer)
            rows.append({"layer": layer, "mean_slope": f.mean_slope, "median_slope": f.median_slope,
                         "frac_anti": f.frac_anti, "frac_anti_lo": f.frac_anti_lo, "frac_anti_hi": f.frac_anti_hi,
                         "mean_slope_lo": f.mean_slope_lo, "mean_slope_hi": f.mean_slope_hi,
                         "r2_pos_is_A": f.r2_pos_is_A})
        return pd.DataFrame(rows)

    def test_pairs(self) -> pd.DataFrame:
        """One row per test example (example_id, factors, prompt, positive, negative), in the grid's order."""
        if self.test is not None:
            return self.test
        # Runs stored before test.parquet existed: the same rows, read off the propensity table.
        p = self.propensities
        rows = p[(p.layer == p.layer.iloc[0]) & (p.multiplier == p.multiplier.iloc[0])]
        return rows[["example_id", "pos_is_A", "pos_is_yes", "prompt", "positive", "negative"]].reset_index(drop=True)


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
    manifest = jsonfile.read(path / "manifest.json")
    if not isinstance(manifest.get("settings"), dict):
        raise ValidationError(f"{path / 'manifest.json'}: no settings (not a run's manifest)")
    cfg = config_from_settings(dict(manifest["settings"]))
    vectors, _ = load_vectors(path / "vectors.safetensors")
    steer = pd.read_parquet(path / "steerability.parquet")
    require_columns(steer, ("example_id", "layer", "slope"), "steerability.parquet", numeric=("layer", "slope"))
    props = pd.read_parquet(path / "propensities.parquet")
    require_columns(props, ("example_id", "layer", "multiplier", "propensity"), "propensities.parquet",
                    numeric=("layer", "multiplier", "propensity"))
    # One rule for every reader, also for runs stored under an older rule.
    steer["anti_steerable"] = metrics.anti_steerable(steer.slope.to_numpy())
    test = pd.read_parquet(path / "test.parquet") if (path / "test.parquet").exists() else None
    return SweepResult(path, cfg, props, steer,
                       pd.read_parquet(path / "train.parquet"), vectors, manifest, cached, test)
