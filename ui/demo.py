"""Serving policy: the shared-demo mode, the optional password, and model switches between sessions.

``make run`` serves on localhost only, with every setting open. Serving to a network
(``make serve``, or ``STEERING_DEMO=1``) turns on the shared-demo mode:

- no free-text data directory: only the bundled data and the directories the
  operator lists in ``STEERING_ALLOWED_DATA_DIRS`` (separated by ``:`` or ``,``);
- no arbitrary model path or Hugging Face id: only registry models the operator
  lists in ``STEERING_ALLOWED_MODELS`` (default: the server's default model);
- uploads stay allowed (parsed in memory, size-limited);
- an optional password, ``password = "..."`` in ``.streamlit/secrets.toml``.

The settings are enforced on every run from session state, so neither a URL nor
a forged session value can reach a directory or a model the operator did not list.

One model per process and the busy flag that guards it are in ``ui.resources``.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import streamlit as st

from steering.core.registry import REGISTRY
from steering.engine.tiny import TINY_MODEL
from steering.errors import ModelError
from ui import session

DEMO_ENV = "STEERING_DEMO"
BUNDLED = ""  # the data-directory setting meaning "bundled data only"


def enabled() -> bool:
    return os.environ.get(DEMO_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _split(value: str) -> list[str]:
    return [p.strip() for chunk in value.split(",") for p in chunk.split(os.pathsep) if p.strip()]


def allowed_models() -> list[str]:
    """Registry models the operator allows (the test model only when the operator made it the default)."""
    default = session.env_model()
    known = set(REGISTRY) | ({TINY_MODEL} if default == TINY_MODEL else set())
    names = [n for n in _split(os.environ.get("STEERING_ALLOWED_MODELS", "")) if n in known]
    if not names:
        names = [default if default in known else next(iter(REGISTRY))]
    return list(dict.fromkeys(names))


def allowed_data_dirs() -> list[str]:
    """"" (bundled data only) and the existing directories the operator lists, as absolute paths."""
    dirs = [str(Path(d).expanduser().resolve()) for d in _split(os.environ.get("STEERING_ALLOWED_DATA_DIRS", ""))]
    return [BUNDLED] + [d for d in dict.fromkeys(dirs) if Path(d).is_dir()]


def enforce() -> None:
    """Reset any setting outside what the operator allows (runs before the sidebar draws)."""
    if not enabled():
        return
    state = session
    if state.get("model") not in allowed_models():
        state.put("model", allowed_models()[0])
    if state.get("data_dir") not in allowed_data_dirs():
        state.put("data_dir", BUNDLED)
    for key in ("w_custom_model", "raw_data_dir", "err_data_dir"):
        st.session_state.pop(key, None)


def check_model(name: str) -> None:
    if enabled() and name not in allowed_models():
        raise ModelError(f"model '{name}' is not offered on this server: choose one of {', '.join(allowed_models())}")


def _password() -> str | None:
    try:
        value = st.secrets.get("password")
    except Exception:  # noqa: BLE001 - no secrets file: no password
        return None
    return str(value) if value else None


def gate() -> bool:
    """True when the page may be shown: no password is set, or this session entered it."""
    expected = _password()
    if expected is None or st.session_state.get("s_authenticated"):
        return True
    st.title("Steering-vector reliability")
    with st.form("login"):
        given = st.text_input("Password", type="password", key="w_password")
        submitted = st.form_submit_button("Enter")
    if submitted:
        if hmac.compare_digest(given.encode(), expected.encode()):
            st.session_state["s_authenticated"] = True
            st.session_state.pop("w_password", None)
            st.rerun()
        st.error("Wrong password.")
    return False
