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
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

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


def _field(reader, key: str) -> Any:
    f = reader.fields.get(key)
    return None if f is None else f.contents()


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
        try:
            vectors, meta = load_vectors(path)
        except ControlVectorError:
            raise
        except (ValueError, OSError) as e:
            raise ControlVectorError(f"{path}: {e}") from None
        info = {"format": "safetensors", "model": meta.model if meta else "", "layers": sorted(vectors),
                "vector_meta": asdict(meta) if meta else None, "settings": None, "sha256": sha}
        return vectors, info
    if path.suffix.lower() != ".gguf":
        raise ControlVectorError(f"{path}: expected a .gguf control vector or a .safetensors vector file")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - garbage or a truncated file raises many kinds: not a GGUF file
        raise ControlVectorError(f"{path}: not a readable GGUF file ({type(e).__name__})") from None
    arch = _field(reader, "general.architecture")
    if arch != ARCH:
        raise ControlVectorError(f"{path}: general.architecture is {arch!r}, not a control vector ({ARCH!r})")
    vectors = {}
    for t in reader.tensors:
        prefix, _, index = t.name.partition(".")
        if prefix != "direction" or not index.isdigit() or int(index) == 0:
            raise ControlVectorError(f"{path}: unexpected tensor '{t.name}' (expected direction.N with N >= 1)")
        data = np.asarray(t.data, dtype=np.float32).reshape(-1)
        layer = int(index)
        vectors[layer] = vectors.get(layer, 0) + torch.from_numpy(data.copy())  # llama.cpp sums repeats too
    if not vectors:
        raise ControlVectorError(f"{path}: no direction tensors")
    meta_json, settings_json = _field(reader, "steering.vector_meta"), _field(reader, "steering.settings")
    model = _field(reader, "steering.model") or _field(reader, f"{ARCH}.model_hint") or ""
    info = {"format": "gguf", "model": model if isinstance(model, str) else "",
            "layers": sorted(vectors), "layer_count": _field(reader, f"{ARCH}.layer_count"),
            "vector_meta": asdict(_json_field(path, meta_json, "steering.vector_meta", meta_from_json))
            if meta_json else None,
            "settings": _json_field(path, settings_json, "steering.settings") if settings_json else None,
            "sha256": sha}
    return vectors, info


def _json_field(path: Path, text, key: str, parse=None):
    """A JSON object recorded in the file (``parse`` checks its types); anything else is one line."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise ControlVectorError(f"{path}: {key} is not a JSON object")
    return parse(value, f"{path} ({key})") if parse else value


def to_safetensors(path: str | Path, dest: str | Path, force: bool = False) -> tuple[Path, Path]:
    """Convert a control vector (or vector file) into this project's safetensors + JSON sidecar.

    Refused when the destination's vector and sidecar paths coincide, or when either exists (unless
    ``force``): an import never replaces a file it did not create."""
    vector_paths(dest)  # a bad destination is refused before any work
    vectors, info = read_vectors(path)
    known = {f.name for f in fields(VectorMeta)}
    meta = VectorMeta(**{k: v for k, v in (info.get("vector_meta") or {}).items() if k in known}) \
        if info.get("vector_meta") else VectorMeta(model=info["model"], layers=info["layers"])
    meta.hidden_size = meta.hidden_size or int(next(iter(vectors.values())).numel())
    return save_vectors(dest, vectors, meta, overwrite=force)


def evaluate_vectors(path: str | Path, lm, dataset, cfg, out: str | Path = "results", progress=None):
    """Evaluate imported vectors on a dataset's test split over the multiplier grid; store and return the run.

    Nothing is trained: the vectors come from ``path``. The run's settings carry the file's sha256,
    so it is stored beside (never instead of) a trained run of the same settings, and the dashboard
    and ``load_run`` read it like any run.
    """
    from steering.core.config import settings_of
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
    cfg.layers, cfg.dataset = list(layers), cfg.dataset or dataset.name
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
    from datetime import datetime, timezone

    from steering.core.datasets import split_dataset
    from steering.core.results import pairs_frame, result_frames
    from steering.core.store import settings_key
    from steering.run import sweep as S

    _, test_ex = split_dataset(dataset, cfg.n_train, cfg.n_test, cfg.seed, cfg.balance_train)
    test_pairs = S.encode_all(lm, test_ex, cfg.test_variant, dataset.name, cfg.system)
    chosen = {lay: vectors[lay].to(lm.device, lm.dtype) for lay in layers}
    key = settings_key(settings)
    props = S.evaluate_grid(lm, test_pairs, chosen, list(layers), cfg, progress, None, key, None)
    prop_df, steer_df = result_frames(cfg, dataset.name, lm.name, test_ex, test_pairs, list(layers), props)
    frames = {"propensities.parquet": prop_df, "steerability.parquet": steer_df,
              "train.parquet": pairs_frame([], []), "test.parquet": pairs_frame(test_ex, test_pairs)}
    manifest = {"settings": settings, "key": key, "created": datetime.now(timezone.utc).isoformat(),
                "path": "fast" if S.use_fast(lm, cfg) else "reference", "imported_from": str(path),
                "imported_format": info["format"], "imported_model": info["model"],
                "n_layers_model": lm.n_layers, "hidden_size": lm.hidden_size, "dataset_path": dataset.path,
                "device": str(lm.device), "dtype": str(lm.dtype)}
    known = {f.name for f in fields(VectorMeta)}
    meta = VectorMeta(**{k: v for k, v in (info.get("vector_meta") or {}).items() if k in known}) \
        if info.get("vector_meta") else VectorMeta(model=info["model"] or lm.name, layers=list(layers))
    return S.store_run(out, S.RunOutputs(settings, cfg, frames, chosen, meta, manifest))
