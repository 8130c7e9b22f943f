"""What a model file says before it is loaded: GGUF headers, config.json, the Hugging Face cache.

Read by the pre-run checks (layer count, context length) and by generation (the prompt cap).
Nothing here loads weights.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from pathlib import Path
from typing import Sequence

from steering.core.config import env_int
from steering.errors import ValidationError

# Prompts longer than this many tokens are refused even when the model's context is longer:
# the fast path keeps every prompt's keys/values, so one huge item would exhaust memory.
DEFAULT_MAX_PROMPT_TOKENS = 8192


def max_prompt_tokens() -> int:
    """The prompt cap: $STEERING_MAX_PROMPT_TOKENS, else DEFAULT_MAX_PROMPT_TOKENS."""
    return env_int("STEERING_MAX_PROMPT_TOKENS", DEFAULT_MAX_PROMPT_TOKENS)


def looks_like_hf_id(name: str) -> bool:
    return "/" in name and not name.startswith((".", "/", "~")) and name.count("/") == 1 \
        and not Path(name).suffix == ".gguf" and not Path(name).expanduser().is_dir()


def _reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 2.0) -> bool:
    """A TCP connection opens within ``timeout`` seconds (name lookup included, run in a thread)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(result and result[0])


def check_hf_available(name: str) -> None:
    """A Hugging Face id is in the local cache, or the hub can be reached: fail in seconds, not after retries."""
    if not looks_like_hf_id(name):
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - an id the hub library rejects is reported below as not cached
        cached = None
    if isinstance(cached, str):
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if offline or not _reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "no internet connection to huggingface.co"
        raise ValidationError(f"cannot load model '{name}': {why} and it is not in the local Hugging Face cache")


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_metadata(path: str | Path, wanted: Sequence[str] = ()) -> dict:
    """Key/value metadata of a ``.gguf`` file's header (stops once every ``wanted`` key is read).

    Raises ValidationError for a file that is not GGUF or is cut short.
    """
    path = Path(path)
    out: dict = {}
    try:
        with open(path, "rb") as f:
            def read(fmt: str):
                size = struct.calcsize(fmt)
                data = f.read(size)
                if len(data) != size:
                    raise EOFError
                return struct.unpack(fmt, data)[0]

            def string() -> str:
                n = read("<Q")
                if n > 1 << 24:
                    raise ValueError("string too long")
                data = f.read(n)
                if len(data) != n:
                    raise EOFError
                return data.decode("utf-8", "replace")

            def value(kind: int):
                if kind in _GGUF_SCALARS:
                    return read(_GGUF_SCALARS[kind])
                if kind == 8:
                    return string()
                if kind == 9:
                    item, n = read("<I"), read("<Q")
                    if item in _GGUF_SCALARS:  # skip numeric arrays without reading them item by item
                        size = struct.calcsize(_GGUF_SCALARS[item]) * n
                        f.seek(size, 1)
                        if f.tell() > path.stat().st_size:
                            raise EOFError
                        return None
                    for _ in range(n):
                        value(item)
                    return None
                raise ValueError(f"unknown value type {kind}")

            if f.read(4) != b"GGUF":
                raise ValidationError(f"{path}: not a GGUF file (bad magic bytes)")
            read("<I")  # version
            read("<Q")  # tensor count
            n_kv = read("<Q")
            for _ in range(n_kv):
                key = string()
                out[key] = value(read("<I"))
                arch = out.get("general.architecture")
                if wanted and arch and all(w.format(arch=arch) in out for w in wanted):
                    break
    except (EOFError, struct.error):
        raise ValidationError(f"{path}: the .gguf file is truncated (its header ends early)") from None
    except (ValueError, OverflowError) as e:
        if isinstance(e, ValidationError):
            raise
        raise ValidationError(f"{path}: not a readable .gguf file ({e})") from None
    except OSError as e:
        raise ValidationError(f"{path}: cannot read file ({e.strerror or e})") from None
    return out


def model_shape(name: str) -> tuple[int | None, int | None]:
    """(layer count, context length) of a model from its config or gguf header; (None, None) if unknown.

    Registry models and ``.gguf`` paths read the gguf header; local directories and
    cached Hugging Face ids read ``config.json``. Nothing is loaded.
    """
    from steering.core.registry import REGISTRY, registry_gguf_path
    from steering.errors import ModelError

    gguf = None
    path = Path(name).expanduser()
    if name in REGISTRY:
        try:
            gguf = registry_gguf_path(REGISTRY[name])
        except ModelError:
            return None, None  # load_model reports it
    elif path.suffix == ".gguf":
        if not path.is_file():
            return None, None
        gguf = path
    if gguf is not None:
        meta = gguf_metadata(gguf, ("{arch}.block_count", "{arch}.context_length"))
        arch = meta.get("general.architecture")
        layers = meta.get(f"{arch}.block_count")
        context = meta.get(f"{arch}.context_length")
        return (int(layers) if layers else None), (int(context) if context else None)
    config = path / "config.json" if path.is_dir() else None
    if config is None and looks_like_hf_id(name):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")
            config = Path(cached) if isinstance(cached, str) else None
        except Exception:  # noqa: BLE001
            config = None
    if config is None or not config.is_file():
        return None, None
    try:
        cfg = json.loads(config.read_text())
    except (OSError, ValueError, RecursionError):
        return None, None
    cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}
    layers = cfg.get("num_hidden_layers") or cfg.get("n_layer")
    context = cfg.get("max_position_embeddings") or cfg.get("n_positions")
    return (layers if isinstance(layers, int) else None), (context if isinstance(context, int) else None)


def prompt_token_limit(context: int | None) -> int:
    cap = max_prompt_tokens()
    return min(context, cap) if context else cap


def model_context(lm) -> int | None:
    cfg = getattr(lm.model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    value = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    return int(value) if isinstance(value, int) and value > 0 else None
