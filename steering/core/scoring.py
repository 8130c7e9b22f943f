"""Propensity metrics: their units and how completion scores combine (shared by both paths)."""

from __future__ import annotations

import torch

from steering.core.names import METRIC_UNITS, METRICS  # noqa: F401 - re-exported
from steering.errors import SweepError


def mean_per_token(metric: str) -> bool:
    """Metrics that average (not sum) the completion's token log-probs, so long and short texts compare."""
    return metric == "answer_text"



def combine_scores(pos: torch.Tensor, neg: torch.Tensor, metric: str) -> torch.Tensor:
    """Propensity from summed completion scores (raw logits, or log-probs for the other metrics)."""
    if metric in ("logit_diff", "logprob_diff", "answer_text"):
        return pos - neg
    if metric == "prob":
        return torch.sigmoid(pos - neg)
    raise SweepError(f"unknown metric '{metric}': choose one of {', '.join(METRICS)}")


def pad_rows(seqs: list[list[int]], pad: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows padded to one width on ``side``, and their attention mask (1 for real tokens)."""
    width = max(1, max(map(len, seqs)))
    ids, mask = [], []
    for s in seqs:
        fill = width - len(s)
        ids.append(([pad] * fill + list(s)) if side == "left" else (list(s) + [pad] * fill))
        mask.append(([0] * fill + [1] * len(s)) if side == "left" else ([1] * len(s) + [0] * fill))
    return torch.tensor(ids), torch.tensor(mask)
