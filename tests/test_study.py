"""Studies on tiny random models: spec expansion, the best-layer rule never touching the test split,
one training per (dataset, train variant) for all its test variants, the stored tables against an
independent recomputation, Spearman against scipy, interrupt and resume, bad specs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from steering.analyses.study import best_layer, executors
from steering.analyses.study import stats as study_stats
from steering.analyses.study.compute import list_studies, load_study, run_study
from steering.analyses.study.spec import (
    OOD_PAIRS,
    StudySpec,
    expand_datasets,
    fixed_layer,
    make_spec,
    paper_datasets,
    parse_layer_rules,
    parse_variants,
)
from steering.cli import main as cli
from steering.core.datasets import load_dataset, split_dataset
from steering.errors import SweepError
from steering.run import sweep

DATASETS = ["corrigibility-demo", "optimism-demo"]
SMALL = dict(n_train=8, n_test=6)


@pytest.fixture
def pool(tiny_llama):
    return {tiny_llama.name: tiny_llama}


def spec_for(lm, name="s", variants="id,ood", datasets=DATASETS, layer="2", **kw) -> StudySpec:
    return make_spec(name, lm.name, datasets, variants, layer, **{**SMALL, **kw})


# ---------------------------------------------------------------- spec expansion


def test_presets_and_registry(shared_datasets):
    fig1 = expand_datasets("paper-figure1", None)
    shared = json.loads((shared_datasets / "paper_datasets.json").read_text())["datasets"]
    assert fig1 == [e["name"] for e in shared if e["in_figure1_subset"]] and len(fig1) == 13
    assert len(paper_datasets()) == len(shared)
    found = expand_datasets("paper", str(shared_datasets))
    assert set(fig1) <= set(found) and "truthfulqa" in found and "sycophancy" in found
    assert expand_datasets("bundled", None) == [
        "corrigibility-demo",
        "humility-persona-demo",
        "optimism-demo",
        "power-seeking-demo",
    ]
    assert expand_datasets("optimism-demo,bundled", None)[0] == "optimism-demo"  # order kept, no duplicates
    assert len(expand_datasets("optimism-demo,bundled", None)) == 4


def test_variant_sets():
    assert parse_variants("id") == [("BASE", "BASE")]
    assert parse_variants("ood") == list(OOD_PAIRS) and len(OOD_PAIRS) == 4
    assert all(p[0] == "BASE" and p[1] != "BASE" for p in OOD_PAIRS)
    assert len(parse_variants("all")) == 25 and len(set(parse_variants("all"))) == 25
    assert parse_variants("id,base:sys_pos,id") == [("BASE", "BASE"), ("BASE", "SYS_POS")]
    for bad in ("foo", "BASE:NOPE", ""):
        with pytest.raises(SweepError):
            parse_variants(bad)


def test_layer_rules():
    assert fixed_layer("12", 30) == 12 and fixed_layer("0.4", 30) == 12 and fixed_layer("1.0", 30) == 29
    assert fixed_layer("0.0", 30) == 0 and fixed_layer("best", 30) is None
    with pytest.raises(SweepError):
        fixed_layer("30", 30)
    assert parse_layer_rules("0.4", ["a", "b"]) == {"a": "0.4", "b": "0.4"}
    assert parse_layer_rules("a=best,b=3", ["a", "b"]) == {"a": "best", "b": "3"}
    for bad in ("1.5", "-1", "middle", "a=3"):
        with pytest.raises(SweepError):
            parse_layer_rules(bad, ["a", "b"])


def test_bad_specs(tmp_path, capsys):
    for kwargs in (
        dict(name="a b"),
        dict(models=""),
        dict(datasets=""),
        dict(variants="x:y"),
        dict(layer="deep"),
        dict(multipliers=[1.0, 1.0]),
    ):
        args = dict(name="ok", models="tiny-random", datasets="optimism-demo", variants="id", layer="1")
        args.update(kwargs)
        with pytest.raises(SweepError):
            make_spec(**args)
    out = tmp_path / "res"
    for argv in (
        ["--datasets", "nope-dataset"],
        ["--datasets", "optimism-demo", "--n-train", "100"],
        ["--datasets", "optimism-demo", "--variants", "sideways"],
        ["--datasets", "optimism-demo", "--executor", "ray", "--ray-address", "127.0.0.1:9"],
    ):
        rc = cli.main(
            [
                "study",
                "--name",
                "bad",
                "--models",
                "tiny-random",
                "--n-train",
                "8",
                "--n-test",
                "6",
                "--layer",
                "1",
                "--out",
                str(out),
            ]
            + argv
        )
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not (out / "studies" / "bad").exists()


def test_ray_executor_missing_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(executors.importlib.util, "find_spec", lambda name: None)  # as without ray_executor
    with pytest.raises(SweepError, match="ray executor is not installed"):
        executors.run_groups([], "x", {}, executor="ray")
    with pytest.raises(SweepError, match="unknown executor"):
        executors.run_groups([], "x", {}, executor="dask")


# ---------------------------------------------------------------- best layer


def test_best_layer_never_reads_the_test_split(tiny_llama, monkeypatch):
    ds = load_dataset("optimism-demo")
    spec = spec_for(tiny_llama, layer="best")
    cfg = spec.config(tiny_llama.name, ds.name, ("BASE", "BASE"), 0)
    _, test_ex = split_dataset(ds, cfg.n_train, cfg.n_test, cfg.seed)
    poison = "POISONED TEST ITEM"
    test_ids = {e.example_id for e in test_ex}
    poisoned = replace(
        ds,
        examples=tuple(
            replace(e, question=f"{poison} {e.question}") if e.example_id in test_ids else e for e in ds.examples
        ),
    )
    seen: list[str] = []
    real = best_layer.encode_all

    def spy(lm, examples, *a, **k):
        seen.extend(e.question for e in examples)
        return real(lm, examples, *a, **k)

    monkeypatch.setattr(best_layer, "encode_all", spy)
    clean_layer, clean = best_layer.choose_best_layer(tiny_llama, [ds], [cfg])
    bad_layer, bad = best_layer.choose_best_layer(tiny_llama, [poisoned], [cfg])
    assert seen and not any(poison in q for q in seen)
    assert len(seen) == 2 * cfg.n_train  # fit and validation halves, twice
    assert clean_layer == bad_layer and np.allclose(clean.val_mean_slope, bad.val_mean_slope)
    assert clean_layer == int(clean.groupby("layer").val_mean_slope.mean().idxmax())
    assert sorted(clean.layer.unique()) == list(range(tiny_llama.n_layers))


def test_best_rule_in_a_study(tiny_llama, pool, tmp_path):
    study = run_study(spec_for(tiny_llama, variants="id", layer="best"), tmp_path, models=pool)
    table = pd.DataFrame(study.meta["best_layer"][tiny_llama.name])
    assert study.layer(tiny_llama.name) == int(table.groupby("layer").val_mean_slope.mean().idxmax())
    assert set(study.datasets.layer) == {study.layer(tiny_llama.name)}


# ---------------------------------------------------------------- running and storing


def test_one_training_per_dataset_for_five_test_variants(tiny_llama, pool, tmp_path, monkeypatch):
    calls = []
    real = sweep.train_vectors
    monkeypatch.setattr(sweep, "train_vectors", lambda *a, **k: calls.append(1) or real(*a, **k))
    study = run_study(spec_for(tiny_llama), tmp_path, models=pool)
    assert len(study.meta["cells"]) == 2 * 5
    assert len(calls) == 2  # one per dataset
    assert sum(not c["vectors_reused"] for c in study.meta["cells"]) == 2
    assert len({c["train_key"] for c in study.meta["cells"]}) == 2
    # a new test variant costs only its test passes
    more = run_study(spec_for(tiny_llama, name="more", variants="id,ood,SYS_POS:SYS_POS"), tmp_path, models=pool)
    assert len(calls) == 4 and len(more.meta["cells"]) == 12  # SYS_POS training, once per dataset


def test_tables_match_an_independent_recomputation(tiny_llama, pool, tmp_path):
    # Seed 1: the test splits mix A and B (seed 0's happen to be all A, leaving every A/B share undefined).
    study = run_study(spec_for(tiny_llama, datasets=DATASETS + ["humility-persona-demo"], seed=1), tmp_path,
                      models=pool)
    on_disk = pd.read_parquet(study.path / "datasets.parquet")
    ex = pd.read_parquet(study.path / "examples.parquet")
    assert set(ex.columns) >= {"slope", "anti_steerable", "baseline", "pos_is_A", "pos_is_yes", "example_id"}
    pd.testing.assert_frame_equal(on_disk, study_stats.dataset_rows(ex, seed=0))
    assert len(on_disk) == 15 and (on_disk.n == 6).all()
    for row in on_disk.itertuples():
        g = ex[(ex.dataset == row.dataset) & (ex.test_variant == row.test_variant)]
        s = g.slope.to_numpy()
        assert row.median_slope == pytest.approx(np.median(s)) and row.mean_slope == pytest.approx(s.mean())
        assert row.frac_anti == pytest.approx(1 - np.mean(s > 0)) and row.var_slope == pytest.approx(s.var())
        assert (g.anti_steerable == (g.slope <= 0)).all()
        assert row.frac_anti_lo <= row.frac_anti <= row.frac_anti_hi
        a, yes = g.pos_is_A.to_numpy(dtype=float), pd.to_numeric(g.pos_is_yes, errors="coerce").to_numpy(dtype=float)
        a_varies = a.std() > 0
        yes_varies = bool(np.isfinite(yes).all() and yes.std() > 0)
        varies = [f for f, ok in ((a, a_varies), (yes, yes_varies)) if ok]
        if not varies:  # e.g. a persona split whose positive answers are all "(A) Yes": nothing to explain with
            assert np.isnan([row.share_ab, row.share_yes, row.share_unexplained]).all()
            assert "no factor varies" in row.share_why
            continue
        assert row.share_unexplained == pytest.approx(1 - _direct_r2(s, varies))
        r2_a = _direct_r2(s, [a]) if a_varies else 0.0
        if a_varies:
            assert row.share_ab == pytest.approx(r2_a)
        else:  # e.g. a persona split with every positive answer under (A): undefined, not 0
            assert np.isnan(row.share_ab) and "A/B share undefined: every positive answer has the same" in row.share_why
        if yes_varies:
            assert row.share_yes == pytest.approx(_direct_r2(s, varies) - r2_a)
        else:  # A/B concepts have no Yes/No answer: undefined, not 0
            assert np.isnan(row.share_yes) and "Yes/No share undefined: no item has" in row.share_why
    assert (on_disk.share_why != "").any() and on_disk.share_ab.notna().any()  # undefined and defined shares occur
    # the stored slopes are the runs' own
    cell = study.meta["cells"][0]
    run = pd.read_parquet(tmp_path / cell["run_dir"] / "steerability.parquet")
    mine = ex[(ex.dataset == cell["dataset"]) & (ex.test_variant == cell["test_variant"])]
    assert np.allclose(run.slope.to_numpy(), mine.slope.to_numpy())


def _direct_r2(y, cols):
    X = np.column_stack([np.ones(len(y))] + cols)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    return 1 - ((y - X @ beta) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def test_spurious_shares_against_a_direct_least_squares_fit():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, 40).astype(float)
    yes = rng.integers(0, 2, 40).astype(float)
    y = 1.5 * a - 0.7 * yes + rng.normal(0, 0.5, 40)
    ab, sy, rest, why = study_stats.spurious_shares(y, a, yes)
    assert ab == pytest.approx(_direct_r2(y, [a])) and ab > 0.3
    assert ab + sy == pytest.approx(_direct_r2(y, [a, yes])) and sy > 0.05
    assert rest == pytest.approx(1 - _direct_r2(y, [a, yes])) and why == ""
    ab, sy, rest, why = study_stats.spurious_shares(y, a, np.full(40, np.nan))  # an A/B dataset: no Yes/No factor
    assert ab == pytest.approx(_direct_r2(y, [a])) and rest == pytest.approx(1 - ab)
    assert np.isnan(sy) and why == "Yes/No share undefined: no item has a Yes/No answer"
    # pos_is_A constant (every positive answer under A): the A/B share is undefined, Yes/No alone explains
    ab, sy, rest, why = study_stats.spurious_shares(y, np.ones(40), yes)
    assert np.isnan(ab) and "A/B share undefined: every positive answer has the same letter" in why
    assert sy == pytest.approx(_direct_r2(y, [yes])) and rest == pytest.approx(1 - sy)


@pytest.mark.parametrize("slopes, pos_is_A, pos_is_yes, reason", [
    ([0.3] * 6, [1, 0] * 3, [np.nan] * 6, "the slopes do not vary"),
    ([0.1, 0.5, 0.2, 0.9], [1] * 4, [np.nan] * 4, "no factor varies"),
    ([0.1, 0.5, 0.2, 0.9], [1] * 4, [1, 1, np.nan, 0], "not every item has a Yes/No answer"),
    ([0.1, 0.5], [1, 0], [np.nan] * 2, "2 item(s), at least 3 needed"),
])
def test_undefined_shares_are_missing_with_a_reason_not_one(slopes, pos_is_A, pos_is_yes, reason):
    """The old code turned these into share_unexplained = 1.0 (and share_yes = 0)."""
    *shares, why = study_stats.spurious_shares(slopes, pos_is_A, pos_is_yes)
    assert all(np.isnan(v) for v in shares) and reason in why
    assert study_stats.share_text(shares[2], 9) == "undefined"
    rows = study_stats.dataset_rows(pd.DataFrame({
        "model": "m", "dataset": "d", "train_variant": "BASE", "test_variant": "BASE", "layer": 1,
        "example_id": [f"e{i}" for i in range(len(slopes))], "slope": slopes, "anti_steerable": False,
        "baseline": 0.0, "pos_is_A": [bool(v) for v in pos_is_A],
        "pos_is_yes": pd.array([None if np.isnan(v) else bool(v) for v in pos_is_yes], dtype="boolean")}))
    assert rows.share_unexplained.isna().all() and reason in rows.share_why.iloc[0]
    from steering.analyses.study.figures import spurious_bars

    notes = [a.text for a in spurious_bars(rows).layout.annotations]
    assert notes == [f"undefined ({rows.share_why.iloc[0]})"]  # an empty bar says why


def test_a_study_stored_before_undefined_shares_is_recomputed_on_load(tiny_llama, pool, tmp_path):
    study = run_study(spec_for(tiny_llama, variants="id"), tmp_path, models=pool)
    old = study.datasets.drop(columns="share_why")
    old["share_ab"], old["share_yes"], old["share_unexplained"] = 0.0, 0.0, 1.0  # what the old code stored
    old.to_parquet(study.path / "datasets.parquet")
    again = load_study(tmp_path, "s").datasets
    pd.testing.assert_frame_equal(again, study.datasets)
    assert again.share_unexplained.isna().all()  # seed 0's test splits are all (A) and A/B-only: nothing varies


def test_spearman_against_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 5, 13).astype(float)  # ties
        y = x + rng.normal(0, 2, 13)
        assert study_stats.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert np.isnan(study_stats.spearman([1, 2], [2, 1]))
    d = pd.DataFrame(
        {
            "model": "m",
            "dataset": list("abcd") * 2,
            "train_variant": "BASE",
            "test_variant": ["BASE"] * 4 + ["SYS_POS"] * 4,
            "median_slope": [1, 2, 3, 4, 4, 3, 2, 1.5],
        }
    )
    rho = study_stats.id_vs_ood(d)
    assert rho.rho.iloc[0] == pytest.approx(-1.0) and rho.pair.iloc[0] == "BASE->SYS_POS"
    two = pd.concat([d, d.assign(model="n", median_slope=[4, 3, 2, 1, 1, 2, 3, 4])])
    cross = study_stats.cross_model(two)
    assert list(cross.rho) == pytest.approx([-1.0, -1.0])


def test_interrupt_and_resume(tiny_llama, pool, tmp_path, monkeypatch):
    spec = spec_for(tiny_llama)

    def stop_at_cell_4(phase, done, total):
        if phase.startswith("cell 4/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path, progress=stop_at_cell_4, models=pool)
    assert not (tmp_path / "studies" / spec.name).exists() and list_studies(tmp_path) == []
    computed = []
    real = sweep.compute_run
    monkeypatch.setattr(
        sweep, "compute_run", lambda cfg, *a, **k: computed.append(cfg.test_variant) or real(cfg, *a, **k)
    )
    phases = []
    study = run_study(spec, tmp_path, progress=lambda p, d, t: phases.append(p), models=pool)
    assert len(computed) == 10 - 3  # the three finished cells came from the store
    assert sum(p.endswith("· stored") for p in phases) == 3
    assert [s["name"] for s in list_studies(tmp_path)] == [spec.name]
    computed.clear()
    again = run_study(spec, tmp_path, models=pool)  # the stored study: nothing recomputed
    assert computed == [] and again.meta["created"] == study.meta["created"]
    pd.testing.assert_frame_equal(load_study(tmp_path, spec.name).datasets, study.datasets)
    with pytest.raises(SweepError, match="exists with other settings"):
        run_study(spec_for(tiny_llama, variants="id"), tmp_path, models=pool)


def test_progress_reports_cells_and_study_fraction(tiny_llama, pool, tmp_path):
    seen = []
    run_study(
        spec_for(tiny_llama, variants="id,BASE:SYS_POS", datasets=DATASETS[:1]),
        tmp_path,
        progress=lambda p, d, t: seen.append((p, d, t)),
        models=pool,
    )
    assert seen[0][0].startswith("cell 1/2 · corrigibility-demo BASE->BASE · ")
    assert any(p.startswith("cell 2/2 · corrigibility-demo BASE->SYS_POS · grid") for p, _, _ in seen)
    fracs = [executors.study_fraction(*s) for s in seen]
    assert fracs[-1] == 1.0 and all(b >= a - 1e-9 for a, b in zip(fracs, fracs[1:]))


def test_cli_prints_the_sorted_table_and_lists_studies(tmp_path, capsys):
    args = [
        "study",
        "--name",
        "c",
        "--models",
        "tiny-random",
        "--datasets",
        "corrigibility-demo,optimism-demo,power-seeking-demo",
        "--variants",
        "id,BASE:SYS_POS",
        "--layer",
        "1",
        "--n-train",
        "8",
        "--n-test",
        "6",
        "--out",
        str(tmp_path),
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    study = load_study(tmp_path, "c")
    for (train, test), g in study.datasets.groupby(["train_variant", "test_variant"]):
        block = out.split(f"{train}->{test} · sorted by median steerability")[1].split("\n\n")[0]
        lines = block.strip().splitlines()[1:]
        listed = [line.split()[0] for line in lines if not line.startswith(" ")]
        assert listed == list(g.sort_values("median_slope", ascending=False).dataset)
        # A/B concepts: the Yes/No share is printed as undefined, with the reason on the next line
        assert all(row.split()[-2] == "undefined" for row in lines if not row.startswith(" "))
        assert sum("Yes/No share undefined: no item has a Yes/No answer" in line for line in lines) == len(g)
    assert "BASE->BASE vs BASE->SYS_POS" in out and f"study directory: {study.path}" in out
    assert cli.main(["studies", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("c ")


def test_entanglement_from_a_stored_study_reuses_its_vectors(tiny_llama, pool, tmp_path, monkeypatch):
    """The study's concepts, layer and settings; no vector is trained again, and the matrix equals the one
    computed from the same concept list in an empty store (trained from scratch)."""
    from steering.analyses.side_effects import entanglement as ent

    study = run_study(spec_for(tiny_llama, variants="id"), tmp_path, models=pool)
    names, layer, base = ent.from_study(load_study(tmp_path, "s"), tiny_llama.name)
    assert layer == 2 and (base.n_train, base.n_test) == (8, 6) and len(names) == 2
    trained = []
    real = sweep.train_vectors
    monkeypatch.setattr(sweep, "train_vectors", lambda *a, **k: trained.append(1) or real(*a, **k))
    df = ent.entanglement(tiny_llama, names, layer, base, tmp_path, multiplier=2.0)
    assert not trained  # every concept's vector came from the study's stored runs
    fresh = ent.entanglement(tiny_llama, DATASETS, 2, replace(base, data_dir=None), tmp_path / "fresh", 2.0)
    assert trained  # the empty store had to train
    # The raw shifts, not only their ratios (a common scale would cancel in the normalised matrix).
    pd.testing.assert_frame_equal(ent.matrix(df, "shift"), ent.matrix(fresh, "shift"), rtol=1e-5)
    pd.testing.assert_frame_equal(ent.matrix(df), ent.matrix(fresh), rtol=1e-5)
    with pytest.raises(ValueError, match="not in study"):
        ent.from_study(study, "no-such-model")
    with pytest.raises(ValueError, match="variant pair"):
        ent.from_study(study, None, ("BASE", "SYS_POS"))
