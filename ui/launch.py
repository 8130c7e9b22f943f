"""Start the dashboard with the default model loading in the background: ``python -m ui.launch [options]``.

`streamlit run app.py` runs nothing until the first visitor opens a page, so the first visit would wait
for torch, transformers and the weights. This loads them in a background thread of the server process
(the pages find the model in ``ui.resources``), then hands over to Streamlit's own command line. The
load starts once a first visitor's page has drawn its settings, or a few seconds after the start if
nobody has come: the imports and the first page share one interpreter, and the page should come first.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from pathlib import Path

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAINT_WAIT_S = 3.0  # the preload waits this long for a first visitor's page to draw its settings, at most
# What a computed page imports (plotly, pandas, scipy through them): loaded once the model is, so that a
# visitor arriving later waits for neither.
WARM = ("ui.views", "ui.runs", "ui.diagnostics", "ui.examples", "ui.ladder", "ui.report", "steering.run.figures")


def _preload(name: str) -> None:
    """Load ``name``, then import the computed pages' modules: after a first visitor's page has drawn its
    settings, or PAINT_WAIT_S after the start if nobody has come."""
    from ui import resources

    resources.painted.wait(PAINT_WAIT_S)
    try:
        resources.preload(name).result()
        for module in WARM:
            importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - only a head start: a visitor's page loads and reports it itself
        logging.getLogger(__name__).warning("not preloading %s: %s", name, e)


def main(argv: list[str]) -> None:
    from streamlit.web import cli

    from ui import session

    threading.Thread(target=_preload, args=(session.env_model(),), name="preload", daemon=True).start()
    sys.argv = ["streamlit", "run", APP, *argv]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
