"""Fast sweep vs the floor and the reference path, in one process on the same inputs.

    .venv/bin/python bench/bench_sweep.py [--n-train 100] [--n-test 50] [--sample 4]

SmolLM2-135M, corrigible-neutral-HHH from ../shared/datasets, all layers x 7
multipliers. Prints times, ratios, slider latency and peak memory.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import numpy as np
import torch
from bench_common import add_data_dir, missing

from steering.core.config import DEFAULT_MULTIPLIERS, SweepConfig
from steering.core.datasets import load_dataset, split_dataset
from steering.core.prompts import encode_example
from steering.engine import fast
from steering.engine import reference as evaluate
from steering.engine.models import load_model
from steering.run.sweep import train_vectors


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


@torch.no_grad()
def floor_pass(lm, pairs, batch_size=16):
    """Unsteered batched forward over prompt + completion, positive and negative sequences."""
    seqs = [list(p.prompt_ids + c) for p in pairs for c in (p.pos_ids, p.neg_ids)]
    seqs.sort(key=len)
    pad = lm.tokenizer.pad_token_id
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i : i + batch_size]
        w = max(map(len, chunk))
        ids = torch.tensor([s + [pad] * (w - len(s)) for s in chunk])
        mask = torch.tensor([[1] * len(s) + [0] * (w - len(s)) for s in chunk])
        lm.model(input_ids=ids, attention_mask=mask)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=50)
    ap.add_argument("--slider-n", type=int, default=100)
    ap.add_argument("--sample", type=int, default=4, help="test examples in the reference sample")
    add_data_dir(ap)
    args = ap.parse_args()
    if missing(args.data_dir):
        return 0
    torch.set_grad_enabled(False)
    lm = load_model("smollm2-135m", device="cpu")
    ds = load_dataset("corrigible-neutral-HHH", args.data_dir)
    train, test = split_dataset(ds, args.n_train, args.n_test + args.slider_n, seed=0)
    test, slider_set = test[: args.n_test], test
    enc = lambda exs: [encode_example(lm.tokenizer, e, "BASE", ds.name) for e in exs]  # noqa: E731
    train_pairs, test_pairs, slider_pairs = enc(train), enc(test), enc(slider_set[: args.slider_n])
    layers = list(range(lm.n_layers))
    mults = list(DEFAULT_MULTIPLIERS)
    cfg = SweepConfig(dataset=ds.name)
    fast.check_fast_path(lm)  # once per model; warm-up too
    n_tok = np.mean([len(p.prompt_ids) for p in test_pairs])
    print(f"SmolLM2-135M on {torch.get_num_threads()} threads | {ds.name} | train {len(train_pairs)} | "
          f"test {len(test_pairs)} (mean prompt {n_tok:.0f} tokens) | {len(layers)} layers x {len(mults)} multipliers")

    # 1. fast full sweep, training included
    vectors, t_train = timed(lambda: train_vectors(lm, train_pairs, cfg))
    cache, t_cache = timed(lambda: fast.build_cache(lm, test_pairs))
    props, t_grid = timed(lambda: fast.grid(lm, cache, vectors, layers, mults))
    t_fast = t_train + t_cache + t_grid
    cells = len(layers) * len(mults)
    print(f"fast sweep          {t_fast:8.1f} s  (train {t_train:.1f}, prompt states {t_cache:.1f}, "
          f"grid {t_grid:.1f}); per cell {1000 * t_fast / cells:.0f} ms for {len(test_pairs)} examples")

    # 2. floor: the unsteered passes any method needs
    _, t_floor_test = timed(lambda: floor_pass(lm, test_pairs))
    _, t_floor_train = timed(lambda: floor_pass(lm, train_pairs))
    t_floor = t_floor_test + t_floor_train
    print(f"floor               {t_floor:8.1f} s  (test {t_floor_test:.1f}, train {t_floor_train:.1f})")

    # 3. reference path on a sample of cells, extrapolated
    sample = test_pairs[: args.sample]
    sample_layers = [2, lm.n_layers // 2, lm.n_layers - 2]
    ref, t_ref_sample = timed(lambda: evaluate.reference_grid(lm, sample, vectors, sample_layers, mults))
    per_pass = t_ref_sample / (len(sample) * len(sample_layers) * len(mults))
    tr_sample = train_pairs[:10]
    _, t_ref_tr = timed(lambda: evaluate.reference_differences(lm, tr_sample))
    t_ref = per_pass * len(test_pairs) * cells + t_ref_tr / len(tr_sample) * len(train_pairs)
    idx = [layers.index(l) for l in sample_layers]
    max_diff = np.abs(props[: len(sample)][:, idx] - ref).max()
    print(f"reference (extrap.) {t_ref:8.1f} s  ({1000 * per_pass:.0f} ms per full pass, "
          f"{len(sample) * len(sample_layers) * len(mults)} sampled cells; max |fast - reference| = {max_diff:.1e})")

    # 4. ratios
    print(f"ratios              fast/floor = {t_fast / t_floor:.2f}   reference/fast = {t_ref / t_fast:.1f}   "
          f"reference/floor = {t_ref / t_floor:.1f}")

    # 5. slider latency with warm caches
    slider_cache, t_sc = timed(lambda: fast.build_cache(lm, slider_pairs))
    layer = lm.n_layers // 2
    lat = []
    for m in (0.37, -0.83, 1.21, 2.5, -2.2):
        _, t = timed(lambda: fast.slider(lm, slider_cache, layer, vectors[layer], m))
        lat.append(t)
    print(f"slider              {1000 * statistics.median(lat):8.0f} ms median for {len(slider_pairs)} examples "
          f"at one new multiplier (layer {layer}; prompt states built once in {t_sc:.1f} s, "
          f"{slider_cache.nbytes() / 2**20:.0f} MiB)")

    # 6. memory
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"memory              peak RSS {peak:.0f} MiB; sweep prompt-state cache {cache.nbytes() / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
