"""Side effects on tiny random models: KL / perplexity fast path against the full-forward reference,
hand-computed perplexity, capability counts, the validation-only recommendation, entanglement, coherence."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from steering.analyses.side_effects import compute as side_effects
from steering.analyses.side_effects import neutral, tradeoff
from steering.core.config import SweepConfig
from steering.core.prompts import encode_example
from steering.engine import coherence
from steering.engine.reference import reference_propensity

ROOT = Path(__file__).resolve().parents[1]
REL_TOL = 1e-3  # fast vs reference: float32, different batching and reduction order
ABS_TOL = 1e-4


def _vectors(lm, scale: float, seed: int = 1) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {l: torch.randn(lm.hidden_size, generator=g) * scale for l in range(lm.n_layers)}


@pytest.fixture(scope="module")
def rows(tiny_llama):
    return neutral.tokenize_texts(tiny_llama, neutral.read_texts(), n=3, max_tokens=20)


def test_bundled_texts_and_mc_set_are_large_enough(tokenizer):
    texts = neutral.read_texts()
    lengths = [len(tokenizer(t).input_ids) for t in texts]
    assert len(texts) >= 30 and min(lengths) >= 90 and max(lengths) <= 220, lengths
    mc = side_effects.mc_dataset(None, None)
    assert len(mc) >= 60 and 0.4 <= np.mean([e.pos_is_A for e in mc.examples]) <= 0.6


def test_kl_zero_at_zero_and_grows_with_multiplier(tiny_llama, rows):
    mults = [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]
    out = neutral.neutral_grid(tiny_llama, rows, _vectors(tiny_llama, 0.3), [0, 2], mults)
    kl = out[..., 0]
    assert np.all(kl[:, 3] == 0)
    assert np.all(kl[:, [0, 1, 2]] > 0) and np.all(kl[:, [4, 5, 6]] > 0)
    for j in range(2):  # larger |multiplier| on each side: larger KL
        assert kl[j, 0] > kl[j, 1] > kl[j, 2] and kl[j, 6] > kl[j, 5] > kl[j, 4]


def test_fast_grid_equals_full_forward_reference(tiny, tokenizer):
    """Both KL and perplexity, both model families, within REL_TOL relative (ABS_TOL absolute for KL)."""
    rows = neutral.tokenize_texts(tiny, neutral.read_texts()[3:6], max_tokens=16)
    rows[1] = rows[1][:9]  # unequal lengths: padding must not leak into the sums
    vectors = _vectors(tiny, 1.0)
    mults = [-1.0, 0.0, 0.5, 2.0]
    fast = neutral.neutral_grid(tiny, rows, vectors, [0, 1, 3], mults, batch_size=2)
    ref = neutral.reference_neutral(tiny, rows, vectors, [0, 1, 3], mults)
    np.testing.assert_allclose(fast[..., 0], ref[..., 0], rtol=REL_TOL, atol=ABS_TOL)
    np.testing.assert_allclose(fast[..., 1], ref[..., 1], rtol=REL_TOL)


def test_perplexity_of_a_known_text_by_hand(tiny_llama):
    ids = neutral.tokenize_texts(tiny_llama, ["The cat sat on the mat."])[0]
    with torch.no_grad():
        logits = tiny_llama.model(input_ids=torch.tensor([ids])).logits[0].double().numpy()
    nll = 0.0
    for t in range(len(ids) - 1):  # -log softmax(logits[t])[ids[t+1]], written out
        row = logits[t]
        nll += math.log(sum(math.exp(v - row.max()) for v in row)) + row.max() - row[ids[t + 1]]
    by_hand = math.exp(nll / (len(ids) - 1))
    grid = neutral.neutral_grid(tiny_llama, [ids], _vectors(tiny_llama, 0.1), [1], [0.0, 1.0])
    assert grid[0, 0, 1] == pytest.approx(by_hand, rel=1e-4)
    prompt = tiny_llama.tokenizer.decode(ids[1:4])
    assert coherence.perplexity(tiny_llama, prompt, tiny_llama.tokenizer.decode(ids[4:])) > 1


def test_capability_counts_on_a_constructed_file(tiny_llama, tmp_path):
    items = [("Which is larger?", "ten", "two"), ("Which is a colour?", "red", "dog"),
             ("Which is wet?", "water", "sand"), ("Which can fly?", "bird", "stone"), ("Which is hot?", "fire", "ice")]
    path = tmp_path / "mc.jsonl"
    with path.open("w") as f:
        for i, (q, right, wrong) in enumerate(items):
            a, b = (right, wrong) if i % 2 == 0 else (wrong, right)
            f.write(json.dumps({"question": f"{q}\n\nChoices:\n (A) {a}\n (B) {b}",
                                "answer_matching_behavior": " (A)" if i % 2 == 0 else " (B)"}) + "\n")
    mc = side_effects.mc_dataset(str(path), None)
    cfg = SweepConfig(multipliers=[0.0, 1.0])
    vectors = _vectors(tiny_llama, 2.0)
    acc, prob = side_effects.capability(tiny_llama, mc, 5, {1: vectors[1]}, [1], cfg)
    pairs = [encode_example(tiny_llama.tokenizer, e, "BASE", mc.name, cfg.system) for e in mc.examples]
    for k, m in enumerate([0.0, 1.0]):
        lp = np.array([reference_propensity(tiny_llama, p, 1, vectors[1], m, "answer", "logprob_diff") for p in pairs])
        assert acc[0, k] == pytest.approx(np.mean(lp > 0))  # an exact count of correct items out of 5
        assert prob[0, k] == pytest.approx(np.mean(1 / (1 + np.exp(-lp))), abs=1e-4)


def _table(rng) -> pd.DataFrame:
    rows = [{"layer": l, "multiplier": m, "kl": 0.02 * l * abs(m), "val_gain": rng.normal() + m,
             "test_gain": rng.normal() + m} for l in range(6) for m in (-1.0, 0.0, 0.5, 1.0, 2.0)]
    return pd.DataFrame(rows)


def test_recommendation_is_chosen_on_validation_only():
    df = _table(np.random.default_rng(0))
    rec = tradeoff.recommend(df, kl_budget=0.1)
    assert rec["found"] and rec["kl"] <= 0.1 and rec["multiplier"] > 0
    ok = df[(df.multiplier > 0) & (df.kl <= 0.1)]
    assert rec["val_gain"] == ok.val_gain.max()
    assert rec["overestimate"] == pytest.approx(ok.test_gain.max() - rec["test_gain"]) and rec["overestimate"] >= 0
    poisoned = df.copy()  # make another feasible cell look wonderful on test: the choice must not move
    other = ok.index[ok.val_gain.to_numpy().argmin()]
    poisoned.loc[other, "test_gain"] = 1e6
    again = tradeoff.recommend(poisoned, kl_budget=0.1)
    assert (again["layer"], again["multiplier"]) == (rec["layer"], rec["multiplier"])
    assert again["test_chosen_gain"] == 1e6 and again["overestimate"] > 1e5
    assert not tradeoff.recommend(df, kl_budget=-1)["found"]


def _held_out_vectors(monkeypatch, lm, ds, cfg):
    """The vectors validation_propensities steers its validation items with, and the items it measures."""
    import steering.run.sweep as sweep

    seen = {}
    real = sweep.evaluate_grid

    def spy(lm_, pairs, vectors, *a, **k):
        seen.update(vectors={l: v.clone() for l, v in vectors.items()}, n=len(pairs))
        return real(lm_, pairs, vectors, *a, **k)

    monkeypatch.setattr(sweep, "evaluate_grid", spy)
    props, n_fit = side_effects.validation_propensities(lm, ds, cfg, [0, 1], 0.25)
    assert props.shape == (seen["n"], 2, len(cfg.multipliers))
    return seen["vectors"], n_fit


def test_validation_items_are_held_out_of_the_vector(tiny_llama, monkeypatch):
    """Validation items come from the training split, never from test, and never train the vector measured on
    them: flipping their labels leaves that vector unchanged; it equals a vector fitted on the rest alone."""
    from dataclasses import replace

    from steering.core.datasets import load_dataset, split_dataset
    from steering.run.sweep import encode_all, train_vectors

    ds = load_dataset("optimism-demo")
    cfg = SweepConfig(n_train=12, n_test=8, multipliers=[0.0, 1.0])
    fit, val = side_effects.validation_split(ds, cfg, 0.25)
    train, test = split_dataset(ds, 12, 8, 0)
    assert [e.example_id for e in fit + val] == [e.example_id for e in train] and len(val) == 3
    assert not {e.example_id for e in val} & {e.example_id for e in test}

    vecs, n_fit = _held_out_vectors(monkeypatch, tiny_llama, ds, cfg)
    assert n_fit == 9
    flip = {e.example_id for e in val}
    flipped = replace(ds, examples=tuple(
        replace(e, positive=e.negative, negative=e.positive, pos_is_A=not e.pos_is_A) if e.example_id in flip else e
        for e in ds.examples))
    vecs2, _ = _held_out_vectors(monkeypatch, tiny_llama, flipped, cfg)
    on_fit = train_vectors(tiny_llama, encode_all(tiny_llama, fit, cfg, ds.name, "train"), cfg)
    on_all = train_vectors(tiny_llama, encode_all(tiny_llama, train, cfg, ds.name, "train"), cfg)
    for l in (0, 1):
        torch.testing.assert_close(vecs[l], vecs2[l])
        torch.testing.assert_close(vecs[l], on_fit[l])
        assert not torch.allclose(vecs[l], on_all[l])  # the whole training split would give another vector


def test_pareto_frontier():
    keep = tradeoff.pareto(np.array([1.0, 2.0, 1.5, 0.5]), np.array([0.1, 0.3, 0.4, 0.05]))
    assert keep.tolist() == [True, True, False, True]


def test_entanglement_cells_equal_plain_sweeps(tiny_llama, tmp_path):
    """shift[X, Y] against plain sweeps: Y's own stored sweep for the diagonal, and for an off-diagonal a sweep
    of Y's test items with X's vector given (``compute_run(vectors=...)``, nothing trained, its own prompt
    states); the normalised cell is their ratio."""
    from dataclasses import replace

    from steering.analyses.side_effects.entanglement import entanglement, matrix
    from steering.core.datasets import load_dataset
    from steering.run.sweep import compute_run, run_sweep

    names, layer, mult = ["optimism-demo", "corrigibility-demo"], 1, 2.0
    base = SweepConfig(n_train=8, n_test=6, multipliers=[0.0, mult])
    df = entanglement(tiny_llama, names, layer, base, tmp_path, multiplier=mult)
    cells = df.set_index(["steered_with", "measured_on"])
    runs = [run_sweep(replace(base, dataset=n, layers=[layer]), lm=tiny_llama, out=tmp_path) for n in names]
    assert all(r.cached for r in runs)  # the sweeps entanglement trained and stored

    def shift_of(props: pd.DataFrame) -> float:
        by_mult = props[props.layer == layer].groupby("multiplier").propensity.mean()
        return float(by_mult[mult] - by_mult[0.0])

    shift = np.zeros((2, 2))
    for y, ds_name in enumerate(names):
        for x, run_x in enumerate(runs):
            if x == y:
                props = runs[y].propensities
            else:
                cfg = replace(base, dataset=ds_name, layers=[layer])
                props = compute_run(cfg, tiny_llama, load_dataset(ds_name), out=None,
                                    vectors={layer: run_x.vectors[layer]}).frames["propensities.parquet"]
            shift[x, y] = shift_of(props)
            assert cells.loc[(names[x], ds_name), "shift"] == pytest.approx(shift[x, y], rel=1e-5, abs=1e-6)
    assert not np.allclose(shift[0], shift[1])  # the two vectors move the items differently: rows are told apart
    m = matrix(df).to_numpy()
    np.testing.assert_allclose(m, shift / np.diag(shift)[None, :], rtol=1e-5)
    again = entanglement(tiny_llama, names, layer, base, tmp_path, multiplier=mult)
    pd.testing.assert_frame_equal(df, again)  # served from the store


def test_distinct_2():
    assert coherence.distinct_2("the cat sat on the mat") == 1.0
    assert coherence.distinct_2("yes yes yes yes yes") == pytest.approx(1 / 4)
    assert coherence.distinct_2("one") is None


def test_side_effects_stored_and_served(tiny_llama, tmp_path):
    from steering.run.sweep import run_sweep

    cfg = SweepConfig(dataset="optimism-demo", layers=[1, 2], n_train=8, n_test=6, multipliers=[-1.0, 0.0, 1.0])
    result = run_sweep(cfg, lm=tiny_llama, out=tmp_path)
    se = side_effects.SideEffectsConfig(n_texts=2, text_tokens=12, n_mc=6, kl_budget=1e9)
    df, rec, cached = side_effects.ensure(tiny_llama, result, result_ds(), se, tmp_path)
    assert not cached and list(df.columns) == list(side_effects.COLUMNS) and len(df) == 6
    assert (df[df.multiplier == 0].kl == 0).all() and (df[df.multiplier == 0].ppl_ratio == 1).all()
    # a recommendation exactly when some setting helps on the validation items (the budget admits every cell)
    assert rec["found"] == bool((df[df.multiplier > 0].val_gain > 0).any())
    manifest = json.loads((Path(result.run_dir) / "manifest.json").read_text())
    assert manifest["side_effects"]["recommendation"] == rec
    if rec["found"]:
        assert rec["multiplier"] == 1.0 and rec["val_gain"] == df[df.multiplier > 0].val_gain.max()
    from steering.core.results import load_run

    df2, rec2, cached2 = side_effects.ensure(tiny_llama, load_run(result.run_dir), result_ds(), se, tmp_path)
    assert cached2 and rec2 == rec
    pd.testing.assert_frame_equal(df, df2)


def result_ds():
    from steering.core.datasets import load_dataset

    return load_dataset("optimism-demo")


def test_cli_bad_side_effect_input_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "steering", "sweep", "--dataset", "optimism-demo", "--side-effects",
                        "--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: neutral text file not found")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    ([], "needs --datasets A,B,... and --layer L, or --study NAME"),
    (["--study", "nope", "--layer", "1"], "either --study or --datasets/--layer"),
    (["--study", "nope"], "no stored study 'nope'"),
])
def test_entanglement_cli_source_errors_are_one_line(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "steering", "entanglement", *args, "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_long_texts_are_cut_and_a_gutenberg_licence_is_dropped(tmp_path):
    lines = [f"Sentence number {i} of a plain book without blank lines." for i in range(200)]
    book = tmp_path / "book.txt"
    book.write_text("Project Gutenberg licence header\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n"
                    + "\n".join(lines) + "\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nfooter licence\n")
    texts = neutral.read_texts(book, chunk_chars=500)
    assert len(texts) > 10 and all(400 <= len(t) <= 600 for t in texts[:-1])
    assert " ".join(texts) == " ".join(lines)  # every line once, in order; the licence gone
    short = tmp_path / "short.txt"
    short.write_text("First paragraph.\n\nSecond paragraph.")
    assert neutral.read_texts(short) == ["First paragraph.", "Second paragraph."]


def test_a_registered_neutral_source_is_fetched_by_name(tmp_path, monkeypatch):
    import functools
    import hashlib
    import io
    import tarfile

    from steering.core import sources

    text = "\n".join(f"Line {i} of some neutral prose." for i in range(100)).encode()
    archive = tmp_path / "p.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        info = tarfile.TarInfo("p/prose.txt")
        info.size = len(text)
        t.addfile(info, io.BytesIO(text))
    reg = tmp_path / "sources.json"
    reg.write_text(json.dumps({"sources": [{
        "name": "prose", "url": archive.as_uri(), "format": "text", "group": "neutral", "member": "p/prose.txt",
        "archive_sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "sha256": hashlib.sha256(text).hexdigest(), "path": "neutral/prose.txt"}]}))
    real = sources.list_sources
    monkeypatch.setattr(sources, "list_sources", lambda registry=reg: real(registry))
    monkeypatch.setattr(sources, "fetch", functools.partial(sources.fetch, cache_dir=tmp_path / "c", registry=reg))
    texts = neutral.read_texts("prose")
    assert " ".join(texts) == text.decode().replace("\n", " ") and len(texts) > 1
    assert (tmp_path / "c" / "neutral" / "prose.txt").is_file()
    with pytest.raises(neutral.TextError, match=r"not found: nothing\.txt .*registered source \(prose\)"):
        neutral.read_texts("nothing.txt")


def test_weak_own_shift_columns_are_named():
    from steering.analyses.side_effects.entanglement import frame, weak_columns

    shift = np.array([[1.0, 0.5, 0.2], [0.3, 0.8, 0.1], [0.4, 0.9, 0.01]])
    df = frame(["a", "b", "c"], shift)
    assert weak_columns(df) == ["c"]  # |0.01| < 0.1 x median(1, 0.8, 0.01) = 0.08
    assert np.allclose(df[df.measured_on == "c"].normalised, [20.0, 10.0, 1.0])
