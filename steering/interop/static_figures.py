"""Static figures (PNG, SVG) through kaleido, driven by the system's Chromium; and the run's figure set.

kaleido 1.x renders with a Chrome/Chromium it finds through ``choreographer``; it only
downloads one when asked (``kaleido_get_chrome``), which this module never does. The browser
is ``$BROWSER_PATH`` when set, else the first of chromium / chromium-browser / google-chrome
on PATH (Debian: ``apt-get install chromium``, ``/usr/bin/chromium``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Iterator

from steering.core.files import publish, refuse_existing
from steering.errors import StoreError, UnavailableError, ValidationError
from steering.run import figures

__all__ = ["STATIC_FORMATS", "browser_path", "unavailable_reason", "to_image", "run_figures", "write_figures"]

STATIC_FORMATS = ("png", "svg")
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_LOCK = threading.Lock()  # one kaleido render at a time per process (the dashboard has several sessions)


def browser_path() -> str | None:
    """The Chromium kaleido will use, or None."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if Path(env).is_file() else None
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def unavailable_reason() -> str | None:
    """None when PNG/SVG export works here, else one line saying what is missing."""
    if importlib.util.find_spec("kaleido") is None:
        return "PNG/SVG export needs the `kaleido` package (pip install -r requirements.txt)"
    if browser_path() is None:
        return ("PNG/SVG export needs Chromium (Debian: apt-get install chromium, or set BROWSER_PATH); "
                "no browser is downloaded")
    return None


def _use_system_browser() -> None:
    reason = unavailable_reason()
    if reason:
        raise UnavailableError(reason)
    os.environ.setdefault("BROWSER_PATH", browser_path() or "")


@contextlib.contextmanager
def _server() -> Iterator[None]:
    """One browser for a batch of figures (the first render starts it: ~2 s; later ones take ~0.2 s)."""
    import kaleido

    _use_system_browser()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kaleido.start_sync_server(silence_warnings=True)
        try:
            yield
        finally:
            kaleido.stop_sync_server(silence_warnings=True)


def to_image(fig, fmt: str = "png", width: int = 900, height: int = 500, scale: float = 2.0) -> bytes:
    """One figure as PNG or SVG bytes."""
    if fmt not in STATIC_FORMATS:
        raise ValidationError(f"unknown image format '{fmt}': choose one of {', '.join(STATIC_FORMATS)}")
    with _LOCK, _server(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fig.to_image(format=fmt, width=width, height=height, scale=scale if fmt == "png" else 1)


def to_images(figs: dict, fmt: str = "png", width: int = 900, height: int = 500, scale: float = 2.0) -> dict:
    """Several figures with one browser: {title: bytes}."""
    if fmt not in STATIC_FORMATS:
        raise ValidationError(f"unknown image format '{fmt}': choose one of {', '.join(STATIC_FORMATS)}")
    out = {}
    with _LOCK, _server(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for title, fig in figs.items():
            out[title] = fig.to_image(format=fmt, width=width, height=height, scale=scale if fmt == "png" else 1)
    return out


def run_figures(result, layer: int, metric: str) -> dict:
    """The figures of a run at one layer (and, for several layers, the layer views): {title: figure}."""
    steer = result.steerability[result.steerability.layer == layer]
    props = result.propensities[result.propensities.layer == layer]
    figs = {
        f"Per-example steerability, layer {layer}": figures.slope_histogram(steer.slope, metric),
        f"Propensity vs multiplier, layer {layer}":
            figures.propensity_curves(props, steer[steer.anti_steerable].example_id, metric),
        f"Steerability by spurious factor, layer {layer}": figures.slopes_by_factor(steer, metric),
    }
    if len(result.layers) > 1:
        figs["Layer x multiplier"] = figures.layer_heatmap(result.propensities, metric, layer)
        figs["Steerability by layer"] = figures.layer_summary(result.layer_table(), metric, layer)
    return figs


def slug(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-").replace("--", "-")


def write_figures(result, layer: int, fmt: str, dest: str | Path, force: bool = False) -> list[Path]:
    """Write every figure of the run: html -> one file ``dest``; png/svg -> one file per figure in folder ``dest``.

    A file that exists is refused (``StoreError``, before anything is written) unless ``force``."""
    metric = result.config.metric
    figs = run_figures(result, layer, metric)
    dest = Path(dest)
    if fmt == "html":
        cfg = result.config
        title = f"Steerability of {cfg.dataset} on {cfg.model} (run {result.manifest.get('key', '')})"
        refuse_existing([dest], force)
        html = figures.figures_html(figs, title)
        return [publish(dest, lambda tmp: tmp.write_text(html, encoding="utf-8"), force)]
    if dest.exists() and not dest.is_dir():
        raise StoreError(f"{dest} is a file: --to names a folder for {fmt} figures")
    paths = [dest / f"{i}-{slug(title)}.{fmt}" for i, title in enumerate(figs)]
    refuse_existing(paths, force)
    images = to_images(figs, fmt)
    for path, data in zip(paths, images.values()):
        publish(path, lambda tmp, data=data: tmp.write_bytes(data), force)
    return paths
