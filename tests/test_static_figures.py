"""PNG/SVG figures through kaleido and the system Chromium; export RUN_DIR --format png|svg|html."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from steering.cli import main as cli
from steering.interop import static_figures


def _check_png(data: bytes) -> tuple[int, int]:
    """Walk the PNG chunks (signature, IHDR first, CRCs, IEND last); return (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    ihdr = data[16:24]
    return struct.unpack(">II", ihdr)


def test_browser_lookup_never_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chromium"))
    assert static_figures.browser_path() is None
    assert "Chromium" in static_figures.unavailable_reason()
    with pytest.raises(RuntimeError, match="no browser is downloaded"):
        static_figures.to_image(object(), "png")


@pytest.fixture(scope="module")
def run(tiny_llama, tmp_path_factory):
    from steering.core.config import SweepConfig
    from steering.run.sweep import run_sweep

    return run_sweep(SweepConfig(dataset="corrigibility-demo", layers=[1, 2], n_train=8, n_test=6),
                     lm=tiny_llama, out=tmp_path_factory.mktemp("results"))


def test_export_png_svg_html(run, tmp_path: Path, capsys) -> None:
    reason = static_figures.unavailable_reason()
    if reason:
        pytest.skip(reason)
    assert cli.main(["export", str(run.run_dir), "--format", "png", "--to", str(tmp_path / "png"),
                     "--layers", "2"]) == 0
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 5  # three per-layer figures and two layer views
    for p in pngs:
        assert _check_png(p.read_bytes()) == (1800, 1000)  # 900 x 500 at scale 2
    assert cli.main(["export", str(run.run_dir), "--format", "svg", "--to", str(tmp_path / "svg")]) == 0
    svgs = sorted((tmp_path / "svg").glob("*.svg"))
    assert len(svgs) == 5 and all(p.read_text().startswith("<svg") for p in svgs)
    assert "layer 1" in " ".join(p.name for p in svgs).replace("-", " ")  # default: the run's first layer
    assert cli.main(["export", str(run.run_dir), "--format", "html", "--to", str(tmp_path / "f.html")]) == 0
    assert "plotly" in (tmp_path / "f.html").read_text().lower()
    assert cli.main(["export", str(run.run_dir), "--format", "png", "--to", str(tmp_path / "x"),
                     "--layers", "3"]) == 2
    assert "layer 3 is not in the run" in capsys.readouterr().err
