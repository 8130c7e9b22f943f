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

In any mode, one model is loaded per process: a session that asks for another
model while a different session is computing on the loaded one is refused with a
message (it would unload the model from under that computation).
"""

from __future__ import annotations

import hmac
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import streamlit as st

from steering.models import REGISTRY, ModelError
from steering.testing import TINY_MODEL

DEMO_ENV = "STEERING_DEMO"
BUNDLED = ""  # the data-directory setting meaning "bundled data only"


def enabled() -> bool:
    return os.environ.get(DEMO_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _split(value: str) -> list[str]:
    return [p.strip() for chunk in value.split(",") for p in chunk.split(os.pathsep) if p.strip()]


def allowed_models() -> list[str]:
    """Registry models the operator allows (the test model only when the operator made it the default)."""
    from ui.state import env_model

    default = env_model()
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
    from ui import state

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


# ---------------------------------------------------------------- one model per process, shared by sessions

_lock = threading.Lock()
_busy: dict[str, int] = {}  # model name -> computations running on it
_loaded: list[str] = []  # the name of the model the process holds (at most one)


def check_switch(name: str) -> None:
    """Refuse to load ``name`` while another session is computing on the different model that is loaded."""
    with _lock:
        current = _loaded[0] if _loaded else None
        if current is not None and current != name and _busy.get(current, 0) > 0:
            raise ModelError(f"another session is computing with {current}; loading {name} now would unload it. "
                             "Try again when it has finished.")


def loaded(name: str) -> None:
    with _lock:
        _loaded[:] = [name]


@contextmanager
def busy(name: str) -> Iterator[None]:
    """Mark ``name`` as in use for the duration of a computation (model switches wait for it)."""
    with _lock:
        _busy[name] = _busy.get(name, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _busy[name] -= 1
            if not _busy[name]:
                del _busy[name]
