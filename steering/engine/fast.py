"""Fast path: the whole layer x multiplier grid at close to one forward pass per prompt.

Steering touches only the answer positions (from the last prompt token on), so
everything before them is shared by every cell. Per batch of prompts:

1. *Prefix pass* over ``prompt[:-1]``: its keys/values are kept (left-padded); the head the batch's
   prompts share runs once (``steering.engine.prefix``).
2. *Unsteered suffix pass* over ``[last prompt token] + completion`` for the
   positive and negative completions, laid side by side in one query row with
   a block-diagonal mask over the cached prefix. Block outputs of every layer
   are recorded: they are the unsteered hidden states every cell starts from,
   the training activations (read at the answer-letter token), and multiplier 0.
3. *Cells*: for layer l, the recorded layer-l states plus ``m * v_l`` for R
   multipliers are laid side by side (R x 2 blocks, without each block's last position, which
   predicts nothing) and only layers l+1.. run,
   through a view of the model whose blocks 0..l are identity. Only the logits
   of the completion tokens are formed (no full vocabulary projection).

``check_fast_path`` compares this against ``steering.engine.reference`` on the loaded
model once; families where it disagrees fall back to the reference path.

Shapes: B prompts, T prefix length (padded), S suffix block length (padded),
R multiplier replicas, Q = R * 2 * S query tokens, L layers, d hidden size.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from steering.core.prompts import EncodedPair
from steering.core.scoring import combine_scores, mean_per_token
from steering.engine import devices
from steering.engine.hooks import capture
from steering.engine.models import LoadedModel
from steering.engine.prefix import prefix_pass
from steering.engine.prompt_cache import (  # noqa: F401 - PromptBatch, PromptCache, unserved re-exported
    PromptBatch,
    PromptCache,
    layout,
    replicas_in_window,
    seeded_cache,
    suffix_len,
    unserved,
)
from steering.errors import FastPathUnsupported  # noqa: F401 - re-exported

Progress = Callable[[int, int], None]
FAST_MODES = ("answer", "generated")
TOKENS_PER_PASS = devices.TOKENS_PER_PASS_CPU  # on CUDA, devices.tokens_per_pass sizes passes from free memory


class _Skip(nn.Module):
    """Stands in for a block below the steered layer: its output is already known."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def _view_from(lm: LoadedModel, first: int) -> nn.Module:
    """A shallow copy of the base model that runs only blocks ``first``.. (no mutation of the shared model)."""
    view = copy.copy(lm.base)
    view._modules = dict(lm.base._modules)
    name = next(k for k, v in lm.base._modules.items() if v is lm.blocks)
    view._modules[name] = nn.ModuleList([_Skip() for _ in range(first)] + list(lm.blocks)[first:])
    return view


def _run_from(lm: LoadedModel, batch: PromptBatch, first: int, x: torch.Tensor, replicas: int,
              block: int | None = None) -> torch.Tensor:
    """Final normalised hidden states [B, Q, d] from block ``first`` on, given its input x (replicas of
    [pos | neg] blocks of ``block`` positions, default the batch's S)."""
    positions, mask = layout(batch, replicas, x.device, block)
    if replicas > replicas_in_window(lm, batch.prefix_mask.shape[1], block or batch.S):  # callers size to fit
        raise FastPathUnsupported("prompt longer than the sliding window")
    style = lm.mask_style
    attn = {"full_attention": mask, "sliding_attention": mask} if style == "dict" else mask
    view = _view_from(lm, first)
    out = view(inputs_embeds=x, attention_mask=attn, position_ids=positions,
               past_key_values=seeded_cache(lm, batch), use_cache=True)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _head(lm: LoadedModel) -> tuple[torch.Tensor, torch.Tensor | None, float | None]:
    head = lm.model.get_output_embeddings()
    cap = getattr(lm.model.config, "final_logit_softcapping", None)
    return head.weight, getattr(head, "bias", None), cap


def _logits_at(lm: LoadedModel, h: torch.Tensor, targets: torch.Tensor, full: bool):
    """Selected logits [B, Q] for ``targets`` [B, Q]; with ``full`` also logsumexp over the vocabulary."""
    weight, bias, cap = _head(lm)
    h, targets = h.to(weight.device), targets.to(weight.device)  # the head may sit on another GPU
    sel = (h * weight[targets]).sum(-1)
    if bias is not None:
        sel = sel + bias[targets]
    if cap:
        sel = torch.tanh(sel / cap) * cap
    logz = None
    if full:
        logits = h @ weight.T
        if bias is not None:
            logits = logits + bias
        if cap:
            logits = torch.tanh(logits / cap) * cap
        logz = torch.logsumexp(logits.float(), dim=-1)
    home = lm.device
    return sel.float().to(home), (logz.to(home) if logz is not None else None)


def answer_positions(batch: PromptBatch, t: torch.Tensor) -> torch.Tensor:
    """``t`` [B, 2S, ...] without each block's last position: it predicts no completion token (the
    completion's last token is only ever a target), so the steered passes leave it out."""
    B, S = t.shape[0], batch.S
    return t.reshape(B, 2, S, *t.shape[2:])[:, :, : S - 1].reshape(B, 2 * (S - 1), *t.shape[2:])


def _propensity(batch: PromptBatch, sel: torch.Tensor, logz: torch.Tensor | None, metric: str,
                block: int | None = None) -> torch.Tensor:
    """Propensity per replica [B, R] from selected logits [B, R*2S] (blocks of ``block`` = S - 1 positions
    when they come from ``answer_positions``)."""
    B = sel.shape[0]
    S, valid = (batch.S, batch.target_valid) if block is None else (block, answer_positions(batch, batch.target_valid))
    scores = sel if metric == "logit_diff" else sel - logz
    scores = scores.view(B, -1, 2, S) * valid.view(B, 1, 2, S)
    summed = scores.sum(-1)  # [B, R, 2]
    if mean_per_token(metric):
        summed = summed / valid.view(B, 1, 2, S).sum(-1).clamp_min(1)
    return combine_scores(summed[..., 0], summed[..., 1], metric)


@torch.no_grad()
def _encode_batch(lm: LoadedModel, pairs: Sequence[EncodedPair], index: list[int], metric: str,
                  padding_side: str) -> PromptBatch:
    dev, pad = lm.device, lm.tokenizer.pad_token_id
    keys, values, prefix_mask = prefix_pass(lm, [p.prompt_ids[:-1] for p in pairs], padding_side)

    S = max(1 + max(len(p.pos_ids), len(p.neg_ids)) for p in pairs)
    suffix, targets, valid = [], [], []
    for p in pairs:
        row, trow, vrow = [], [], []
        for comp in (p.pos_ids, p.neg_ids):
            block = [p.prompt_ids[-1], *comp]
            row += block + [pad] * (S - len(block))
            # Position j predicts block[j + 1]: the completion's tokens.
            trow += list(comp) + [0] * (S - len(comp))
            vrow += [True] * len(comp) + [False] * (S - len(comp))
        suffix.append(row)
        targets.append(trow)
        valid.append(vrow)
    batch = PromptBatch(
        index=index, keys=keys, values=values, prefix_mask=prefix_mask,
        prefix_len=prefix_mask.sum(1), suffix_ids=torch.tensor(suffix, device=dev),
        targets=torch.tensor(targets, device=dev), target_valid=torch.tensor(valid, device=dev),
        read_pos=torch.tensor([1 + p.read_index for p in pairs], device=dev),
        hidden=torch.empty(0, device=dev, dtype=lm.dtype), base_logits=torch.empty(0), base_logz=None,
    )
    # Unsteered suffix pass through every block, recording each block's output.
    x = lm.model.get_input_embeddings()(batch.suffix_ids)
    with capture(lm.blocks) as hs:
        h = _run_from(lm, batch, 0, x, 1)
    batch.hidden = torch.stack([h.to(dev) for h in hs])  # [L, B, 2S, d], gathered from each block's device
    batch.base_logits, batch.base_logz = _logits_at(lm, h, batch.targets, metric != "logit_diff")
    return batch


def build_cache(
    lm: LoadedModel,
    pairs: Sequence[EncodedPair],
    mode: str = "answer",
    metric: str = "logit_diff",
    batch_size: int | None = None,
    padding_side: str = "left",
    progress: Progress | None = None,
) -> PromptCache:
    """Run the prefix and unsteered suffix passes for all pairs, batched by prompt length."""
    if mode not in FAST_MODES:
        raise FastPathUnsupported(f"position mode '{mode}' changes the prompt's own states; use the reference path")
    fallback = {i: pairs[i] for i in unserved(lm, pairs)}
    order = sorted((i for i in range(len(pairs)) if i not in fallback), key=lambda i: len(pairs[i].prompt_ids))
    if batch_size is None:  # 16 on CPU; from free memory on CUDA
        batch_size = devices.prompts_per_batch(lm, max((len(p.prompt_ids) for p in pairs), default=1))
    batches = []
    if progress:
        progress(0, len(order))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        prefix, suffix = max(len(pairs[i].prompt_ids) - 1 for i in idx), max(suffix_len(pairs[i]) for i in idx)
        # Padded together, items that each fit may not: then one by one (each fits alone, checked above).
        for part in [idx] if replicas_in_window(lm, prefix, suffix) >= 1 else [[i] for i in idx]:
            with lm.lock:  # per batch: other sessions' passes interleave with a long encode
                batches.append(_encode_batch(lm, [pairs[i] for i in part], part, metric, padding_side))
        if progress:
            progress(min(start + batch_size, len(order)), len(order))
    return PromptCache(batches=batches, n=len(pairs), mode=mode, metric=metric, fallback=fallback)


def activation_differences(cache: PromptCache, lm: LoadedModel | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Block outputs at the answer-letter token: (pos, neg), each [layer, pair, d], in the caller's order.

    The cache's fallback items are read on the reference path, which needs ``lm``."""
    ref = None
    if cache.fallback:
        if lm is None:
            raise ValueError(f"activation_differences: {len(cache.fallback)} items need the reference path; pass lm")
        from steering.engine.reference import reference_differences  # engine-internal: the items it cannot serve

        ref = reference_differences(lm, list(cache.fallback.values()))
    shape = cache.batches[0].hidden.shape if cache.batches else ref[0].shape
    L, d = shape[0], shape[-1]
    pos = torch.zeros(L, cache.n, d)
    neg = torch.zeros(L, cache.n, d)
    if ref is not None:
        rows = torch.tensor(list(cache.fallback))
        pos[:, rows], neg[:, rows] = ref[0].cpu(), ref[1].cpu()
    for b in cache.batches:
        rows = torch.arange(len(b.index))
        idx = torch.tensor(b.index)
        pos[:, idx] = b.hidden[:, rows, b.read_pos].float().cpu()
        neg[:, idx] = b.hidden[:, rows, b.S + b.read_pos].float().cpu()
    return pos, neg


@torch.no_grad()
def _steered(lm: LoadedModel, batch: PromptBatch, layer: int, vector: torch.Tensor,
             multipliers: Sequence[float], mode: str, metric: str) -> torch.Tensor:
    """Propensities [B, R] at one layer for R multipliers."""
    R, K = len(multipliers), batch.S - 1  # K: the block positions that predict a completion token
    base = answer_positions(batch, batch.hidden[layer])  # [B, 2K, d]
    steer_from = 0 if mode == "answer" else 1  # suffix index 0 is the last prompt token
    where = (torch.arange(K, device=base.device) >= steer_from).to(base.dtype).repeat(2)  # [2K]
    mult = torch.tensor(multipliers, dtype=base.dtype, device=base.device)
    delta = mult.view(R, 1, 1) * where.view(1, 2 * K, 1) * vector.to(base.device, base.dtype).view(1, 1, -1)
    x = (base.unsqueeze(1) + delta.unsqueeze(0)).reshape(base.shape[0], R * 2 * K, -1)
    if layer + 1 < lm.n_layers:  # start on the first block that runs (device_map: maybe another GPU)
        x = devices.to_block(x, lm, layer + 1)
    h = _run_from(lm, batch, layer + 1, x, R, K)
    sel, logz = _logits_at(lm, h, answer_positions(batch, batch.targets).repeat(1, R), metric != "logit_diff")
    return _propensity(batch, sel, logz, metric, K)


def grid(
    lm: LoadedModel,
    cache: PromptCache,
    vectors: dict[int, torch.Tensor],
    layers: Sequence[int],
    multipliers: Sequence[float],
    progress: Progress | None = None,
    finished: dict[int, np.ndarray] | None = None,
    on_batch: Callable[[int, list[int], np.ndarray], None] | None = None,
) -> np.ndarray:
    """Propensities [example, layer, multiplier] for every cell, from the cached prompt states.

    ``finished`` maps batch number -> its rows [B, layer, multiplier] from an
    interrupted earlier call (skipped here); ``on_batch(number, index, rows)``
    is told of each batch as it completes, so a caller can persist it.
    The model lock is held per steered pass, not for the whole grid, so other
    sessions' slider moves interleave with a long sweep.
    """
    out = np.zeros((cache.n, len(layers), len(multipliers)))
    steered = [k for k, m in enumerate(multipliers) if m != 0]
    total, done = (len(cache.batches) + bool(cache.fallback)) * len(layers), 0
    per_pass = devices.tokens_per_pass(lm)
    if progress:
        progress(0, total)
    for number, b in enumerate(cache.batches):
        idx = np.array(b.index)
        if finished and number in finished:
            out[idx] = finished[number]
            done += len(layers)
            if progress:
                progress(done, total)
            continue
        base = _propensity(b, b.base_logits, b.base_logz, cache.metric).squeeze(1).cpu().numpy()
        R = max(1, min(len(steered), per_pass // max(1, len(idx) * 2 * b.S),
                       replicas_in_window(lm, b.prefix_mask.shape[1], b.S)))
        for j, layer in enumerate(layers):
            out[idx, j, :] = base[:, None]  # multiplier 0 is the unsteered pass
            for c in range(0, len(steered), R):
                ks = steered[c : c + R]
                with lm.lock:
                    p = _steered(lm, b, layer, vectors[layer], [multipliers[k] for k in ks], cache.mode, cache.metric)
                out[np.ix_(idx, [j], ks)] = p.cpu().numpy()[:, None, :]
            done += 1
            if progress:
                progress(done, total)
        if on_batch:
            on_batch(number, b.index, out[idx])
    if cache.fallback:  # items the fast path cannot serve: one full forward pass per cell
        from steering.engine.reference import reference_grid

        rows = list(cache.fallback)
        step = (lambda d, t: progress(done + len(layers) * d // t, total)) if progress else None
        out[rows] = reference_grid(lm, list(cache.fallback.values()), vectors, layers, multipliers, cache.mode,
                                   cache.metric, progress=step)
    return out


def slider(lm: LoadedModel, cache: PromptCache, layer: int, vector: torch.Tensor, multiplier: float) -> np.ndarray:
    """Propensities [example] at one new multiplier, reusing the cached prompt states (the dashboard slider)."""
    return grid(lm, cache, {layer: vector}, [layer], [multiplier])[:, 0, 0]


def check_fast_path(lm: LoadedModel, tol: float | None = None) -> bool:
    """Compare the fast path with the reference once per model; remember the verdict.

    A family whose blocks cannot be skipped this way (e.g. one that adds
    position embeddings inside the base model's forward) fails here and uses
    the reference path instead.
    """
    if lm.fast_ok is not None:
        return lm.fast_ok
    if devices.offloaded(lm):  # the head and skipped blocks are read directly: meta placeholders would be wrong
        return _fall_back(lm, "weights are offloaded to CPU/disk")
    tol = tol if tol is not None else devices.FAST_TOLERANCE.get(lm.dtype, 1e-2)
    from steering.core.prompts import encode_pair
    from steering.engine.reference import reference_propensity  # the oracle, only for this self-check

    tok = lm.tokenizer
    pair = encode_pair(tok, "Is the sky blue? Answer with one letter.\n", "(A)", "(B)")
    gen = torch.Generator().manual_seed(0)
    vector = torch.randn(lm.hidden_size, generator=gen).to(lm.device, lm.dtype) * 4
    layer = lm.n_layers // 2
    ok = False
    for style in ("tensor", "dict"):
        lm.mask_style = style
        try:
            cache = build_cache(lm, [pair], batch_size=1)
            if cache.fallback:  # served by the reference path: nothing of the fast path was compared
                return _fall_back(lm, "its sliding window is shorter than a short probe prompt")
            fast = slider(lm, cache, layer, vector, 1.0)[0]
        except Exception:  # any failure here means the family needs the reference path
            continue
        ref = reference_propensity(lm, pair, layer, vector, 1.0)
        if math.isfinite(fast) and abs(fast - ref) <= tol * max(1.0, abs(ref)):
            ok = True
            break
    if not ok:
        return _fall_back(lm, f"it disagrees with the reference here beyond {tol:g} (relative)")
    lm.fast_ok = True
    return True


def _fall_back(lm: LoadedModel, why: str) -> bool:
    lm.fast_ok = False
    lm.fast_note = f"fast path off for {lm.name}: {why}; using the reference path (same numbers, slower)"
    warnings.warn(lm.fast_note, stacklevel=3)
    return False


from steering.engine.cache_store import CacheStore  # noqa: E402,F401 - re-exported (it stores PromptCaches)
