"""Context managers that patch a model: steering and activation capture.

Every hook is removed in ``finally``, also when the pass raises. Callers that
share a model across threads hold ``LoadedModel.lock`` around the whole pass.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from steering.core.names import POSITION_HELP, POSITION_MODES  # noqa: F401 - re-exported
from steering.errors import SweepError


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_hidden(output, hidden):
    return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden


def steer_start(prompt_len: int, mode: str) -> int:
    """First absolute position that is steered, for a prompt of ``prompt_len`` tokens."""
    if mode == "answer":
        return prompt_len - 1
    if mode == "generated":
        return prompt_len
    if mode == "all":
        return 0
    raise SweepError(f"unknown position mode '{mode}': choose one of {', '.join(POSITION_MODES)}")


@contextmanager
def steer(
    block: nn.Module,
    vector: torch.Tensor,
    multiplier: float | torch.Tensor,
    start: int | torch.Tensor = 0,
    offset: int = 0,
) -> Iterator[None]:
    """Add ``multiplier * vector`` to the block's output at absolute positions >= ``start``.

    vector: [d]. multiplier and start: scalars or per-row tensors [batch].
    Absolute positions count the tokens this hook has seen, so the same hook
    serves one full forward pass and incremental decoding with a KV cache.
    ``offset`` is the number of tokens already processed (a cached prefix).
    Rows are assumed right-padded (position i of row b is token i).
    """
    seen = offset

    def hook(_module, _inputs, output):
        nonlocal seen
        h = _hidden(output)
        batch, length = h.shape[0], h.shape[1]
        pos = torch.arange(seen, seen + length, device=h.device)
        seen += length
        starts = torch.as_tensor(start, device=h.device).reshape(-1, 1).expand(batch, 1)
        mult = torch.as_tensor(multiplier, device=h.device, dtype=h.dtype).reshape(-1, 1, 1).expand(batch, 1, 1)
        mask = (pos.unsqueeze(0) >= starts).to(h.dtype).unsqueeze(-1)  # [batch, length, 1]
        return _replace_hidden(output, h + mult * mask * vector.to(h.device, h.dtype))

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def capture(blocks: list[nn.Module] | nn.ModuleList) -> Iterator[list[torch.Tensor | None]]:
    """Record each block's output hidden states [batch, seq, d] of the last pass."""
    store: list[torch.Tensor | None] = [None] * len(blocks)
    handles = []
    for i, block in enumerate(blocks):
        def hook(_m, _i, output, i=i):
            store[i] = _hidden(output).detach()
        handles.append(block.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()
