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
