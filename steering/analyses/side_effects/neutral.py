"""Distribution shift on neutral text: KL(unsteered || steered) and perplexity at every (layer, multiplier).

Steering here applies at every position of the text (``hooks.steer(..., start=0)``).

Fast path (``neutral_grid``), per batch of texts:

1. One unsteered pass records every block's output [L, B, T, d] and, per position,
   the unsteered distribution's summaries: ``plogp`` = sum_v p log p and
   ``pbar`` = E_p[W_v] (the expected unembedding row, [d]).
2. For layer l, the recorded layer-l states plus ``m * v_l`` for R multipliers are
   stacked as R replicas in one batch, and only blocks l+1.. run.
3. KL(p || q) = sum_v p (log p - log q) = pbar . (h_p - h_q) + logZ_q - logZ_p, exact
   because the logits are linear in the final hidden state (h_p unsteered, h_q steered);
   so the unsteered distribution never has to be kept over the whole vocabulary. The
   difference form avoids cancelling large terms in float32.

Reference (``reference_neutral``): one full forward pass per text per cell with a hook.
Shapes: B texts, T tokens (right-padded), R replicas, L layers, d hidden, V vocabulary.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from steering.core.scoring import pad_rows
from steering.engine.fast import _view_from
from steering.engine.hooks import capture, steer
from steering.engine.models import LoadedModel
from steering.errors import (
    FastPathUnsupported,
    TextError,  # noqa: F401 - re-exported
)

Progress = Callable[[int, int], None]
DEFAULT_TEXTS = Path(__file__).resolve().parents[3] / "data" / "neutral" / "encyclopaedic.jsonl"
HEAD_CHUNK = 1024  # positions per vocabulary projection: bounds the [chunk, V] logits in memory
CHUNK_CHARS = 800  # about 150-200 tokens: a long unbroken text is cut into pieces of this size
TOKENS_PER_PASS = 2048  # steered tokens per pass (replicas x texts x length)



def resolve_text_path(spec: str | Path | None) -> Path:
    """A neutral-text file: the bundled set (None), a path, or the name of a 'neutral' source in
    data/sources.json, downloaded once into the dataset cache with its checksum verified."""
    if not spec:
        return DEFAULT_TEXTS
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    from steering.core import sources
    from steering.errors import DatasetError

    try:
        known = {s.name: s for s in sources.list_sources() if s.group == "neutral"}
    except DatasetError:
        known = {}
    if str(spec) in known:
        try:
            return sources.fetch(str(spec))
        except DatasetError as e:
            raise TextError(f"neutral text source {e}") from None
    names = f" or a registered source ({', '.join(known)})" if known else ""
    raise TextError(f"neutral text file not found: {spec} (give a .txt or .jsonl file{names})")


def _chunks(paragraph: str, size: int) -> list[str]:
    """A long paragraph cut at line ends into pieces of about ``size`` characters (texts with no blank lines)."""
    if len(paragraph) <= 2 * size:
        return [paragraph]
    out, cur = [], []
    for line in paragraph.splitlines():
        cur.append(line.strip())
        if sum(map(len, cur)) >= size:
            out.append(" ".join(cur))
            cur = []
    if cur:
        out.append(" ".join(cur))
    return out


def _strip_gutenberg(raw: str) -> str:
    """Project Gutenberg books carry a licence header and footer that are not the book's text."""
    start = re.search(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", raw, re.M)
    end = re.search(r"^(\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg).*$", raw, re.M)
    if start:
        raw = raw[start.end():end.start() if end and end.start() > start.end() else None]
    return raw


def read_texts(path: str | Path | None = None, chunk_chars: int = CHUNK_CHARS) -> list[str]:
    """Paragraphs from a .txt file (blank-line separated; a paragraph over twice ``chunk_chars`` is cut at line
    ends) or a .jsonl/.json file of {"text": ...} records. ``path`` may name a registered neutral source."""
    path = resolve_text_path(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise TextError(f"{path}: not UTF-8 text") from None
    if path.suffix.lower() in (".jsonl", ".json"):
        try:
            records = json.loads(raw) if raw.lstrip().startswith("[") else \
                [json.loads(line) for line in raw.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise TextError(f"{path} line {e.lineno}: invalid JSON ({e.msg})") from None
        texts = []
        for i, r in enumerate(records, 1):
            if not isinstance(r, dict) or not isinstance(r.get("text"), str):
                raise TextError(f"{path} record {i}: expected an object with a 'text' field")
            texts.append(r["text"])
    else:
        texts = [c for p in _strip_gutenberg(raw).split("\n\n") for c in _chunks(p.strip(), chunk_chars)]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise TextError(f"{path}: no text found")
    return texts


def tokenize_texts(lm: LoadedModel, texts: Sequence[str], n: int | None = None,
                   max_tokens: int | None = None) -> list[list[int]]:
    """Token ids of the first ``n`` texts, each cut to ``max_tokens`` (BOS in front where the model uses one)."""
    tok = lm.tokenizer
    out = []
    for t in list(texts)[:n] if n else texts:
        ids = tok(t, add_special_tokens=False).input_ids
        if tok.bos_token_id is not None:
            ids = [tok.bos_token_id] + ids
        ids = ids[:max_tokens] if max_tokens else ids
        if len(ids) >= 2:
            out.append(ids)
    if not out:
        raise TextError("no neutral text of at least two tokens")
    return out


@dataclass
class Totals:
    """Token-weighted sums over the text set for one cell: mean KL = kl / n_kl, ppl = exp(nll / n_nll)."""

    kl: float = 0.0
    n_kl: int = 0
    nll: float = 0.0
    n_nll: int = 0

    def add(self, kl: float, n_kl: int, nll: float, n_nll: int) -> None:
        self.kl += kl
        self.n_kl += n_kl
        self.nll += nll
        self.n_nll += n_nll

    @property
    def mean_kl(self) -> float:
        return self.kl / max(self.n_kl, 1)

    @property
    def ppl(self) -> float:
        return float(np.exp(self.nll / max(self.n_nll, 1)))


def _head(lm: LoadedModel) -> tuple[torch.Tensor, torch.Tensor | None]:
    if getattr(lm.model.config, "final_logit_softcapping", None):
        raise FastPathUnsupported("logit soft-capping is not linear in the hidden state")
    head = lm.model.get_output_embeddings()
    return head.weight, getattr(head, "bias", None)


def _logits(weight, bias, h: torch.Tensor) -> torch.Tensor:
    z = h @ weight.T
    return (z + bias if bias is not None else z).float()


@dataclass
class _TextBatch:
    ids: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T] 1 for real tokens
    hidden: torch.Tensor  # [L, B, T, d] unsteered block outputs
    final: torch.Tensor  # [B, T, d] unsteered final hidden states h_p
    logz: torch.Tensor  # [B, T] unsteered log-partition logZ_p
    pbar: torch.Tensor  # [B, T, d] E_p[W_v]
    base_nll: float
    n_nll: int

    @property
    def nll_mask(self) -> torch.Tensor:
        """Positions that predict a real next token: [B, T-1]."""
        return self.mask[:, 1:].bool()


@torch.no_grad()
def _encode(lm: LoadedModel, rows: list[list[int]]) -> _TextBatch:
    weight, bias = _head(lm)
    ids, mask = pad_rows(rows, lm.tokenizer.pad_token_id or 0)
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    with lm.lock, capture(lm.blocks) as hs:
        out = lm.base(input_ids=ids, attention_mask=mask)
    h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    B, T, d = h.shape
    logz = torch.empty(B, T, device=h.device)
    pbar = torch.empty(B, T, d, device=h.device, dtype=torch.float32)
    flat = h.reshape(B * T, d)
    for s in range(0, B * T, HEAD_CHUNK):
        logits = _logits(weight, bias, flat[s : s + HEAD_CHUNK])
        logz.view(-1)[s : s + HEAD_CHUNK] = torch.logsumexp(logits, -1)
        pbar.view(-1, d)[s : s + HEAD_CHUNK] = torch.softmax(logits, -1) @ weight.float()
    batch = _TextBatch(ids, mask, torch.stack(hs), h, logz, pbar, 0.0, 0)
    nll, n = _nll(lm, batch, h.unsqueeze(0), logz.unsqueeze(0))
    batch.base_nll, batch.n_nll = float(nll[0]), n
    return batch


def _nll(lm: LoadedModel, batch: _TextBatch, h: torch.Tensor, logz: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL per replica [R] from final hidden states h [R, B, T, d] and their logZ [R, B, T]."""
    weight, bias = _head(lm)
    target = batch.ids[:, 1:]
    sel = (h[:, :, :-1] * weight[target].unsqueeze(0)).sum(-1).float()
    if bias is not None:
        sel = sel + bias[target].float()
    nll = (logz[:, :, :-1] - sel) * batch.nll_mask
    return nll.sum((1, 2)), int(batch.nll_mask.sum())


def _logz(weight, bias, flat: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.logsumexp(_logits(weight, bias, flat[s : s + HEAD_CHUNK]), -1)
                      for s in range(0, flat.shape[0], HEAD_CHUNK)])


def _kl(batch: _TextBatch, h: torch.Tensor, logz: torch.Tensor) -> torch.Tensor:
    """Summed KL(unsteered || steered) over real positions, per replica [R], from h [R, B, T, d] and logZ."""
    # E_p[z_p - z_q] (bias terms cancel), in float64: a small difference of large hidden states.
    shift = ((batch.final.unsqueeze(0) - h).double() * batch.pbar.double().unsqueeze(0)).sum(-1)
    kl = (shift + (logz - batch.logz.unsqueeze(0)).double()).clamp(min=0) * batch.mask.unsqueeze(0)
    return kl.sum((1, 2))


@torch.no_grad()
def _steered(lm: LoadedModel, batch: _TextBatch, layer: int, vector: torch.Tensor,
             multipliers: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed KL [R], summed NLL [R]) with ``m * vector`` added to block ``layer``'s output everywhere."""
    R = len(multipliers)
    base = batch.hidden[layer]  # [B, T, d]
    B, T, d = base.shape
    mult = torch.tensor(multipliers, dtype=base.dtype, device=base.device).view(R, 1, 1, 1)
    x = (base.unsqueeze(0) + mult * vector.to(base.device, base.dtype).view(1, 1, 1, d)).reshape(R * B, T, d)
    view = _view_from(lm, layer + 1)
    with lm.lock:
        out = view(inputs_embeds=x, attention_mask=batch.mask.repeat(R, 1))
    h = (out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]).view(R, B, T, d)
    weight, bias = _head(lm)
    logz = _logz(weight, bias, h.reshape(-1, d)).view(R, B, T)  # the one vocabulary projection per pass
    return _kl(batch, h, logz), _nll(lm, batch, h, logz)[0]


def neutral_grid(lm: LoadedModel, rows: Sequence[list[int]], vectors: dict[int, torch.Tensor],
                 layers: Sequence[int], multipliers: Sequence[float], batch_size: int = 8,
                 progress: Progress | None = None,
                 on_layer: Callable[[int, np.ndarray], None] | None = None,
                 finished: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """[layer, multiplier, 2]: mean KL (nats per token) and perplexity over the texts, on the fast path.

    ``finished`` maps a layer index j to its [multiplier, 2] values from an interrupted call;
    ``on_layer(j, values)`` is told of each layer as it completes (to persist it).
    """
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    groups = [[rows[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    batches = [_encode(lm, g) for g in groups]
    base_nll = sum(b.base_nll for b in batches) / max(sum(b.n_nll for b in batches), 1)
    out = np.zeros((len(layers), len(multipliers), 2))
    steered = [k for k, m in enumerate(multipliers) if m != 0]
    if progress:
        progress(0, len(layers))
    for j, layer in enumerate(layers):
        if finished and j in finished:
            out[j] = finished[j]
        else:
            totals = {k: Totals() for k in steered}
            for b in batches:
                R = max(1, min(len(steered), TOKENS_PER_PASS // max(1, b.ids.numel())))
                for c in range(0, len(steered), R):
                    ks = steered[c : c + R]
                    kl, nll = _steered(lm, b, layer, vectors[layer], [multipliers[k] for k in ks])
                    for r, k in enumerate(ks):
                        totals[k].add(float(kl[r]), int(b.mask.sum()), float(nll[r]), b.n_nll)
            for k, m in enumerate(multipliers):
                # Multiplier 0 is the unsteered pass itself: KL exactly 0.
                out[j, k] = (totals[k].mean_kl, totals[k].ppl) if m != 0 else (0.0, float(np.exp(base_nll)))
            if on_layer:
                on_layer(j, out[j])
        if progress:
            progress(j + 1, len(layers))
    return out


@torch.no_grad()
def reference_cell(lm: LoadedModel, ids: list[int], layer: int | None, vector: torch.Tensor | None,
                   multiplier: float) -> tuple[float, int, float, int, torch.Tensor]:
    """One full forward pass of one text, steered at every position: (KL sum, n, NLL sum, n, log-probs)."""
    x = torch.tensor([ids], device=lm.device)
    with lm.lock:
        if layer is None:
            logits = lm.model(input_ids=x).logits
        else:
            with steer(lm.blocks[layer], vector, multiplier, start=0):
                logits = lm.model(input_ids=x).logits
    logq = torch.log_softmax(logits[0].float(), -1)
    nll = -logq[:-1].gather(1, x[0, 1:, None]).sum()
    return 0.0, len(ids), float(nll), len(ids) - 1, logq


def reference_neutral(lm: LoadedModel, rows: Sequence[list[int]], vectors: dict[int, torch.Tensor],
                      layers: Sequence[int], multipliers: Sequence[float],
                      progress: Progress | None = None) -> np.ndarray:
    """The naive loop: one full forward pass per text per cell. Same output as ``neutral_grid``."""
    bases = [reference_cell(lm, r, None, None, 0.0)[4] for r in rows]
    out = np.zeros((len(layers), len(multipliers), 2))
    total, done = len(layers) * len(multipliers), 0
    for j, layer in enumerate(layers):
        for k, m in enumerate(multipliers):
            t = Totals()
            for r, logp in zip(rows, bases):
                _, n, nll, n_nll, logq = reference_cell(lm, r, layer, vectors[layer], m)
                kl = float((logp.exp() * (logp - logq)).sum())
                t.add(kl, n, nll, n_nll)
            out[j, k] = t.mean_kl, t.ppl
            done += 1
            if progress:
                progress(done, total)
    return out
