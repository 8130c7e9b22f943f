"""One run pipeline (issue 16, item 3): an imported vector and an entanglement cell under the answer_text
metric are scored on the letter-free prompts of the test split, and equal the full-forward reference path
on those prompts (encoded here with ``encode_answer_text``, not by the pipeline)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from steering.core.config import SweepConfig
from steering.core.datasets import load_dataset, split_dataset
from steering.core.prompts import encode_example
from steering.core.swap import encode_answer_text
from steering.engine.reference import reference_propensity

REL_TOL = 1e-3  # fast vs reference: float32, different batching and reduction order
ABS_TOL = 1e-4
MULTS = [-1.0, 0.0, 1.5]


def _test_items(ds, cfg):
    return split_dataset(ds, cfg.n_train, cfg.n_test, cfg.seed, cfg.balance_train)[1]


def _letter_free(lm, ds, cfg):
    return [encode_answer_text(lm.tokenizer, e, cfg.test_variant, ds.name, cfg.system) for e in _test_items(ds, cfg)]


def _with_letters(lm, ds, cfg):
    return [encode_example(lm.tokenizer, e, cfg.test_variant, ds.name, cfg.system) for e in _test_items(ds, cfg)]


def _reference(lm, pairs, layer, vector, mults) -> np.ndarray:
    """[example, multiplier] propensities, one full forward pass per cell."""
    return np.array([[reference_propensity(lm, p, layer, vector, m, "answer", "answer_text") for m in mults]
                     for p in pairs])


@pytest.fixture(scope="module")
def trained(tiny_llama, tmp_path_factory):
    """A run with the default (letter) metric: its vectors are what gets exported and imported."""
    from steering.run.sweep import run_sweep

    cfg = SweepConfig(dataset="corrigibility-demo", layers=[1, 2], n_train=8, n_test=6, multipliers=MULTS)
    return run_sweep(cfg, lm=tiny_llama, out=tmp_path_factory.mktemp("trained"))


def test_imported_vector_under_answer_text_equals_the_reference_on_letter_free_prompts(tiny_llama, trained,
                                                                                       tmp_path):
    from steering.interop.controlvec import evaluate_vectors, export_gguf, read_vectors

    gguf, _ = export_gguf(trained.run_dir, tmp_path / "cv.gguf", [1, 2])
    ds = load_dataset("corrigibility-demo")
    cfg = replace(trained.config, metric="answer_text", layers=None)
    result = evaluate_vectors(gguf, tiny_llama, ds, cfg, out=tmp_path / "out")
    assert result.config.metric == "answer_text" and result.layers == [1, 2]
    assert not any("(A)" in p for p in result.test.prompt)  # the stored prompts are the letter-free ones

    vectors, _ = read_vectors(gguf)
    pairs = _letter_free(tiny_llama, ds, cfg)
    assert list(result.test.prompt) == [p.prompt for p in pairs]
    p = result.propensities
    for layer in (1, 2):
        got = p[p.layer == layer].pivot(index="example_id", columns="multiplier", values="propensity")
        got = got.reindex(index=[e.example_id for e in _test_items(ds, cfg)], columns=MULTS).to_numpy()
        ref = _reference(tiny_llama, pairs, layer, vectors[layer], MULTS)
        np.testing.assert_allclose(got, ref, rtol=REL_TOL, atol=ABS_TOL)
        # The letter prompts (what imports were scored on before) give other numbers: the check can fail.
        lettered = _reference(tiny_llama, _with_letters(tiny_llama, ds, cfg), layer, vectors[layer], MULTS)
        assert np.abs(lettered - ref).max() > 100 * ABS_TOL


def test_entanglement_cells_under_answer_text_equal_the_reference_on_letter_free_prompts(tiny_llama, tmp_path):
    from steering.analyses.side_effects.entanglement import entanglement
    from steering.run.sweep import run_sweep

    names, layer, mult = ["optimism-demo", "corrigibility-demo"], 1, 2.0
    base = SweepConfig(n_train=8, n_test=6, multipliers=[0.0, 1.0], metric="answer_text")
    df = entanglement(tiny_llama, names, layer, base, tmp_path, multiplier=mult).set_index(
        ["steered_with", "measured_on"])
    loaded = [load_dataset(n) for n in names]
    # Each concept's vector from its stored run (served from the store, not trained again).
    vectors = [run_sweep(replace(base, dataset=d.name, layers=[layer]), lm=tiny_llama, out=tmp_path,
                         dataset=d).vectors[layer] for d in loaded]
    shift = np.zeros((2, 2))
    for y, ds in enumerate(loaded):
        pairs = _letter_free(tiny_llama, ds, base)
        for x, v in enumerate(vectors):
            ref = _reference(tiny_llama, pairs, layer, v, [0.0, mult])
            shift[x, y] = (ref[:, 1] - ref[:, 0]).mean()
            assert df.loc[(names[x], names[y]), "shift"] == pytest.approx(shift[x, y], rel=REL_TOL, abs=ABS_TOL)
        lettered = _reference(tiny_llama, _with_letters(tiny_llama, ds, base), layer, vectors[y], [0.0, mult])
        assert abs((lettered[:, 1] - lettered[:, 0]).mean() - shift[y, y]) > 100 * ABS_TOL  # the check can fail
    for x in range(2):
        for y in range(2):
            assert df.loc[(names[x], names[y]), "normalised"] == pytest.approx(shift[x, y] / shift[y, y], rel=1e-2)
