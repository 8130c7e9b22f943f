"""Start the dashboard with the default model already loading: ``python -m ui.launch [streamlit options]``.

`streamlit run app.py` runs nothing until the first visitor opens a page, so the first visit would wait
for torch, transformers and the weights. This starts that load in a background thread of the server
process first (the pages find it in ``ui.resources``), then hands over to Streamlit's own command line.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def main(argv: list[str]) -> None:
    from streamlit.web import cli

    from ui import resources, session

    try:
        resources.preload(session.env_model())
    except Exception as e:  # noqa: BLE001 - a model the server may not load is reported to the visitor who asks
        logging.getLogger(__name__).warning("not preloading the model: %s", e)
    sys.argv = ["streamlit", "run", APP, *argv]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])
