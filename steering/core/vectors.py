"""CAA steering vectors: aggregation of activation differences, and storage.

Training reads the block outputs of every layer at the answer-letter token in
one pass per prompt (``steering.engine.fast``), or in two full passes per pair on the
reference path (``steering.engine.reference.reference_differences``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from steering.core.files import atomic_write, atomic_write_text, publish, refuse_existing  # noqa: F401
from steering.core.names import AGGREGATORS  # noqa: F401 - re-exported
from steering.errors import ControlVectorError, SweepError


def mean_aggregator(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean of differences. pos, neg: [pair, d] -> [d]."""
    return (pos - neg).mean(0)


def pca_aggregator(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """First principal direction of the (uncentred) differences, unit length, signed like the mean."""
    deltas = (pos - neg).double()
    _, _, vh = torch.linalg.svd(deltas, full_matrices=False)
    direction = vh[0]
    if direction @ deltas.mean(0) < 0:
        direction = -direction
    return (direction / direction.norm()).float()


def logistic_aggregator(pos: torch.Tensor, neg: torch.Tensor, l2: float = 1e-2, steps: int = 200) -> torch.Tensor:
    """Weight of a logistic regression separating pos from neg activations, unit length, signed like the mean."""
    x = torch.cat([pos, neg]).double()
    x = x - x.mean(0)  # the intercept would otherwise absorb the shared offset
    scale = x.std(0).clamp_min(1e-8)
    xs = x / scale
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xs @ w + b, y) + l2 * (w @ w)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    direction = (w.detach() / scale)  # back to the activation basis
    if direction @ (pos - neg).double().mean(0) < 0:
        direction = -direction
    return (direction / direction.norm()).float()


AGGREGATOR_FNS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean": mean_aggregator,
    "pca": pca_aggregator,
    "logistic": logistic_aggregator,
}


def aggregate(pos: torch.Tensor, neg: torch.Tensor, aggregator: str = "mean", rescale: bool = True) -> torch.Tensor:
    """Vectors for all layers. pos, neg: [layer, pair, d] -> [layer, d].

    ``rescale`` gives PCA and logistic directions the norm of the mean
    difference, so that a multiplier means the same thing for every aggregator.
    """
    if aggregator not in AGGREGATOR_FNS:
        raise SweepError(f"unknown aggregator '{aggregator}': choose one of {', '.join(AGGREGATORS)}")
    fn = AGGREGATOR_FNS[aggregator]
    out = []
    for p, n in zip(pos, neg):
        v = fn(p, n)
        if rescale and aggregator != "mean":
            v = v * mean_aggregator(p, n).norm()
        out.append(v)
    return torch.stack(out)


# Beyond this |multiplier| x max|vector element| the squares a normalisation layer takes overflow float32
# (sqrt of its largest value is 1.8e19): every steered state then normalises to the same thing and every
# propensity saturates, which would read as "no item is steerable". Far above any useful strength.
MAX_STEERING_ELEMENT = 1e15


def check_steering_scale(vectors: dict[int, torch.Tensor], multipliers) -> None:
    """Refuse vectors that are not finite, or whose scaled elements would overflow the model's arithmetic."""
    top = max((abs(float(m)) for m in multipliers), default=0.0)
    for layer, v in sorted(vectors.items()):
        v = v.detach().float()
        if not torch.isfinite(v).all():
            raise SweepError(f"the vector for layer {layer} holds a value that is not a finite number")
        biggest = float(v.abs().max()) * top if v.numel() else 0.0
        if biggest > MAX_STEERING_ELEMENT:
            raise SweepError(
                f"the vector for layer {layer} times multiplier {top:g} reaches {biggest:.3g} in one element "
                f"(vector norm {float(v.norm()):.3g}): beyond {MAX_STEERING_ELEMENT:g} every propensity saturates; "
                "rescale the vector or use smaller multipliers")


@dataclass
class VectorMeta:
    """The readable sidecar saved next to the tensors."""

    model: str
    layers: list[int]
    read_position: str = "answer-letter token of the completion (the 'A' of '(A)')"
    aggregator: str = "mean"
    rescaled: bool = True
    norms: dict[str, float] = field(default_factory=dict)
    dataset: str = ""
    dataset_sha256: str = ""
    split: str = "train"
    n_train: int = 0
    seed: int = 0
    variant: str = "BASE"
    hidden_size: int = 0


_META_TYPES = {"model": str, "layers": list, "read_position": str, "aggregator": str, "rescaled": bool,
               "norms": dict, "dataset": str, "dataset_sha256": str, "split": str, "n_train": int, "seed": int,
               "variant": str, "hidden_size": int}


def meta_from_json(d, source: str | Path = "sidecar") -> VectorMeta:
    """A VectorMeta from a sidecar's JSON, its types checked: unknown keys are ignored, a wrong type is
    one line naming the file and the key (a ``ControlVectorError``)."""
    if not isinstance(d, dict):
        raise ControlVectorError(f"{source}: the sidecar is not a JSON object")
    for key, kind in _META_TYPES.items():
        if key not in d:
            continue
        value = d[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if key == "layers":
            ok = ok and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
        if key == "norms":
            ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())
        if not ok:
            raise ControlVectorError(f"{source}: sidecar key '{key}' should be {_kind_name(kind, key)}, "
                                     f"got {type(value).__name__}")
    if "model" not in d or "layers" not in d:
        raise ControlVectorError(f"{source}: the sidecar lacks 'model' or 'layers'")
    return VectorMeta(**{k: d[k] for k in _META_TYPES if k in d})


def _kind_name(kind: type, key: str) -> str:
    return {"layers": "a list of integers", "norms": "an object of numbers"}.get(key, kind.__name__)


def read_meta(side: str | Path) -> VectorMeta:
    """The sidecar ``.json`` of a vector file (``ControlVectorError`` when it is unreadable or mistyped)."""
    side = Path(side)
    try:
        d = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ControlVectorError(f"{side}: the sidecar is not readable JSON ({type(e).__name__})") from None
    return meta_from_json(d, side)


def vector_paths(path: str | Path) -> tuple[Path, Path]:
    """(tensor file, sidecar) of a vector file; refused when they would be one file (``x.json``)."""
    path = Path(path)
    side = path.with_suffix(".json")
    if side == path or path.suffix.lower() == ".json":
        raise ControlVectorError(f"{path}: the vectors and their .json sidecar would be the same file; "
                                 "give a .safetensors destination")
    return path, side


def save_vectors(path: str | Path, vectors: dict[int, torch.Tensor], meta: VectorMeta,
                 overwrite: bool = True) -> tuple[Path, Path]:
    """Write ``layer.{l}`` tensors as safetensors plus a JSON sidecar (``.json``), each atomically.

    ``overwrite=False`` (a destination a user named): refuse when either file exists, and never
    replace one that appears meanwhile (``StoreError``)."""
    from safetensors.torch import save_file

    path, side = vector_paths(path)
    refuse_existing([path, side], overwrite)
    meta.norms = {str(l): float(v.norm()) for l, v in vectors.items()}
    meta.layers = sorted(vectors)
    tensors = {f"layer.{l}": v.detach().float().cpu().contiguous() for l, v in vectors.items()}
    write = (lambda p, w: atomic_write(p, w)) if overwrite else (lambda p, w: publish(p, w))
    write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"model": meta.model,
                                                                    "aggregator": meta.aggregator}))
    try:
        write(side, lambda tmp: tmp.write_text(json.dumps(asdict(meta), indent=2)))
    except BaseException:
        if not overwrite:
            path.unlink(missing_ok=True)  # this call created it: a sidecar refused leaves nothing half-written
        raise
    return path, side


def load_vectors(path: str | Path) -> tuple[dict[int, torch.Tensor], VectorMeta | None]:
    """Read vectors saved by ``save_vectors`` (safetensors only: nothing is unpickled).

    A file that is not safetensors (a pickle under the name, garbage, truncated) or a mistyped sidecar
    is a ``ControlVectorError`` naming the file."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - SafetensorError, a pickle, a truncated header: not a vector file
        raise ControlVectorError(f"{path}: not a readable safetensors file ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0] if str(e) else ''})") from None
    vectors = {}
    for key, t in tensors.items():
        if not key.startswith("layer.") or not key[6:].isdigit():
            raise ControlVectorError(f"{path}: unexpected tensor '{key}' (expected layer.<int>)")
        if t.dim() != 1 or not t.is_floating_point():
            raise ControlVectorError(f"{path}: tensor '{key}' is not a 1-D float vector")
        vectors[int(key[6:])] = t
    side = path.with_suffix(".json")
    meta = read_meta(side) if side.exists() and side != path else None
    return vectors, meta
