"""Cheap checks that run before any model is loaded or any pass is made.

Each raises ``ValidationError`` (a ``ValueError``) with one line saying what is
wrong and what would be valid, so that the CLI exits at once with code 2 and
the dashboard shows the message in the page. Nothing here loads weights: the
layer count and context length of a model are read from its config or the
header of its ``.gguf`` file.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
from pathlib import Path
from typing import Sequence

# Prompts longer than this many tokens are refused even when the model's context is longer:
# the fast path keeps every prompt's keys/values, so one huge item would exhaust memory.
MAX_PROMPT_TOKENS = int(os.environ.get("STEERING_MAX_PROMPT_TOKENS", "8192"))
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


class ValidationError(ValueError):
    """Bad input found before any work; the message says what is valid."""


def check_seed(seed: int) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ValidationError(f"seed {seed} is not allowed: use a whole number from 0 to {2**63 - 1}")
    return seed


def check_device(spec: str | None) -> str | None:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and present on this machine (None: pick automatically)."""
    if spec is None:
        return None
    spec = spec.strip()
    if not _DEVICE.match(spec):
        raise ValidationError(f"unknown device '{spec}': use cpu, cuda, cuda:N or mps")
    import torch

    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValidationError(f"device '{spec}' asked for, but this machine has no usable CUDA GPU: use cpu")
        n = torch.cuda.device_count()
        if ":" in spec and int(spec.split(":")[1]) >= n:
            raise ValidationError(f"device '{spec}' does not exist: this machine has cuda:0-{n - 1}")
    if spec == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValidationError("device 'mps' asked for, but Apple's MPS is not available here: use cpu")
    return spec


def name_max(directory: Path) -> int:
    """The longest file name the file system under ``directory`` takes (255 where it cannot tell)."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_out_dir(out: str | Path, run_names: Sequence[str] = ()) -> Path:
    """The results directory can be created and written, and its run directory names fit the file system."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValidationError(f"--out {out}: is a file, not a directory")
    probe = out
    while not probe.exists():
        if probe == probe.parent:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValidationError(f"--out {out}: {probe} is a file, not a directory")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ValidationError(f"--out {out}: {probe} is not writable")
    limit = name_max(out)
    for name in run_names:
        longest = len((".partial-" + name).encode())  # the longest name the store writes for a run
        if longest > limit:
            raise ValidationError(f"the run directory name for '{name[:40]}...' is {longest} bytes, longer than "
                                  f"the {limit} this file system allows: use a shorter dataset file name")
    return out


# ---------------------------------------------------------------- models, without loading them


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
    from .models import REGISTRY, ModelError, registry_gguf_path

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
    return min(context, MAX_PROMPT_TOKENS) if context else MAX_PROMPT_TOKENS


def model_context(lm) -> int | None:
    cfg = getattr(lm.model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    value = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def check_prompt_lengths(lm, examples: Sequence, pairs: Sequence) -> None:
    """Every encoded item (prompt and its longer completion) fits the model's context and the cap.

    Runs after tokenising, before any forward pass; names the first item that is too long.
    """
    limit = prompt_token_limit(model_context(lm))
    for example, pair in zip(examples, pairs):
        n = len(pair.prompt_ids) + max(len(pair.pos_ids), len(pair.neg_ids))
        if n > limit:
            raise ValidationError(f"item {example.example_id} is {n} tokens long; the limit is {limit} "
                                  f"(the model's context, at most {MAX_PROMPT_TOKENS}): shorten or drop it")


# No tokenizer turns more than this many characters into one token on natural text: an item with more
# characters than this times the token limit cannot fit, and is refused before the model is even loaded.
CHARS_PER_TOKEN_BOUND = 32


def check_item_sizes(examples: Sequence, context: int | None) -> None:
    """Items that are certainly too long for the model, found from their length in characters alone."""
    limit = prompt_token_limit(context)
    for e in examples:
        n = len(e.question) + max(len(e.positive), len(e.negative))
        if n > limit * CHARS_PER_TOKEN_BOUND:
            raise ValidationError(f"item {e.example_id} is {n} characters long, far over the limit of {limit} "
                                  f"tokens (the model's context, at most {MAX_PROMPT_TOKENS}): shorten or drop it")


def check_layer_spec(spec: str | None, n_layers: int | None) -> None:
    """The --layers text reads (not reversed, not empty), and fits the model when its layer count is known."""
    if spec is None:
        return
    from .config import SweepError, parse_layers

    try:
        parse_layers(spec, n_layers if n_layers else 1 << 16)
    except SweepError as e:
        if n_layers or "out of range" not in str(e):
            raise ValidationError(str(e)) from None


def precheck_sweep(model: str, dataset_name: str, layers: str | None, seed: int, device: str | None,
                   n_train: int, n_test: int, out: str | Path, examples: Sequence = ()) -> None:
    """Everything about a sweep that can be checked without loading the model (the CLI runs it first)."""
    check_seed(seed)
    if n_train < 1 or n_test < 1:
        raise ValidationError(f"n_train={n_train} and n_test={n_test}: both must be at least 1")
    check_device(device)
    check_layer_spec(layers, None)  # syntax first: a typo is reported even when the model is unknown
    model_part = Path(str(model)).name.replace("/", "_")
    check_out_dir(out, [f"{dataset_name}--{model_part}--{'0' * 16}"])
    check_hf_available(model)
    n_layers, context = model_shape(model)
    check_layer_spec(layers, n_layers)  # against the model's config or gguf header when it can be read
    check_item_sizes(examples, context)
