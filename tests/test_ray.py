"""The Ray executor on a local 2-CPU cluster and the tiny random model.

Groups are built by hand here (one training per (model, dataset, train variant)),
and every cell is compared with ``sweep.run_sweep`` run locally: the tables must
be identical, whatever happens to the workers.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
import torch

ray = pytest.importorskip("ray")

from steering.analyses.study import ray_executor  # noqa: E402
from steering.core.config import SweepConfig  # noqa: E402
from steering.core.datasets import load_dataset  # noqa: E402
from steering.engine.tiny import TINY_MODEL, tiny_random_model  # noqa: E402
from steering.errors import SweepError  # noqa: E402
from steering.run.sweep import run_sweep  # noqa: E402

TABLES = ("propensities", "steerability", "train", "test")


def _groups() -> list[list[SweepConfig]]:
    def cell(train: str, test: str) -> SweepConfig:
        return SweepConfig(model=TINY_MODEL, dataset="corrigibility-demo", layers=[1, 2], n_train=8, n_test=6,
                           train_variant=train, test_variant=test)

    return [[cell("BASE", "BASE"), cell("BASE", "SYS_NEG"), cell("BASE", "USER_POS")],
            [cell("SYS_POS", "BASE"), cell("SYS_POS", "SYS_POS")]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local 2-CPU Ray; yields the marker file that makes a worker crash once when it exists."""
    marker = tmp_path_factory.mktemp("crash") / "once"
    env = {**ray_executor.runtime_env(), "env_vars": {ray_executor.CRASH_ONCE_ENV: str(marker)}}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=env, log_to_driver=False)
    yield marker
    ray.shutdown()


@pytest.fixture(scope="module")
def datasets():
    ds = load_dataset("corrigibility-demo")
    return {"corrigibility-demo": ds}


@pytest.fixture(scope="module")
def local(tmp_path_factory, datasets):
    """Each cell through the local sweep, one process, its own store."""
    out = tmp_path_factory.mktemp("local")
    lm = tiny_random_model()
    return [[run_sweep(cfg, lm=lm, out=out, dataset=datasets[cfg.dataset]) for cfg in g] for g in _groups()]


def _same(got, want) -> None:
    for g_got, g_want in zip(got, want, strict=True):
        for a, b in zip(g_got, g_want, strict=True):
            assert a.run_dir.name == b.run_dir.name  # same settings key
            for name in TABLES:
                pd.testing.assert_frame_equal(getattr(a, name).reset_index(drop=True),
                                              getattr(b, name).reset_index(drop=True), check_exact=True)
            assert a.layers == b.layers
            for l in a.layers:
                assert torch.equal(a.vectors[l].float(), b.vectors[l].float())


def test_ray_gives_the_local_tables_and_resumes(cluster, local, datasets, tmp_path):
    seen = []
    got = ray_executor.run_groups_ray(_groups(), tmp_path, datasets, progress=lambda p, d, t: seen.append(p))
    _same(got, local)
    assert [s.split(" · ")[0] for s in seen] == [f"cell {k}/5" for k in range(1, 6)]  # per-cell progress
    assert all(s.endswith(" · stored") and "corrigibility-demo" in s for s in seen)
    # One training per group: every later cell of a group reused the worker's vectors.
    reused = [[r.manifest["vectors_reused"] for r in g] for g in got]
    assert reused == [[False, True, True], [False, True]]
    actor = ray.get_actor(ray_executor.ACTOR_PREFIX + TINY_MODEL)
    before = ray.get(actor.stats.remote())["computed"]
    again = ray_executor.run_groups_ray(_groups(), tmp_path, datasets)  # all from the store
    assert all(r.cached for g in again for r in g)
    assert ray.get(actor.stats.remote())["computed"] == before  # nothing recomputed


def test_lost_worker_loses_no_finished_cell(cluster, local, datasets, tmp_path):
    groups = _groups()
    # A study interrupted earlier left its first cell in the store.
    first = ray_executor.run_groups_ray([groups[0][:1]], tmp_path, datasets)[0][0]
    stamp = json.loads((first.run_dir / "manifest.json").read_text())["created"]
    before = ray.get(ray.get_actor(ray_executor.ACTOR_PREFIX + TINY_MODEL).stats.remote())
    cluster.write_text("crash")  # the worker dies at the start of its next cell
    got = ray_executor.run_groups_ray(groups, tmp_path, datasets)
    assert not cluster.exists(), "the worker never crashed"
    after = ray.get(ray.get_actor(ray_executor.ACTOR_PREFIX + TINY_MODEL).stats.remote())
    assert after["pid"] != before["pid"] and after["computed"] == 4  # a restarted worker retried, then did the rest
    _same(got, local)
    assert got[0][0].cached  # the cell finished before the study started was read, not recomputed
    assert json.loads((first.run_dir / "manifest.json").read_text())["created"] == stamp
    assert len([d for d in tmp_path.iterdir() if not d.name.startswith(".")]) == 5


def test_unreachable_address_is_one_line_and_quick(datasets, tmp_path):
    t = time.time()
    with pytest.raises(SweepError) as e:
        ray_executor.run_groups_ray(_groups(), tmp_path, datasets, ray_address="127.0.0.1:9")
    assert time.time() - t < ray_executor.CONNECT_TIMEOUT_S + 5
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SweepError, match="HOST:PORT"):
        ray_executor.run_groups_ray(_groups(), tmp_path, datasets, ray_address="nonsense")


def test_cli_unreachable_ray_address_exits_2_with_one_line(tmp_path, capsys):
    from steering.cli import main as cli

    t = time.time()
    rc = cli.main(["study", "--name", "far", "--models", TINY_MODEL, "--datasets", "corrigibility-demo",
                   "--n-train", "8", "--n-test", "6", "--layer", "1", "--out", str(tmp_path),
                   "--executor", "ray", "--ray-address", "127.0.0.1:9"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: cannot reach the Ray cluster at 127.0.0.1:9") and err.count("\n") == 1
    assert time.time() - t < 60  # bounded: no long connection retries
