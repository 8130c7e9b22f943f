"""Steering vectors to and from llama.cpp control vectors (GGUF), and evaluation of imported vectors.

A llama.cpp control vector is a GGUF file with ``general.architecture = "controlvector"``,
``controlvector.model_hint`` (a string), ``controlvector.layer_count`` and one 1-D float32
tensor ``direction.N`` per steered layer (the layout repeng and EasySteer export).

Layer numbering. llama.cpp's loader (``llama_control_vector_load``) writes ``direction.N``
into its buffer at offset ``n_embd * (N - 1)`` and rejects N = 0; the context
(``llama_adapter_cvec::apply``) copies buffer offset ``n_embd * (il - 1)`` into the tensor of
layer ``il``; the graph adds that tensor to ``l_out`` of layer ``il`` (``build_cvec(cur, il)``
at the end of the 0-based block loop). The two ``- 1`` cancel: ``direction.N`` is added to
the output of decoder block N counted from 0, which is exactly this project's "layer N"
(the output of ``blocks[N]``). So layer N is written as ``direction.N`` unchanged; layer 0
cannot be expressed (llama.cpp never steers block 0) and is refused. repeng uses the same
convention (its ``direction.{layer}`` is the 0-based block it hooks).

Differences that remain: llama.cpp adds the vector at every position, prompt included
(``--control-vector-layer-range`` limits layers, not positions); the dashboard's default
steers from the last prompt token on. ``--control-vector-scaled FILE m`` is multiplier m.

Besides the llama.cpp keys, the file records ``steering.model``, ``steering.layers``,
``steering.vector_meta`` (the JSON sidecar) and ``steering.settings`` (the run's settings),
so an imported file is evaluated on the same split as the run it came from.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steering.core import jsonfile
from steering.core.files import publish, refuse_existing
from steering.core.vectors import VectorMeta, load_vectors, meta_from_json, save_vectors, vector_paths
from steering.errors import ControlVectorError  # noqa: F401 - re-exported

__all__ = ["ARCH", "ControlVectorError", "export_gguf", "read_vectors", "write_gguf", "evaluate_vectors"]

ARCH = "controlvector"
CONVENTION = ("direction.N is added to the output of decoder block N (0-based), as llama.cpp applies it; "
              "equal to this project's layer N")



def write_gguf(dest: str | Path, vectors: dict[int, torch.Tensor], meta: VectorMeta | None = None,
               settings: dict | None = None, force: bool = False) -> Path:
    """Write vectors as a llama.cpp control vector (float32 ``direction.N`` tensors).

    An existing ``dest`` is refused (``StoreError``) unless ``force``."""
    dest = Path(dest)
    if 0 in vectors:
        raise ControlVectorError("layer 0 cannot be exported: llama.cpp never adds a control vector to block 0's "
                                 "output (direction.0 is rejected by its loader); export layers 1 and above")
    if not vectors:
        raise ControlVectorError("no vectors to export")
    layers = sorted(vectors)
    sizes = {int(vectors[lay].numel()) for lay in layers}
    if len(sizes) != 1:
        raise ControlVectorError(f"vectors of different sizes {sorted(sizes)}; a control vector has one n_embd")
    refuse_existing([dest], force)
    return publish(dest, lambda tmp: _write_gguf_file(tmp, vectors, layers, meta, settings), force)


def _write_gguf_file(tmp: Path, vectors: dict[int, torch.Tensor], layers: list[int], meta: VectorMeta | None,
                     settings: dict | None) -> None:
    from gguf import GGUFWriter

    model = meta.model if meta else ""
    writer = GGUFWriter(str(tmp), arch=ARCH)
    try:
        writer.add_string(f"{ARCH}.model_hint", model)
        writer.add_uint32(f"{ARCH}.layer_count", len(layers))
        writer.add_string("steering.model", model)
        writer.add_array("steering.layers", [int(lay) for lay in layers])
        writer.add_string("steering.layer_convention", CONVENTION)
        if meta is not None:
            writer.add_string("steering.vector_meta", json.dumps(asdict(meta)))
        if settings is not None:
            writer.add_string("steering.settings", json.dumps(settings))
        for lay in layers:
            data = vectors[lay].detach().float().cpu().reshape(-1).numpy().astype(np.float32)
            writer.add_tensor(f"direction.{lay}", data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _run_parts(run_dir: Path) -> tuple[dict[int, torch.Tensor], VectorMeta | None, dict | None]:
    vec_path = run_dir / "vectors.safetensors"
    if not vec_path.is_file():
        raise ControlVectorError(f"{run_dir}: no vectors.safetensors (is it a run directory?)")
    vectors, meta = load_vectors(vec_path)
    manifest_path = run_dir / "manifest.json"
    settings = jsonfile.read(manifest_path, ControlVectorError).get("settings") if manifest_path.is_file() else None
    settings = None
    if manifest_path.is_file():
        try:
            settings = json.loads(manifest_path.read_text()).get("settings")
        except (ValueError, AttributeError, RecursionError):
            raise ControlVectorError(f"{manifest_path}: not a readable run manifest") from None
        if not isinstance(settings, dict):
            raise ControlVectorError(f"{manifest_path}: the run manifest has no settings")
    return vectors, meta, settings


def export_gguf(run_dir: str | Path, dest: str | Path, layers: list[int] | None = None,
                force: bool = False) -> tuple[Path, list[int]]:
    """A run's vectors as a control vector file; layer 0 is left out (llama.cpp cannot steer it)."""
    vectors, meta, settings = _run_parts(Path(run_dir))
    chosen = sorted(vectors) if layers is None else layers
    missing = [lay for lay in chosen if lay not in vectors]
    if missing:
        raise ControlVectorError(f"{run_dir}: no vector for layer(s) {missing}; it has {sorted(vectors)}")
    chosen = [lay for lay in chosen if lay != 0] if layers is None else chosen
    return write_gguf(dest, {lay: vectors[lay] for lay in chosen}, meta, settings, force), chosen


GGUF_FIELDS = ("general.architecture", "steering.model", f"{ARCH}.model_hint", f"{ARCH}.layer_count",
               "steering.vector_meta", "steering.settings")


def _read_gguf(path: Path) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
    """The fields this module reads and every tensor (name, float32 data) of a GGUF file.

    The gguf package trusts the file: a damaged one fails anywhere inside it (IndexError, a decode or
    struct error...), so all of its reading happens here and any such failure names the file."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
        found = {key: reader.fields[key].contents() for key in GGUF_FIELDS if key in reader.fields}
        tensors = [(t.name, np.asarray(t.data, dtype=np.float32).reshape(-1).copy()) for t in reader.tensors]
    except (ValueError, OSError, IndexError, KeyError, OverflowError, struct.error) as e:
        raise ControlVectorError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None
    return found, tensors


def _json_field(path: Path, found: dict[str, Any], key: str) -> dict | None:
    """A JSON object stored as a string field of an imported file (None when absent)."""
    text = found.get(key)
    if not text:
        return None
    if not isinstance(text, str):
        raise ControlVectorError(f"{path} field {key}: expected a JSON string, found {type(text).__name__}")
    doc = jsonfile.loads(text, f"{path} field {key}", ControlVectorError)
    if not isinstance(doc, dict):
        raise ControlVectorError(f"{path} field {key}: expected a JSON object, found {type(doc).__name__}")
    return doc


def read_vectors(path: str | Path) -> tuple[dict[int, torch.Tensor], dict]:
    """Vectors and what is known about them, from a control vector ``.gguf`` or a ``.safetensors`` with sidecar.

    The dict holds ``model``, ``layers``, ``format``, ``sha256`` and, when the file records them,
    ``vector_meta`` (the sidecar fields) and ``settings`` (the run that trained them).
    """
    path = Path(path)
    if not path.is_file():
        raise ControlVectorError(f"{path}: no such file")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if path.suffix.lower() == ".safetensors":
        vectors, meta = load_vectors(path)  # damaged content or sidecar types: a ControlVectorError naming it
        info = {"format": "safetensors", "model": meta.model if meta else "", "layers": sorted(vectors),
                "vector_meta": asdict(meta) if meta else None, "settings": None, "sha256": sha}
        return vectors, info
    if path.suffix.lower() != ".gguf":
        raise ControlVectorError(f"{path}: expected a .gguf control vector or a .safetensors vector file")
    found, tensors = _read_gguf(path)
    arch = found.get("general.architecture")
    if arch != ARCH:
        raise ControlVectorError(f"{path}: general.architecture is {arch!r}, not a control vector ({ARCH!r})")
    vectors = {}
    for name, data in tensors:
        prefix, _, index = name.partition(".")
        if prefix != "direction" or not index.isdigit() or int(index) == 0:
            raise ControlVectorError(f"{path}: unexpected tensor '{name}' (expected direction.N with N >= 1)")
        layer = int(index)
        vectors[layer] = vectors.get(layer, 0) + torch.from_numpy(data)  # llama.cpp sums repeats too
    if not vectors:
        raise ControlVectorError(f"{path}: no direction tensors")
    model = found.get("steering.model") or found.get(f"{ARCH}.model_hint") or ""
    meta_doc = _json_field(path, found, "steering.vector_meta")  # its types checked like a sidecar's
    info = {"format": "gguf", "model": model if isinstance(model, str) else "",
            "layers": sorted(vectors), "layer_count": found.get(f"{ARCH}.layer_count"),
            "vector_meta": asdict(meta_from_json(meta_doc, f"{path} (steering.vector_meta)")) if meta_doc else None,
            "settings": _json_field(path, found, "steering.settings"), "sha256": sha}
    return vectors, info




def to_safetensors(path: str | Path, dest: str | Path, force: bool = False) -> tuple[Path, Path]:
    """Convert a control vector (or vector file) into this project's safetensors + JSON sidecar.

    Refused when the destination's vector and sidecar paths coincide, or when either exists (unless
    ``force``): an import never replaces a file it did not create."""
    vector_paths(dest)  # a bad destination is refused before any work
    vectors, info = read_vectors(path)
    known = {f.name for f in fields(VectorMeta)}
    try:
        meta = VectorMeta(**{k: v for k, v in (info.get("vector_meta") or {}).items() if k in known}) \
            if info.get("vector_meta") else VectorMeta(model=info["model"], layers=info["layers"])
    except TypeError as e:  # the file's vector_meta lacks a required field
        raise ControlVectorError(f"{path}: its vector_meta is incomplete ({e})") from None
    meta.hidden_size = meta.hidden_size or int(next(iter(vectors.values())).numel())
    return save_vectors(dest, vectors, meta, overwrite=force)


def evaluate_vectors(path: str | Path, lm, dataset, cfg, out: str | Path = "results", progress=None):
    """Evaluate imported vectors on a dataset's test split over the multiplier grid; store and return the run.

    Nothing is trained: the vectors come from ``path`` and are scored by the sweep's own evaluation
    (``sweep.evaluate_given_vectors``: the run's variant, metric form, position and path). The run's
    settings carry the file's sha256, so it is stored beside (never instead of) a trained run of the
    same settings, and the dashboard and ``load_run`` read it like any run. The diagnostics need the
    training pairs, which an imported vector does not have: they are not computed, so not in the key.
    """
    from dataclasses import replace

    from steering.core.config import DIAGNOSTIC_DEFAULTS, settings_of
    from steering.core.damage import read_or_quarantine
    from steering.core.results import load_run
    from steering.core.store import find_run, run_lock

    vectors, info = read_vectors(path)
    layers = cfg.layers if cfg.layers is not None else sorted(vectors)
    missing = [lay for lay in layers if lay not in vectors]
    if missing:
        raise ControlVectorError(f"{path}: no vector for layer(s) {missing}; it has {sorted(vectors)}")
    for lay in layers:
        lm.check_layer(lay)
        if vectors[lay].numel() != lm.hidden_size:
            raise ControlVectorError(f"{path}: layer {lay} has {vectors[lay].numel()} values; "
                                     f"{lm.name} has hidden size {lm.hidden_size}")
    cfg = replace(cfg, layers=list(layers), dataset=cfg.dataset or dataset.name, **DIAGNOSTIC_DEFAULTS)
    cfg.validate(lm.n_layers)
    settings = settings_of(cfg, dataset, list(layers))
    settings["imported_vectors_sha256"] = info["sha256"]
    with run_lock(out, settings):  # one writer per run: an identical evaluation waits, then reads this one
        existing = find_run(out, settings)
        served = read_or_quarantine(out, existing, lambda p: load_run(p, cached=True), "stored run") \
            if existing is not None else None
        if served is not None:
            return served
        return _evaluate(vectors, info, path, lm, dataset, cfg, out, progress, settings, layers)


def _evaluate(vectors, info, path, lm, dataset, cfg, out, progress, settings, layers):
    """Score given vectors on the run's test split through the sweep's one evaluation, and store the run."""
    import time

    from steering.run import sweep as S

    started = time.time()
    chosen = {lay: vectors[lay].to(lm.device, lm.dtype) for lay in layers}
    ev = S.evaluate_given_vectors(lm, cfg, dataset, chosen, list(layers), progress)
    manifest = {**S.base_manifest(lm, cfg, dataset, settings), "seconds": round(time.time() - started, 2),
                "imported_from": str(path), "imported_format": info["format"], "imported_model": info["model"],
                **S.fallback_fields(0, ev.reference_fallback)}
    known = {f.name for f in fields(VectorMeta)}
    meta = VectorMeta(**{k: v for k, v in (info.get("vector_meta") or {}).items() if k in known}) \
        if info.get("vector_meta") else VectorMeta(model=info["model"] or lm.name, layers=list(layers))
    return S.store_run(out, S.RunOutputs(settings, cfg, ev.frames(cfg, dataset.name, lm.name), chosen, meta, manifest))
