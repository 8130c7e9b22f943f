"""Start the dashboard with the default model already loading: ``python -m ui.launch [streamlit options]``.

`streamlit run app.py` runs nothing until the first visitor opens a page, so the first visit would wait
for torch, transformers and the weights. This starts that load in a background thread of the server
process first (the pages find it in ``ui.resources``), then hands over to Streamlit's own command line.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from pathlib import Path

APP = str(Path(__file__).resolve().parents[1] / "app.py")
# What a computed page imports (plotly, pandas, scipy through them): loaded once the model is, so that a
# visitor arriving later waits for neither.
WARM = ("ui.views", "ui.runs", "ui.diagnostics", "ui.examples", "ui.ladder", "ui.report", "steering.run.figures")


def _warm(model) -> None:
    try:
        model.result()
        for name in WARM:
            importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - only a head start: the pages import what they need themselves
        logging.getLogger(__name__).warning("not warming the page modules: %s", e)


def main(argv: list[str]) -> None:
    from streamlit.web import cli

    from ui import resources, session

    try:
        model = resources.preload(session.env_model())
        threading.Thread(target=_warm, args=(model,), name="warm imports", daemon=True).start()
    except Exception as e:  # noqa: BLE001 - a model the server may not load is reported to the visitor who asks
        logging.getLogger(__name__).warning("not preloading the model: %s", e)
    sys.argv = ["streamlit", "run", APP, *argv]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
