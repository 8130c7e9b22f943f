"""Model loading and the few structural facts the engine needs (blocks, lm head).

A model is named by registry name (``smollm2-135m``), Hugging Face id, local
directory or ``.gguf`` path. Nothing here is model-family specific except the
search for the decoder-block list, which works for Llama, Gemma, Qwen, Mistral
(``model.layers``) and GPT-2 style (``transformer.h``) layouts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from steering.core.registry import DEFAULT_MODEL, REGISTRY, registry_gguf_path
from steering.errors import ModelError


@dataclass
class LoadedModel:
    """A model with its tokenizer and the handles the engine uses.

    ``lock`` serialises every pass that installs hooks, so concurrent callers
    (two browser sessions on one cached model) never see each other's hooks.
    """

    name: str
    model: nn.Module
    tokenizer: object
    blocks: nn.ModuleList
    base: nn.Module  # the module that owns ``blocks`` and turns embeddings into final hidden states
    device: torch.device
    dtype: torch.dtype
    lock: threading.RLock = field(default_factory=threading.RLock)
    # Set once by steering.engine.fast.check_fast_path: does the fast path agree with the reference here,
    # and which attention-mask form the family's forward takes.
    fast_ok: bool | None = None
    mask_style: str = "tensor"
    fast_note: str = ""  # why the fast path is off, when it is

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.n_layers:
            raise ModelError(f"layer {layer} is out of range: {self.name} has layers 0-{self.n_layers - 1}")
        return layer


def find_blocks(model: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """Return (owner, block list): the ModuleList whose length is the layer count."""
    n = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    candidates = []
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.ModuleList) and (n is None or len(child) == n):
                candidates.append((f"{name}.{child_name}".strip("."), module, child))
    if not candidates:
        raise ModelError(f"cannot find the decoder blocks of {type(model).__name__}")
    # Prefer the conventional names; the shortest path is the decoder's own list.
    candidates.sort(key=lambda c: (not c[0].endswith(("layers", ".h")), len(c[0])))
    _, owner, blocks = candidates[0]
    return owner, blocks

def pick_device(device: str | None = None) -> torch.device:
    if device:
        from steering.engine.devices import check_device
        from steering.errors import ValidationError

        try:
            return torch.device(check_device(device))
        except ValidationError as e:
            raise ModelError(str(e)) from None
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_model(
    name: str = DEFAULT_MODEL,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    device_map: str | None = None,
) -> LoadedModel:
    """Load a model by registry name, HF id, local directory or ``.gguf`` path.

    ``dtype`` None: bfloat16 on CUDA, float32 on CPU. ``device_map="auto"`` spreads a model too large
    for one GPU over the machine's GPUs (accelerate); the fast path follows its blocks' devices.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steering.engine.devices import default_dtype

    dtype = dtype or default_dtype(pick_device(device))
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype '{dtype}': choose one of {', '.join(DTYPES)}")
    torch_dtype = DTYPES[dtype]
    dev = pick_device(device)
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    path = Path(name).expanduser()
    if name in REGISTRY and REGISTRY[name].hf_id:
        source = REGISTRY[name].hf_id  # downloaded by transformers on first use
    elif name in REGISTRY:
        gguf = registry_gguf_path(REGISTRY[name])
        source, kwargs["gguf_file"] = str(gguf.parent), gguf.name
    elif path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"no such gguf file: {path}")
        source, kwargs["gguf_file"] = str(path.parent), path.name
    elif path.is_dir():
        source = str(path)
    elif "/" in name and not name.startswith((".", "/")) and name.count("/") == 1:
        source = name  # a Hugging Face id; needs internet or the local HF cache
        from steering.engine.modelfiles import check_hf_available
        from steering.errors import ValidationError

        try:
            check_hf_available(name)  # offline and not cached: say so at once instead of retrying
        except ValidationError as e:
            raise ModelError(str(e)) from None
    else:
        raise ModelError(
            f"unknown model '{name}': use a registry name ({', '.join(REGISTRY)}), "
            "a Hugging Face id (org/name), a local model directory or a .gguf file"
        )
    try:
        if "gguf_file" in kwargs:  # dequantised once, then read from the weight cache
            from steering.engine.weight_cache import load_gguf

            model, tokenizer = load_gguf(Path(source) / kwargs["gguf_file"], torch_dtype, trust_remote_code)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            placement = {"device_map": device_map} if device_map else {}
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **placement, **kwargs)
    except Exception as e:  # noqa: BLE001 - a damaged file fails in many ways (struct.error, EOFError, ...)
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ModelError(f"cannot load model '{name}': {first or type(e).__name__}") from e
    return wrap_model(model, tokenizer, name, dev)


def wrap_model(model: nn.Module, tokenizer, name: str, device: torch.device | None = None) -> LoadedModel:
    """Put a ready model in eval mode on its device and find its blocks.

    A model accelerate dispatched (``device_map``) stays where it is: ``device`` is then where its
    inputs go, the execution device of its embeddings.
    """
    from steering.engine.devices import execution_device

    if getattr(model, "hf_device_map", None) or any(hasattr(m, "_hf_hook") for m in model.modules()):
        device = execution_device(model.get_input_embeddings(), device or torch.device("cpu"))
        model = model.eval()
    else:
        device = device or next(model.parameters()).device
        model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    base, blocks = find_blocks(model)
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        blocks=blocks,
        base=base,
        device=device,
        dtype=next(model.parameters()).dtype,
    )
