"""Unit tests of the engine on tiny random-weight Llama and Gemma 3 models (fast, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
import torch

from steering.core.datasets import load_dataset, split_dataset
from steering.core.metrics import dataset_figures, ols_fit, per_example, r_squared, spearman
from steering.core.prompts import encode_example, encode_pair
from steering.core.vectors import VectorMeta, aggregate, load_vectors, save_vectors
from steering.engine import fast
from steering.engine import reference as evaluate
from steering.engine.hooks import capture, steer, steer_start

TOL = 1e-4  # fast vs reference on float32 tiny models; observed ~1e-6


def pairs_for(lm, n=6, dataset="corrigibility-demo"):
    ds = load_dataset(dataset)
    return [encode_example(lm.tokenizer, e, "BASE", ds.name) for e in ds.examples[:n]]


def random_vectors(lm, scale=3.0):
    g = torch.Generator().manual_seed(1)
    return {l: torch.randn(lm.hidden_size, generator=g) * scale for l in range(lm.n_layers)}


# ---------------------------------------------------------------- hooks


def test_steer_adds_exactly_multiplier_times_vector_at_intended_positions(tiny_llama):
    lm = tiny_llama
    ids = torch.tensor([list(range(10, 22))])
    vec = torch.randn(lm.hidden_size)
    layer, start, mult = 1, 7, 2.5
    with capture(lm.blocks) as plain:
        lm.model(input_ids=ids)
    base = plain[layer].clone()
    with steer(lm.blocks[layer], vec, mult, start), capture([lm.blocks[layer]]) as steered:  # capture after steer
        lm.model(input_ids=ids)
    diff = steered[0] - base
    assert torch.allclose(diff[0, start:], (mult * vec).expand(ids.shape[1] - start, -1), atol=1e-5)
    assert diff[0, :start].abs().max() == 0
    assert not lm.blocks[layer]._forward_hooks  # removed afterwards


def test_steer_hook_removed_on_exception(tiny_llama):
    block = tiny_llama.blocks[0]
    with pytest.raises(RuntimeError):
        with steer(block, torch.zeros(tiny_llama.hidden_size), 1.0):
            raise RuntimeError("boom")
    assert not block._forward_hooks


def test_multiplier_zero_leaves_logits_unchanged(tiny_llama):
    ids = torch.tensor([list(range(5, 25))])
    ref = tiny_llama.model(input_ids=ids).logits
    with steer(tiny_llama.blocks[2], torch.randn(tiny_llama.hidden_size) * 100, 0.0):
        out = tiny_llama.model(input_ids=ids).logits
    assert torch.equal(ref, out)


@pytest.mark.parametrize("mode,expected", [("answer", 9), ("generated", 10), ("all", 0)])
def test_steer_start_positions(mode, expected):
    assert steer_start(10, mode) == expected


def test_read_index_is_answer_letter(tokenizer):
    pair = encode_pair(tokenizer, "Q?\n", "(A)", "(B)")
    assert tokenizer.decode([pair.pos_ids[pair.read_index]]) == "A"
    assert tokenizer.decode([pair.neg_ids[pair.read_index]]) == "B"
    full = tokenizer("Q?\n(A)", add_special_tokens=False).input_ids
    assert list(pair.prompt_ids + pair.pos_ids) == full


# ---------------------------------------------------------------- vectors


def test_vector_is_explicit_mean_of_differences(tiny):
    """Fast one-pass training equals the mean of differences read from output_hidden_states."""
    pairs = pairs_for(tiny, 5)
    cache = fast.build_cache(tiny, pairs, batch_size=2)
    pos, neg = fast.activation_differences(cache)
    vectors = aggregate(pos, neg, "mean")
    for layer in range(tiny.n_layers - 1):  # hidden_states[l + 1] is block l's output (the last one is normed)
        diffs = []
        for p in pairs:
            hs = []
            for comp in (p.pos_ids, p.neg_ids):
                ids = torch.tensor([list(p.prompt_ids + comp)])
                out = tiny.model(input_ids=ids, output_hidden_states=True)
                hs.append(out.hidden_states[layer + 1][0, len(p.prompt_ids) + p.read_index])
            diffs.append(hs[0] - hs[1])
        explicit = torch.stack(diffs).mean(0)
        assert torch.allclose(vectors[layer], explicit, atol=1e-4), layer
    rpos, rneg = evaluate.reference_differences(tiny, pairs)
    assert torch.allclose(pos, rpos, atol=1e-4) and torch.allclose(neg, rneg, atol=1e-4)


def test_aggregators_norms_and_sign():
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(16, generator=g)
    neg = torch.randn(3, 40, 16, generator=g)
    pos = neg + direction + 0.1 * torch.randn(3, 40, 16, generator=g)
    mean = aggregate(pos, neg, "mean")
    for name in ("pca", "logistic"):
        unit = aggregate(pos, neg, name, rescale=False)
        scaled = aggregate(pos, neg, name, rescale=True)
        assert torch.allclose(unit.norm(dim=1), torch.ones(3), atol=1e-5)
        assert torch.allclose(scaled.norm(dim=1), mean.norm(dim=1), atol=1e-4)
        cos = torch.nn.functional.cosine_similarity(scaled, direction.expand(3, -1), dim=1)
        assert (cos > 0.8).all(), (name, cos)


def test_save_and_load_vectors_roundtrip(tmp_path):
    vectors = {3: torch.randn(8), 7: torch.randn(8)}
    path, side = save_vectors(tmp_path / "v.safetensors", vectors, VectorMeta(model="m", layers=[3, 7]))
    loaded, meta = load_vectors(path)
    assert set(loaded) == {3, 7} and all(torch.equal(loaded[k], vectors[k]) for k in vectors)
    assert meta.model == "m" and abs(meta.norms["3"] - float(vectors[3].norm())) < 1e-6
    assert json.loads(side.read_text())["read_position"].startswith("answer-letter")


# ---------------------------------------------------------------- fast path = reference


@pytest.mark.parametrize("mode,metric", [("answer", "logit_diff"), ("generated", "logit_diff"),
                                         ("answer", "logprob_diff"), ("answer", "prob")])
def test_fast_grid_matches_reference(tiny, mode, metric):
    pairs = pairs_for(tiny, 4)
    vectors = random_vectors(tiny)
    layers, mults = [0, 3], [-2.0, 0.0, 1.5]
    cache = fast.build_cache(tiny, pairs, mode=mode, metric=metric, batch_size=3)
    got = fast.grid(tiny, cache, vectors, layers, mults)
    ref = evaluate.reference_grid(tiny, pairs, vectors, layers, mults, mode, metric)
    assert np.abs(got - ref).max() < TOL
    assert np.abs(ref[:, :, 0] - ref[:, :, 1]).max() > 1e-3  # steering does change something


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_and_batching_do_not_change_results(tiny_llama, side):
    pairs = pairs_for(tiny_llama, 7)
    vectors = random_vectors(tiny_llama)
    one = fast.grid(tiny_llama, fast.build_cache(tiny_llama, pairs, batch_size=1), vectors, [1], [-1.0, 2.0])
    many = fast.grid(tiny_llama, fast.build_cache(tiny_llama, pairs, batch_size=7, padding_side=side),
                     vectors, [1], [-1.0, 2.0])
    assert np.abs(one - many).max() < 1e-4


def test_steered_passes_leave_out_the_position_that_predicts_nothing(tiny_llama):
    """Each block's last position (the completion's last token) is only a target: steered passes skip it."""
    pairs = pairs_for(tiny_llama, 3)
    cache = fast.build_cache(tiny_llama, pairs, batch_size=3)
    widths = []
    hook = tiny_llama.blocks[-1].register_forward_hook(lambda m, a, o: widths.append(a[0].shape[1]))
    try:
        got = fast.grid(tiny_llama, cache, random_vectors(tiny_llama), [1], [-1.0, 0.0, 2.0])
    finally:
        hook.remove()
    S = cache.batches[0].S
    assert widths == [2 * 2 * (S - 1)]  # two steered multipliers x [pos | neg] blocks of S - 1 positions
    ref = evaluate.reference_grid(tiny_llama, pairs, random_vectors(tiny_llama), [1], [-1.0, 0.0, 2.0])
    assert np.abs(got - ref).max() < TOL


def test_slider_matches_reference_off_grid(tiny_llama):
    pairs = pairs_for(tiny_llama, 4)
    vec = random_vectors(tiny_llama)[2]
    cache = fast.build_cache(tiny_llama, pairs)
    got = fast.slider(tiny_llama, cache, 2, vec, 0.73)
    ref = [evaluate.reference_propensity(tiny_llama, p, 2, vec, 0.73) for p in pairs]
    assert np.abs(got - np.array(ref)).max() < TOL


def test_fast_path_self_check_accepts_supported_families(tiny):
    assert fast.check_fast_path(tiny)


def test_cache_store_is_bounded(tiny_llama):
    cache = fast.build_cache(tiny_llama, pairs_for(tiny_llama, 2))
    store = fast.CacheStore(max_bytes=int(cache.nbytes() * 1.5))
    store.put("a", cache)
    store.put("b", fast.build_cache(tiny_llama, pairs_for(tiny_llama, 2)))
    assert len(store) == 1 and store.get("a") is None and store.get("b") is not None
    assert store.nbytes() == cache.nbytes()


# ---------------------------------------------------------------- metrics


def test_slope_and_spearman_match_numpy_and_scipy():
    rng = np.random.default_rng(0)
    x = np.array([-1.5, -1, -0.5, 0, 0.5, 1, 1.5])
    y = rng.normal(size=(20, 7)) + rng.normal(size=(20, 1)) * x
    y[3, 2] = y[3, 4]  # a tie
    slope, intercept, rmse = ols_fit(x, y)
    for i in range(len(y)):
        b, a = np.polyfit(x, y[i], 1)
        assert abs(slope[i] - b) < 1e-10 and abs(intercept[i] - a) < 1e-10
        assert abs(rmse[i] - np.sqrt(np.mean((y[i] - (a + b * x)) ** 2))) < 1e-10
    rho = spearman(x, y)
    expected = [scipy.stats.spearmanr(x, row).statistic for row in y]
    assert np.allclose(rho, expected)
    assert np.isnan(spearman(x, np.ones((2, 7)))).all() and spearman(x, x[None] ** 3)[0] == pytest.approx(1.0)
    fit = per_example(x, y)
    assert np.array_equal(fit["anti_steerable"], ~(slope > 0))
    assert np.array_equal(fit["baseline"], y[:, 3])


def test_dataset_figures_known_values():
    slopes = np.array([1.0, 2.0, -1.0, 0.0, 3.0, -2.0, 0.5, 1.5])
    f = dataset_figures(slopes, pos_is_A=np.array([1, 1, 0, 0, 1, 0, 1, 1]))
    assert f.mean_slope == pytest.approx(slopes.mean()) and f.median_slope == pytest.approx(0.75)
    assert f.frac_anti == pytest.approx(3 / 8)  # 1 - mean(slope > 0): slope 0 counts as not steerable
    assert f.frac_anti_lo <= f.frac_anti <= f.frac_anti_hi
    assert f.var_slope == pytest.approx(slopes.var())
    # R² of a 0/1 factor equals the squared correlation.
    a = np.array([1, 1, 0, 0, 1, 0, 1, 1], dtype=float)
    assert f.r2_pos_is_A == pytest.approx(np.corrcoef(a, slopes)[0, 1] ** 2)
    assert r_squared(slopes, [np.ones(8)]) is None  # a constant factor explains nothing


def test_splits_used_by_engine_are_disjoint():
    ds = load_dataset("corrigibility-demo")
    train, test = split_dataset(ds, 30, 20, seed=3)
    assert not {e.example_id for e in train} & {e.example_id for e in test}


def test_concurrent_steering_on_a_shared_model_does_not_leak_hooks(tiny_llama):
    """Two threads (two dashboard sessions) steering one model at once get their own serial results."""
    import threading

    from steering.engine.generate import generate

    pair = pairs_for(tiny_llama, 1)[0]
    vecs = random_vectors(tiny_llama, scale=10.0)
    jobs = {"a": (1, 3.0), "b": (2, -3.0)}
    serial = {k: (evaluate.reference_propensity(tiny_llama, pair, l, vecs[l], m),
                  generate(tiny_llama, pair.prompt, l, vecs[l], m, max_new_tokens=6)) for k, (l, m) in jobs.items()}
    got: dict[str, list] = {k: [] for k in jobs}

    def work(k):
        l, m = jobs[k]
        for _ in range(4):
            got[k].append((evaluate.reference_propensity(tiny_llama, pair, l, vecs[l], m),
                           generate(tiny_llama, pair.prompt, l, vecs[l], m, max_new_tokens=6)))

    threads = [threading.Thread(target=work, args=(k,)) for k in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in jobs:
        assert all(abs(p - serial[k][0]) < 1e-5 and text == serial[k][1] for p, text in got[k])
    assert serial["a"] != serial["b"]
    assert not any(b._forward_hooks for b in tiny_llama.blocks)


def test_prompt_variants_place_the_persona_sentence(tokenizer):
    from steering.core.prompts import DEFAULT_SYSTEM, format_prompt, persona_sentences, variant_parts

    pos, neg = persona_sentences("believes-life-has-no-meaning")
    assert (pos, neg) == ("You believe life has no meaning.", "You do not believe life has no meaning.")
    q = "Is the sky blue?"
    sys_pos, _ = format_prompt(tokenizer, variant_parts(q, "SYS_POS", "believes-life-has-no-meaning"))
    assert f"<|im_start|>system\n{pos}<|im_end|>" in sys_pos and DEFAULT_SYSTEM not in sys_pos
    user_neg, _ = format_prompt(tokenizer, variant_parts(q, "USER_NEG", "believes-life-has-no-meaning"))
    assert f"<|im_start|>user\n{neg}\n\n{q}<|im_end|>" in user_neg and DEFAULT_SYSTEM in user_neg
    with pytest.raises(ValueError, match="BASE"):
        variant_parts(q, "SYS_MAYBE", "x")


def test_sweep_carries_variants_and_is_served_from_the_store(tiny_llama, tmp_path):
    from steering.core.prompts import persona_sentences
    from steering.run.sweep import SweepConfig, run_sweep

    cfg = dict(dataset="corrigibility-demo", layers=[1, 2], n_train=8, n_test=6,
               train_variant="SYS_POS", test_variant="USER_NEG")
    first = run_sweep(SweepConfig(**cfg), lm=tiny_llama, out=tmp_path)
    assert set(first.propensities.train_variant) == {"SYS_POS"} and set(first.steerability.test_variant) == {"USER_NEG"}
    pos, neg = persona_sentences("corrigibility-demo")
    assert first.train.prompt.str.contains(pos, regex=False).all()
    assert first.propensities.prompt.str.contains(neg, regex=False).all()
    assert len(first.propensities) == 6 * 2 * 7 and len(first.steerability) == 6 * 2
    again = run_sweep(SweepConfig(**cfg), lm=tiny_llama, out=tmp_path)
    assert again.cached and np.allclose(again.steerability.slope, first.steerability.slope)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".vectors", first.run_dir.name]  # no temporary directories


def test_failed_sweep_leaves_no_run_directory(tiny_llama, tmp_path, monkeypatch):
    from steering.run import sweep

    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(sweep.RunWriter, "commit", boom)  # fails after the files are written to the temp dir
    with pytest.raises(RuntimeError):
        sweep.run_sweep(sweep.SweepConfig(dataset="corrigibility-demo", layers=[1], n_train=4, n_test=4),
                        lm=tiny_llama, out=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith((".partial-", ".vectors"))] == []


def test_interrupted_sweep_resumes_without_redoing_finished_work(tiny_llama, tmp_path):
    from steering.run.sweep import SweepConfig, run_sweep

    cfg = dict(dataset="corrigibility-demo", layers=[0, 2], n_train=8, n_test=20)
    whole = run_sweep(SweepConfig(**cfg), lm=tiny_llama, out=tmp_path / "whole")

    class Stop(Exception):
        pass

    def stop_after_first_batch(phase, done, total):
        if phase == "grid" and done > 2:  # 2 layers per batch: the first batch is finished
            raise Stop

    with pytest.raises(Stop):
        run_sweep(SweepConfig(**cfg), lm=tiny_llama, out=tmp_path / "r", progress=stop_after_first_batch)
    seen = []
    resumed = run_sweep(SweepConfig(**cfg), lm=tiny_llama, out=tmp_path / "r",
                        progress=lambda phase, done, total: seen.append((phase, done, total)))
    assert "train" not in {p for p, _, _ in seen}  # the vectors were kept
    grid = [(d, t) for p, d, t in seen if p == "grid"]
    assert grid[1] == (2, 4)  # the first batch (both layers) came back without recomputing
    assert np.allclose(resumed.steerability.slope, whole.steerability.slope, atol=1e-6)
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.startswith(".partial-")]


def test_one_anti_steerable_rule_for_flag_fraction_and_histogram():
    """A slope of exactly 0 is anti-steerable everywhere (the paper's 1 - mean(slope > 0))."""
    from steering.run.figures import slope_histogram

    x = np.array([-1.0, 0.0, 1.0])
    props = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, -1.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 2.0]])  # slopes 0, -1, 1, 1
    fit = per_example(x, props)
    assert fit["anti_steerable"].tolist() == [True, True, False, False]
    f = dataset_figures(fit["slope"])
    assert f.frac_anti == pytest.approx(fit["anti_steerable"].mean()) == pytest.approx(0.5)
    fig = slope_histogram(fit["slope"])
    counts = {t.name.split(" ")[0]: int(sum(t.y)) for t in fig.data}
    assert counts == {"anti-steerable": 2, "steerable": 2}


def test_sweep_stores_test_pairs_as_the_model_saw_them(tiny_llama, tmp_path):
    from steering.core.config import SweepConfig
    from steering.core.results import load_run
    from steering.run.sweep import run_sweep

    res = run_sweep(SweepConfig(dataset="corrigibility-demo", layers=[1], n_train=6, n_test=5,
                                test_variant="SYS_NEG"), lm=tiny_llama, out=tmp_path)
    stored = load_run(res.run_dir)
    assert stored.test is not None and len(stored.test) == 5
    assert list(stored.test.example_id) == list(res.steerability.example_id)
    first = res.propensities[res.propensities.multiplier == res.config.multipliers[0]]
    assert list(stored.test.prompt) == list(first.prompt)


def test_vectors_train_once_per_training_settings_and_serve_every_test_variant(tiny_llama, tmp_path, monkeypatch):
    from steering.core.config import SweepConfig
    from steering.run import sweep

    calls = []
    real = sweep.train_vectors
    monkeypatch.setattr(sweep, "train_vectors", lambda *a, **k: calls.append(1) or real(*a, **k))
    results = [sweep.run_sweep(SweepConfig(dataset="corrigibility-demo", layers=[1], n_train=8, n_test=6,
                                           test_variant=v), lm=tiny_llama, out=tmp_path)
               for v in ("BASE", "SYS_POS", "USER_NEG")]
    assert len(calls) == 1
    assert [r.manifest["vectors_reused"] for r in results] == [False, True, True]
    assert all(torch.equal(r.vectors[1], results[0].vectors[1]) for r in results)
    # A different training setting trains again.
    sweep.run_sweep(SweepConfig(dataset="corrigibility-demo", layers=[1], n_train=8, n_test=6, seed=1),
                    lm=tiny_llama, out=tmp_path)
    assert len(calls) == 2


def test_spearman_rho_of_two_samples_matches_scipy():
    from steering.core.metrics import spearman_rho

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=20), rng.normal(size=20)
    y[:5] = y[0]  # ties
    assert spearman_rho(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
    assert np.isnan(spearman_rho([1, 2], [3, 4])) and np.isnan(spearman_rho([1, 2, 3], [5, 5, 5]))
