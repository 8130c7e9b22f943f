"""Integration: diagnostics on the embedded SmolLM2-135M-Instruct with a real dataset from ../shared/datasets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from steering.core.config import SweepConfig
from steering.core.datasets import load_dataset, split_dataset
from steering.core.swap import encode_for_metric, option_texts
from steering.engine import fast
from steering.engine.multivector import grid_many, reference_many
from steering.run.diagnostics.compute import random_vectors
from steering.run.sweep import run_sweep

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def corrigible(shared_datasets):
    return load_dataset("corrigible-neutral-HHH", shared_datasets)


def test_diagnostics_run_on_smollm(smollm, corrigible, tmp_path):
    cfg = SweepConfig(dataset=corrigible.name, layers=[12], n_train=24, n_test=10, null=2, swap=True,
                      predictors=True, split_half=True)
    res = run_sweep(cfg, lm=smollm, out=tmp_path, dataset=corrigible)
    s = res.steerability
    assert s[["null_z_random", "null_z_shuffled", "slope_swapped", "own_cos", "own_proj"]].notna().all().all()
    assert ((s.own_cos >= -1 - 1e-6) & (s.own_cos <= 1 + 1e-6)).all()
    assert (np.sign(s.own_proj) == np.sign(s.own_cos)).all()
    sw = pd.read_parquet(res.run_dir / "swap.parquet")
    _, test = split_dataset(corrigible, 24, 10, 0)
    by_id = {e.example_id: e for e in test}
    row = sw.iloc[0]
    pos_text, _ = option_texts(by_id[row.example_id])
    letter = row.positive.strip("()")
    assert f"({letter}) {pos_text}" in row.prompt and row.pos_is_A == (letter == "A")
    assert row.pos_is_A != by_id[row.example_id].pos_is_A
    summary = res.manifest["diagnostics"]["layers"]["12"]
    assert 0 <= summary["swap"]["frac_letter_driven"] <= 1
    # No sign is asserted: on this concept the letter direction dominates and halves can disagree.
    assert -1 <= summary["split_half"]["cosine"] <= 1 and -1 <= summary["predictors"]["directional_agreement"] <= 1


def test_null_cells_fast_equal_reference_on_smollm(smollm, corrigible):
    _, test = split_dataset(corrigible, 24, 10, 0)
    pairs = [encode_for_metric(smollm.tokenizer, e, "BASE", corrigible.name) for e in test[:2]]
    g = torch.Generator().manual_seed(0)
    vecs = random_vectors(torch.randn(smollm.hidden_size, generator=g) * 4, 2, 0)
    mults = [-1.0, 0.0, 1.5]
    got = grid_many(smollm, fast.build_cache(smollm, pairs), 12, vecs, mults)
    ref = reference_many(smollm, pairs, 12, vecs, mults)
    assert np.abs(got - ref).max() <= 1e-3
