"""Integration tests: the embedded SmolLM2-135M-Instruct on real datasets from ../shared/datasets."""

from __future__ import annotations

import numpy as np
import pytest

from steering.core.config import SweepConfig
from steering.core.datasets import load_dataset, split_dataset
from steering.core.metrics import per_example
from steering.core.prompts import encode_example
from steering.core.results import load_run
from steering.engine import fast
from steering.engine import reference as evaluate
from steering.run.sweep import run_sweep, train_vectors

pytestmark = pytest.mark.integration
FAST_TOL = 1e-3  # float32; observed max difference is reported by the assertion message


@pytest.fixture(scope="module")
def persona(shared_datasets):
    return load_dataset(str(shared_datasets / "anthropic-evals/persona/narcissism.jsonl"))


@pytest.mark.parametrize("mode", fast.FAST_MODES)
def test_fast_path_matches_reference_on_real_model(smollm, persona, mode):
    """20 test examples x early/middle/late layer x 7 multipliers, fast vs full-forward reference."""
    train, test = split_dataset(persona, 40, 20, seed=1)
    cfg = SweepConfig(dataset=persona.name)
    train_pairs = [encode_example(smollm.tokenizer, e, "BASE", persona.name) for e in train]
    test_pairs = [encode_example(smollm.tokenizer, e, "BASE", persona.name) for e in test]
    vectors = train_vectors(smollm, train_pairs, cfg)
    layers = [2, 15, 28]
    mults = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
    cache = fast.build_cache(smollm, test_pairs, mode=mode, batch_size=8)
    got = fast.grid(smollm, cache, vectors, layers, mults)
    ref = evaluate.reference_grid(smollm, test_pairs, vectors, layers, mults, mode)
    diff = np.abs(got - ref).max()
    assert diff <= FAST_TOL, f"max |fast - reference| = {diff:.2e}"
    assert np.abs(ref[:, 1, -1] - ref[:, 1, 3]).mean() > 0.05  # the middle layer does steer


def test_fast_training_matches_reference_training(smollm, persona):
    train, _ = split_dataset(persona, 6, 1, seed=2)
    pairs = [encode_example(smollm.tokenizer, e, "BASE", persona.name) for e in train]
    pos, neg = fast.activation_differences(fast.build_cache(smollm, pairs, batch_size=4))
    rpos, rneg = evaluate.reference_differences(smollm, pairs)
    scale = rpos.abs().max()
    assert (pos - rpos).abs().max() / scale < 1e-4 and (neg - rneg).abs().max() / scale < 1e-4


def test_sweep_is_deterministic_and_stores_consistent_slopes(smollm, shared_datasets, tmp_path):
    cfg = dict(model="smollm2-135m", dataset="corrigible-neutral-HHH", data_dir=str(shared_datasets),
               layers=[13], n_train=20, n_test=10, seed=4)
    a = run_sweep(SweepConfig(**cfg), lm=smollm, out=tmp_path / "a")
    b = run_sweep(SweepConfig(**cfg), lm=smollm, out=tmp_path / "b")
    assert not a.cached and not b.cached
    assert np.allclose(a.steerability.slope, b.steerability.slope, atol=1e-6)
    again = run_sweep(SweepConfig(**cfg), lm=smollm, out=tmp_path / "a")
    assert again.cached and again.run_dir == a.run_dir

    stored = load_run(a.run_dir)
    wide = stored.propensities.pivot_table(index="example_id", columns="multiplier", values="propensity")
    refit = per_example(wide.columns.to_numpy(), wide.to_numpy())
    slopes = stored.steerability.set_index("example_id").loc[wide.index, "slope"].to_numpy()
    assert np.allclose(refit["slope"], slopes, atol=1e-9)
    assert len(stored.propensities) == 10 * 7 and set(stored.propensities.train_variant) == {"BASE"}
    assert stored.manifest["settings"]["dataset_sha256"] == load_dataset(
        "corrigible-neutral-HHH", shared_datasets).sha256
    # The stored prompt is exactly the text the model saw before the completion.
    assert stored.propensities.prompt.str.endswith("<|im_start|>assistant\n").all()
