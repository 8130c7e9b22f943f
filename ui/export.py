"""What the Export page offers: tables as bytes, the stored vector files, a figure report, a snippet."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from steering.core.datasets import BUNDLED_DIR
from steering.core.registry import TINY_MODEL
from steering.core.results import SweepResult
from steering.interop import static_figures
from steering.run import figures
from ui import state


def csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV with formula-like text cells neutralised (a leading quote), numbers unchanged."""
    from steering.interop.csvsafe import csv_bytes as safe

    return safe(df)


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def run_file(result: SweepResult, name: str) -> bytes:
    """A file of the stored run (vectors.safetensors, vectors.json, manifest.json)."""
    return (Path(result.run_dir) / name).read_bytes()


def png_available() -> bool:
    return static_figures.unavailable_reason() is None


def static_unavailable_reason() -> str | None:
    return static_figures.unavailable_reason()


def image_bytes(fig, fmt: str) -> bytes:
    """PNG or SVG of one figure (kaleido with the system Chromium)."""
    return static_figures.to_image(fig, fmt)


def gguf_bytes(result: SweepResult) -> bytes:
    """The run's vectors as a llama.cpp control vector (layer 0 left out: llama.cpp cannot steer it)."""
    import tempfile

    from steering.interop.controlvec import export_gguf

    with tempfile.TemporaryDirectory() as tmp:
        path, _ = export_gguf(result.run_dir, Path(tmp) / "control-vector.gguf")
        return path.read_bytes()


FIGURES = state.SessionMemo("export_figures", 4)


def report_figures(result: SweepResult, layer: int, metric: str) -> dict:
    """The run's figures, built once per (run, layer, metric) in a session: the page lists them on every visit."""
    return FIGURES.get_or_compute((result.manifest["key"], layer, metric),
                                  lambda: static_figures.run_figures(result, layer, metric))


def report_html(result: SweepResult, layer: int, metric: str) -> str:
    cfg = result.config
    title = f"Steerability of {cfg.dataset} on {cfg.model} (run {result.manifest.get('key', '')})"
    return figures.figures_html(report_figures(result, layer, metric), title)


def snippet(ctx: state.Context, result: SweepResult) -> str:
    """Python that reproduces the run with the backend (served from the store if it is already there)."""
    cfg = result.config
    ds = ctx.dataset
    uploaded = ctx.settings.uploaded
    bundled = Path(ds.path).resolve().is_relative_to(BUNDLED_DIR.resolve())
    dataset = ("'path/to/your-upload" + Path(ds.path).suffix + "'" if uploaded
               else repr(ds.name) if bundled else repr(ds.path))
    load = ("from steering.engine.tiny import tiny_random_model\nlm = tiny_random_model()" if cfg.model == TINY_MODEL
            else f"from steering.engine.models import load_model\nlm = load_model({cfg.model!r})")
    note = "# the dataset was uploaded: save it to a file and put its path below\n" if uploaded else ""
    return f"""{load}
from steering.core.datasets import load_dataset
from steering.core.config import SweepConfig
from steering.run.sweep import run_sweep

{note}ds = load_dataset({dataset})
cfg = SweepConfig(
    model={cfg.model!r}, dataset=ds.name, layers={list(result.layers)!r},
    multipliers={list(cfg.multipliers)!r}, n_train={cfg.n_train}, n_test={cfg.n_test}, seed={cfg.seed},
    train_variant={cfg.train_variant!r}, test_variant={cfg.test_variant!r}, aggregator={cfg.aggregator!r},
    rescale={cfg.rescale!r}, metric={cfg.metric!r}, position={cfg.position!r},
    balance_train={cfg.balance_train!r}, system={cfg.system!r},
)
result = run_sweep(cfg, lm=lm, out={str(state.results_dir())!r}, dataset=ds)
print(result.layer_table())
print(result.steerability.query("anti_steerable")[["example_id", "layer", "slope"]])
"""
