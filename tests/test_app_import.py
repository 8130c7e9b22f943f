"""The Export page's GGUF download and its import section: an exported vector re-imports to the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_app import app_env  # noqa: F401 - the shared autouse fixture (tiny model, temporary store)

ROOT = Path(__file__).resolve().parents[1]


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_exported_gguf_reimports_on_the_export_page(app_env: Path, tmp_path: Path) -> None:
    from steering.interop.controlvec import export_gguf

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["s_n_train"], at.session_state["s_n_test"] = 16, 12
    at.run()
    at.button(key="compute_layer").click().run()
    _clean(at)
    (run_dir,) = [p for p in app_env.iterdir() if not p.name.startswith(".")]
    original = pd.read_parquet(run_dir / "steerability.parquet")
    path, layers = export_gguf(run_dir, tmp_path / "cv.gguf")
    at.switch_page("pages/5_Export.py").run()
    _clean(at)
    assert "dl_gguf" in {b.key for b in at.get("download_button")}
    at.file_uploader(key="w_import_vector").set_value(("cv.gguf", path.read_bytes(), "application/octet-stream"))
    at.run()
    at.button(key="b_import_vector").click().run()
    _clean(at)
    table = at.dataframe[-1].value
    assert list(table.layer) == layers
    assert table.mean_slope.iloc[0] == pytest.approx(original.slope.mean(), abs=0, rel=1e-12)
    imported = [p for p in app_env.iterdir() if not p.name.startswith(".") and p != run_dir]
    assert len(imported) == 1  # stored beside, not instead of, the trained run
    slopes = pd.read_parquet(imported[0] / "steerability.parquet").slope.to_numpy()
    assert np.array_equal(slopes, original.slope.to_numpy())
