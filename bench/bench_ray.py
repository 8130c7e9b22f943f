"""Overhead of the Ray executor: a 6-cell study on the tiny model, Ray (local 2-CPU cluster) vs local.

    .venv/bin/python bench/bench_ray.py [--address 127.0.0.1:6379]

Two groups (train variants BASE and SYS_POS) x three test variants, all 4 layers x 7
multipliers, 16 training and 12 test items. Local: one process, the model loaded once,
``executors.run_groups(executor="local")`` when the studies code is present, else
``sweep.run_sweep`` per cell (what the local executor does). Ray: ``run_groups_ray`` on a
2-CPU cluster started here (or joined with --address); both at one torch thread (a 1-CPU
actor's). Both write fresh stores; the
tables are checked identical. Prints seconds and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steering.analyses.study import ray_executor  # noqa: E402
from steering.core.config import SweepConfig  # noqa: E402
from steering.core.datasets import load_dataset  # noqa: E402
from steering.engine.tiny import TINY_MODEL, smollm2_tokenizer, tiny_random_model  # noqa: E402
from steering.run.sweep import run_sweep  # noqa: E402


def groups() -> list[list[SweepConfig]]:
    def cell(train, test):
        return SweepConfig(
            model=TINY_MODEL,
            dataset="corrigibility-demo",
            layers=[0, 1, 2, 3],
            n_train=16,
            n_test=12,
            train_variant=train,
            test_variant=test,
        )

    return [[cell(tr, te) for te in ("BASE", "SYS_NEG", "USER_POS")] for tr in ("BASE", "SYS_POS")]


def run_local(out, datasets):
    try:
        from steering.analyses.study.executors import run_groups
    except ImportError:
        lm = tiny_random_model()
        return [[run_sweep(c, lm=lm, out=out, dataset=datasets[c.dataset]) for c in g] for g in groups()], "run_sweep"
    return run_groups(groups(), out, datasets, executor="local"), "executors.run_groups(local)"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", default=None, help="join this Ray cluster instead of starting a 2-CPU one")
    args = ap.parse_args()
    import ray

    datasets = {"corrigibility-demo": load_dataset("corrigibility-demo")}
    smollm2_tokenizer()  # read once, so the local timing does not pay for it and Ray's workers do
    # Ray gives a 1-CPU actor one torch thread; the local run gets the same, so the ratio is the executor's
    # overhead. (On this shared 2-core machine, 2 threads under load spin-wait: 30x slower on the tiny model.)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        local, how = run_local(Path(tmp) / "local", datasets)
        t_local = time.perf_counter() - t
        t = time.perf_counter()  # again into a fresh store: warm caches, like the warm actor below
        run_local(Path(tmp) / "local2", datasets)
        t_local_warm = time.perf_counter() - t

        t = time.perf_counter()
        if args.address:
            ray_executor.check_reachable(args.address)
            ray.init(address=args.address, runtime_env=ray_executor.runtime_env(), log_to_driver=False)
        else:
            ray.init(num_cpus=2, include_dashboard=False, runtime_env=ray_executor.runtime_env(), log_to_driver=False)
        t_init = time.perf_counter() - t
        t = time.perf_counter()
        got = ray_executor.run_groups_ray(groups(), Path(tmp) / "ray", datasets)
        t_ray = time.perf_counter() - t
        t = time.perf_counter()  # the same study again on the warm actor, into a fresh store
        ray_executor.run_groups_ray(groups(), Path(tmp) / "ray2", datasets)
        t_warm = time.perf_counter() - t
        ray.shutdown()
        for gl, gr in zip(local, got):
            for a, b in zip(gl, gr):
                for name in ("propensities", "steerability"):
                    pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
    print("6-cell study, tiny model, 4 layers x 7 multipliers, 16 train / 12 test items per cell")
    print(
        f"local ({how}, model loaded once, torch threads {torch.get_num_threads()}): {t_local:6.2f} s, "
        f"again (fresh store) {t_local_warm:6.2f} s"
    )
    print(f"ray cluster start (ray.init{' ' + args.address if args.address else ', 2 CPUs'}): {t_init:6.2f} s")
    print(f"ray, first study (actor start + model load + 6 cells): {t_ray:6.2f} s = {t_ray / t_local:.2f}x local")
    print(
        f"ray, same study on the warm actor (fresh store): {t_warm:6.2f} s = {t_warm / t_local_warm:.2f}x local again"
    )
    print("tables identical: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
