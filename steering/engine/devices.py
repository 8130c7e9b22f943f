"""Where a model's pieces live and how much work fits on its device.

Covers what differs on accelerators: the default dtype (bfloat16 on CUDA), models
spread over several GPUs with ``device_map="auto"`` (accelerate's dispatch hooks on
each block), weights offloaded to CPU or disk (not usable by the fast path, which
reads the output head directly), and batch sizes chosen from free device memory
instead of a fixed token count.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from steering.errors import ValidationError

TOKENS_PER_PASS_CPU = 3072  # query tokens per steered pass on CPU: keeps the cores busy, small for memory
PROMPTS_PER_BATCH_CPU = 16
MAX_TOKENS_PER_PASS = 1 << 16  # past this, a bigger pass gains nothing on any current GPU
# |fast - reference| <= tol * max(1, |reference|), per dtype. bfloat16 keeps 8 mantissa bits: one rounding step
# of a logit near 20 is 0.08, and the two paths round differently (batched query rows vs one sequence), so a
# logit difference can move by that much; measured on the tiny model: 0.079 (float32: 5e-6).
FAST_TOLERANCE = {torch.float32: 1e-2, torch.float16: 5e-2, torch.bfloat16: 0.15}
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
MEMORY_FRACTION = 0.5  # of the free memory a pass may take: the allocator, the cache and other work need the rest


def default_dtype(device: torch.device) -> str:
    """bfloat16 on CUDA (half the memory, tensor cores), float32 on CPU (bfloat16 matmuls are slow there)."""
    return "bfloat16" if device.type == "cuda" else "float32"


def execution_device(module: nn.Module, fallback: torch.device) -> torch.device:
    """The device a module computes on: its accelerate hook's execution device, else its first weight's."""
    hook = getattr(module, "_hf_hook", None)
    dev = getattr(hook, "execution_device", None)
    if dev is None:
        for sub in getattr(hook, "hooks", ()):  # a SequentialHook
            dev = getattr(sub, "execution_device", None) or dev
    if dev is not None:
        return torch.device(dev) if not isinstance(dev, int) else torch.device("cuda", dev)
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    return fallback


def block_devices(lm) -> list[torch.device]:
    return [execution_device(b, lm.device) for b in lm.blocks]


def is_dispatched(lm) -> bool:
    """True when accelerate placed the model (device_map): blocks may sit on different devices."""
    return bool(getattr(lm.model, "hf_device_map", None)) or any(hasattr(b, "_hf_hook") for b in lm.blocks)


def offloaded(lm) -> bool:
    """Weights kept off the execution device (CPU/disk offload leave ``meta`` placeholders in the modules)."""
    return any(p.device.type == "meta" for p in lm.model.parameters())


def to_block(x: torch.Tensor, lm, layer: int) -> torch.Tensor:
    """Hidden states moved to block ``layer``'s device (a no-op on one device)."""
    return x.to(execution_device(lm.blocks[layer], lm.device))


def _free_bytes(device: torch.device) -> int | None:
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def bytes_per_query_token(lm) -> int:
    """Activation memory one query token of a steered pass needs at its peak, with margin.

    Hidden state, attention scores over the prefix are small; the MLP's intermediate
    activations and the output-head rows dominate. Counted at 4 bytes (scores and
    logsumexp are float32) and doubled for temporaries.
    """
    cfg = lm.model.config
    d = int(cfg.hidden_size)
    inter = int(getattr(cfg, "intermediate_size", 4 * d) or 4 * d)
    return 2 * 4 * (4 * d + 3 * inter)


def tokens_per_pass(lm, free: int | None = None) -> int:
    """Query tokens per steered pass: fixed on CPU, from free memory on CUDA (so 7B fits and 135M fills the GPU)."""
    free = free if free is not None else min(
        (f for f in (_free_bytes(d) for d in {lm.device, *block_devices(lm)}) if f is not None), default=None)
    if free is None:
        return TOKENS_PER_PASS_CPU
    tokens = int(free * MEMORY_FRACTION) // bytes_per_query_token(lm)
    return max(256, min(MAX_TOKENS_PER_PASS, tokens))


def prompts_per_batch(lm, prompt_tokens: int = 256, free: int | None = None) -> int:
    """Prompts per cache-building batch: 16 on CPU; on CUDA as many as the kept keys/values and states allow."""
    free = free if free is not None else _free_bytes(lm.device)
    if free is None:
        return PROMPTS_PER_BATCH_CPU
    cfg = lm.model.config
    n_layers, d = lm.n_layers, int(cfg.hidden_size)
    heads = int(getattr(cfg, "num_attention_heads", 1))
    kv = int(getattr(cfg, "num_key_value_heads", heads) or heads)
    head_dim = int(getattr(cfg, "head_dim", None) or d // heads)
    elem = torch.finfo(lm.dtype).bits // 8
    # Kept per prompt: keys and values of every layer, every layer's suffix states; plus the pass's activations.
    per_prompt = n_layers * prompt_tokens * (2 * kv * head_dim + d) * elem + prompt_tokens * bytes_per_query_token(lm)
    return max(1, min(256, int(free * MEMORY_FRACTION * 0.5) // per_prompt))


def check_device(spec: str | None) -> str | None:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and present on this machine (None: pick automatically)."""
    if spec is None:
        return None
    spec = spec.strip()
    if not _DEVICE.match(spec):
        raise ValidationError(f"unknown device '{spec}': use cpu, cuda, cuda:N or mps")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValidationError(f"device '{spec}' asked for, but this machine has no usable CUDA GPU: use cpu")
        n = torch.cuda.device_count()
        if ":" in spec and int(spec.split(":")[1]) >= n:
            raise ValidationError(f"device '{spec}' does not exist: this machine has cuda:0-{n - 1}")
    if spec == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValidationError("device 'mps' asked for, but Apple's MPS is not available here: use cpu")
    return spec
