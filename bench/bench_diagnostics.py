"""A one-layer sweep with diagnostics (--null 8 --swap) against the plain sweep, in one process.

    .venv/bin/python bench/bench_diagnostics.py [--layer 12] [--n-train 100] [--n-test 50]

SmolLM2-135M, corrigible-neutral-HHH from ../shared/datasets, 7 multipliers.
Both runs train their vectors (no store) and evaluate the same test items;
the null vectors are extra grid cells on the cached prompt states, the swap
one prompt pass of its own. Target: diagnostics / plain <= 2.5. Also checks
the null cells against the reference path on a small sample.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import Targets, add_data_dir, missing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steering.core.config import SweepConfig  # noqa: E402
from steering.core.datasets import load_dataset  # noqa: E402
from steering.engine import fast  # noqa: E402
from steering.engine.models import load_model  # noqa: E402
from steering.engine.multivector import grid_many, reference_many  # noqa: E402
from steering.run.diagnostics.compute import random_vectors  # noqa: E402
from steering.run.sweep import compute_run  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layer", type=int, default=12)
    ap.add_argument("--n-train", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=50)
    ap.add_argument("--null", type=int, default=8)
    add_data_dir(ap)
    args = ap.parse_args()
    if missing(args.data_dir):
        return 0
    torch.set_grad_enabled(False)
    lm = load_model("smollm2-135m", device="cpu")
    ds = load_dataset("corrigible-neutral-HHH", args.data_dir)
    fast.check_fast_path(lm)  # once per model; warm-up too
    base = dict(dataset=ds.name, layers=[args.layer], n_train=args.n_train, n_test=args.n_test)
    print(f"SmolLM2-135M on {torch.get_num_threads()} threads | {ds.name} | layer {args.layer} | "
          f"train {args.n_train} | test {args.n_test} | 7 multipliers")
    plain, t_plain = timed(lambda: compute_run(SweepConfig(**base), lm, ds, out=None))
    diag, t_diag = timed(lambda: compute_run(SweepConfig(**base, null=args.null, swap=True), lm, ds, out=None))
    same = np.abs(plain.frames["steerability.parquet"].slope.to_numpy()
                  - diag.frames["steerability.parquet"].slope.to_numpy()).max()
    print(f"plain sweep               {t_plain:7.1f} s")
    print(f"--null {args.null} --swap           {t_diag:7.1f} s  ({2 * args.null} null vectors x 7 multipliers on the "
          f"cached states + 1 swapped prompt pass)")
    print(f"max |slope difference| of the shared grid {same:.1e}")
    targets = Targets()
    targets.check("diagnostics / plain sweep time", t_diag / t_plain, 2.5, higher_is_better=False, unit="x")

    # Null cells: fast (cached states) vs reference (full forward) on a sample.
    from steering.core.datasets import split_dataset
    from steering.core.swap import encode_for_metric

    _, test = split_dataset(ds, args.n_train, args.n_test, 0)
    pairs = [encode_for_metric(lm.tokenizer, e, "BASE", ds.name) for e in test[:3]]
    vecs = random_vectors(plain.vectors[args.layer].float().cpu(), 2, 0)
    mults = [-1.0, 0.0, 1.0]
    cache = fast.build_cache(lm, pairs)
    f, t_f = timed(lambda: grid_many(lm, cache, args.layer, vecs, mults))
    r, t_r = timed(lambda: reference_many(lm, pairs, args.layer, vecs, mults))
    print(f"null cells, 3 items x 2 vectors x 3 multipliers: fast {t_f:.2f} s, reference {t_r:.2f} s "
          f"(reference/fast {t_r / t_f:.1f}x), max |fast - reference| = {np.abs(f - r).max():.1e}")
    return targets.exit_code()


if __name__ == "__main__":
    sys.exit(main())
