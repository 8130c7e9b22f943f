"""A cache of dequantised GGUF weights, so a GGUF model loads in seconds after its first load.

transformers dequantises every tensor of a ``.gguf`` file on each load (about 17 s for the
embedded SmolLM2 on a 2-core CPU) and converts its vocabulary into a tokenizer. The first
load here does that once and writes the result with ``save_pretrained`` (safetensors,
config, tokenizer) to ``<cache>/gguf/<sha256 of the file>/``; later loads read that folder.

The key is the file's content hash, so an edited or replaced file gets a new entry (and the
stale entry of the same path is removed). Hashes are remembered per (path, size, mtime) in
``index.json``, so an unchanged file is not re-hashed. The cache lives in
``$STEERING_CACHE_DIR`` or ``$XDG_CACHE_HOME/steering`` (default ``~/.cache/steering``);
``STEERING_CACHE_DIR=off`` turns it off. Nothing is pickled: weights are safetensors.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import torch

__all__ = ["cache_root", "file_sha256", "entry_dir", "load_gguf"]

_COMPLETE = "steering-cache.json"  # written last: an entry without it is ignored
_LOCK = threading.Lock()


def cache_root() -> Path | None:
    """The cache directory, or None when caching is off."""
    env = os.environ.get("STEERING_CACHE_DIR")
    if env is not None and env.strip().lower() in ("off", "0", "none", ""):
        return None
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "steering"


def _index_path(root: Path) -> Path:
    return root / "gguf" / "index.json"


def _read_index(root: Path) -> dict:
    try:
        return json.loads(_index_path(root).read_text())
    except (OSError, ValueError):
        return {}


def _write_index(root: Path, index: dict) -> None:
    path = _index_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(index, f, indent=1)
    os.replace(f.name, path)


def file_sha256(path: Path, root: Path | None = None) -> str:
    """sha256 of the file, remembered per (path, size, mtime) in the cache index."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns]
    index = _read_index(root) if root else {}
    known = index.get(str(path))
    if known and known.get("stamp") == stamp:
        return known["sha256"]
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if root:
        with _LOCK:
            index = _read_index(root)
            old = index.get(str(path), {}).get("sha256")
            index[str(path)] = {"stamp": stamp, "sha256": digest}
            _write_index(root, index)
        still_used = {v.get("sha256") for v in index.values()}
        if old and old != digest and old not in still_used:  # the file changed: drop its stale entry
            shutil.rmtree(root / "gguf" / old, ignore_errors=True)
    return digest


def entry_dir(root: Path, sha: str) -> Path:
    return root / "gguf" / sha


def _fresh_load(path: Path, dtype: torch.dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": path.name, "trust_remote_code": trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=dtype, **kwargs)
    return model, tokenizer


def _store(model, tokenizer, target: Path, sha: str, source: Path) -> None:
    """Write the entry into a temporary folder beside target, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{sha[:12]}-"))
    try:
        # save_pretrained refuses models loaded from GGUF; their dequantised tensors are plain weights.
        from safetensors.torch import save_model

        config = copy.deepcopy(model.config)  # the loaded model keeps its own config untouched
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(config, attr):
                delattr(config, attr)
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        import transformers

        (tmp / _COMPLETE).write_text(json.dumps({"sha256": sha, "source": str(source),
                                                 "dtype": str(next(model.parameters()).dtype),
                                                 "transformers": transformers.__version__}, indent=1))
        try:
            os.rename(tmp, target)
        except OSError:  # another process stored it first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_gguf(path: str | Path, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False):
    """(model, tokenizer) of a .gguf file: from the cache when it holds the file, else a fresh load that fills it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path).resolve()
    root = cache_root()
    if root is None:
        return _fresh_load(path, dtype, trust_remote_code)
    try:
        sha = file_sha256(path, root)
    except OSError:
        return _fresh_load(path, dtype, trust_remote_code)
    target = entry_dir(root, sha)
    if (target / _COMPLETE).is_file():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(target))
            model = AutoModelForCausalLM.from_pretrained(str(target), dtype=dtype)
            return model, tokenizer
        except Exception:  # noqa: BLE001 - any unreadable entry (truncated file, old format) is rebuilt below
            shutil.rmtree(target, ignore_errors=True)
    # Dequantise once in float32 (what transformers computes before casting), so the cache serves every dtype.
    model, tokenizer = _fresh_load(path, torch.float32, trust_remote_code)
    try:
        _store(model, tokenizer, target, sha, path)
    except OSError:
        pass  # a read-only or full disk: the model still loads, only not faster next time
    if dtype != torch.float32:
        model = model.to(dtype)
    return model, tokenizer
