"""Side effects on neutral text: the fast grid vs the naive loop, in one process on the same inputs.

    .venv/bin/python bench/bench_side_effects.py [--texts 32] [--tokens 64] [--layers all] [--naive-cells 4]

SmolLM2-135M, 30 layers x 7 multipliers, 32 bundled neutral texts (each cut to --tokens), steering at
every position. The naive loop (one full forward pass per text per cell, plus one unsteered pass per
text) is timed on --naive-cells random (layer, multiplier) cells over all texts and extrapolated to
the whole grid; the sampled cells also check that both give the same KL and perplexity.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import Targets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steering.analyses.side_effects import neutral  # noqa: E402
from steering.core.config import DEFAULT_MULTIPLIERS, parse_layers  # noqa: E402
from steering.engine.models import load_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--texts", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--layers", default="all")
    ap.add_argument("--naive-cells", type=int, default=4)
    args = ap.parse_args()

    lm = load_model(args.model)
    layers = parse_layers(args.layers, lm.n_layers)
    mults = list(DEFAULT_MULTIPLIERS)
    rows = neutral.tokenize_texts(lm, neutral.read_texts(), args.texts, args.tokens)
    gen = torch.Generator().manual_seed(0)
    # Random directions at a typical CAA vector norm for this model (timing does not depend on the direction).
    vectors = {l: (torch.randn(lm.hidden_size, generator=gen) * 0.25).to(lm.device, lm.dtype)
               for l in range(lm.n_layers)}
    n_tok = sum(map(len, rows))
    print(f"{lm.name}: {len(layers)} layers x {len(mults)} multipliers, {len(rows)} texts, {n_tok} tokens, "
          f"torch threads {torch.get_num_threads()}")

    t = time.perf_counter()
    fast = neutral.neutral_grid(lm, rows, vectors, layers, mults)
    t_fast = time.perf_counter() - t
    print(f"fast grid: {t_fast:.1f} s ({t_fast / (len(layers) * len(mults)):.2f} s per cell)")

    rng = np.random.default_rng(0)
    cells = [(int(rng.integers(len(layers))), int(rng.integers(len(mults)))) for _ in range(args.naive_cells)]
    t = time.perf_counter()
    for r in rows:  # the unsteered passes the naive loop needs too (timed apart)
        neutral.reference_cell(lm, r, None, None, 0.0)
    t_base = time.perf_counter() - t
    t = time.perf_counter()
    worst = 0.0
    for j, k in cells:
        ref = neutral.reference_neutral(lm, rows, vectors, [layers[j]], [mults[k]])[0, 0]
        worst = max(worst, abs(ref[0] - fast[j, k, 0]) / max(ref[0], 1e-3), abs(ref[1] - fast[j, k, 1]) / ref[1])
    t_cells = time.perf_counter() - t
    # reference_neutral re-runs the unsteered passes per call: take them out of the per-cell time.
    per_cell = (t_cells - len(cells) * t_base) / len(cells)
    t_naive = t_base + per_cell * len(layers) * len(mults)
    print(f"naive loop: {per_cell:.2f} s per cell, measured on {len(cells)} cells; "
          f"extrapolated to {len(layers) * len(mults)} cells: {t_naive:.1f} s")
    print(f"max relative difference fast vs naive on the sampled cells (KL, perplexity): {worst:.2e}")
    targets = Targets()
    targets.check("naive / fast time", t_naive / t_fast, 3, higher_is_better=True, unit="x")
    return targets.exit_code()


if __name__ == "__main__":
    sys.exit(main())
