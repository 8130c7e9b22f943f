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

Every text a visitor types or sends that names data, a model, a study or a file goes through one
of the policy functions below (``resolve_dataset_names``, ``check_dataset_key``, ``load_offered``,
``check_study_name``, ``check_stored_study``, ``check_model``, ``check_choice``, ...): in demo mode
they accept only names from the allowed lists, never a path, and refuse anything else with one fixed
line that lists what is offered: the same line whether or not a path exists, never quoting the text
sent nor a server file's content. Outside demo mode they pass paths through as before. The bounds
on the work one visitor can start are in ``ui.limits``; the queue of long computations in
``ui.compute``.

One model per process and the busy flag that guards it are in ``ui.resources``.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Sequence

import streamlit as st

from steering.analyses.study.spec import _NAME as STUDY_NAME  # the backend's own rule for study names
from steering.analyses.study.spec import PRESETS, check_layer_rule, paper_datasets
from steering.core.config import check_multipliers
from steering.core.config import parse_multipliers as core_parse_multipliers
from steering.core.datasets import Dataset, list_datasets, load_dataset
from steering.core.registry import REGISTRY, TINY_MODEL
from steering.errors import DatasetError, ModelError, SweepError
from ui import limits, session

DEMO_ENV = "STEERING_DEMO"
BUNDLED = ""  # the data-directory setting meaning "bundled data only"
UPLOAD_PREFIX = "upload:"  # a concept key naming this session's upload (parsed in memory), not a file
SHOWN_NAMES = 12  # a refusal lists this many offered names, then a count


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
    """Reset any setting outside what the operator allows (runs before the sidebar draws): a URL or a
    forged widget value can set a session value, never make it used."""
    if not enabled():
        return
    state = session
    if state.get("model") not in allowed_models():
        state.put("model", allowed_models()[0])
    if state.get("data_dir") not in allowed_data_dirs():
        state.put("data_dir", BUNDLED)
    for key in ("w_custom_model", "raw_data_dir", "err_data_dir"):
        st.session_state.pop(key, None)
    bound = limits.Limits.from_env()
    for name in ("n_train", "n_test"):
        value = state.get(name)
        if value is not None and not (isinstance(value, int) and 1 <= value <= bound.items):
            state.put(name, None)  # the sidebar sizes it to the concept again
    if len(state.get("multipliers")) > bound.multipliers:
        state.put("multipliers", list(session.defaults()["multipliers"]))


def check_model(name: str) -> None:
    if enabled() and name not in allowed_models():
        raise ModelError(f"this model is not offered on this server: choose one of {', '.join(allowed_models())}")


# ---------------------------------------------------------------- names of data, studies, choices


def _data_dir(data_dir: str | None) -> str | None:
    """The data directory a demo lookup may search: an allowed one, else the bundled data only."""
    return data_dir if data_dir and data_dir in allowed_data_dirs() else None


def offered_datasets(data_dir: str | None) -> dict[str, str]:
    """Demo mode: concept name -> file, from the (allowed) data directory and the bundled data; a name in
    both is the data directory's file, as ``load_dataset`` would pick it."""
    infos = list_datasets(_data_dir(data_dir))
    offered: dict[str, str] = {}
    for info in sorted(infos, key=lambda i: i.group == "bundled"):
        offered.setdefault(info.name, info.path)
    return offered


def _not_offered(what: str, names: Sequence[str], extra: str = "") -> str:
    shown = ", ".join(list(names)[:SHOWN_NAMES]) or "(none)"
    more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
    return f"{what} not offered on this server: use names from the list ({shown}{more}){extra}"


def resolve_dataset_names(text: str | list[str], data_dir: str | None) -> str | list[str]:
    """The study form's concepts. Demo mode: comma-separated names of offered concepts or presets
    (bundled; paper-figure1 and paper: those of the paper's concepts that are offered), returned as
    the files they name; anything else is refused with one fixed line. Otherwise: unchanged."""
    if not enabled():
        return text
    offered = offered_datasets(data_dir)
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    names: list[str] = []
    for part in parts:
        if part == "bundled":
            bundled = {i.name for i in list_datasets(None) if i.group == "bundled"}
            names += [n for n in offered if n in bundled]
        elif part in ("paper-figure1", "paper"):
            names += [n for n in paper_datasets(figure1_only=part == "paper-figure1") if n in offered]
        elif part in offered:
            names.append(part)
        else:
            names = []
            break
    if not names:
        raise DatasetError(_not_offered("a concept you gave is", sorted(offered),
                                        f", or a preset ({', '.join(PRESETS)})"))
    paths = [offered[n] for n in dict.fromkeys(names)]
    for path in paths:
        load_offered(path, data_dir)  # read here, so a server file's parse error is never quoted later
    return paths


def check_dataset_key(key: str, data_dir: str | None) -> None:
    """The sidebar's concept: an upload of this session, or (demo mode) a file the concept list offers."""
    if not enabled() or key.startswith(UPLOAD_PREFIX):
        return
    if key not in {i.path for i in list_datasets(_data_dir(data_dir))}:
        raise DatasetError(_not_offered("this concept is", sorted(offered_datasets(data_dir))))


def load_offered(key: str, data_dir: str | None) -> Dataset:
    """Load a concept file the sidebar or a form chose. Demo mode: only an offered file, and a parse error
    is one line naming the concept, not the file's content (the operator sees it with the CLI)."""
    check_dataset_key(key, data_dir)
    if not enabled():
        return load_dataset(key)
    try:
        return load_dataset(key)
    except DatasetError:
        name = next((n for n, p in offered_datasets(data_dir).items() if p == key), "this concept")
        raise DatasetError(f"the concept {name} could not be read on this server; choose another") from None


def check_dataset_keys(keys: Sequence[str], data_dir: str | None) -> None:
    """Concepts picked from the list (entanglement): each offered, and (demo mode) not too many."""
    for key in keys:
        check_dataset_key(key, data_dir)
    check_concepts(len(keys))


def check_study_name(text: str) -> str:
    """A new study's name. Demo mode: a plain name (never a path), refused with one fixed line."""
    name = str(text).strip()
    if enabled() and not STUDY_NAME.match(name):
        raise SweepError("a study name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or "
                         "digit")
    return name


def check_stored_study(name: str, stored: Sequence[str]) -> str:
    """A study to open: one of the stored studies (demo mode)."""
    if enabled() and name not in stored:
        raise SweepError(_not_offered("this study is", list(stored)))
    return name


def check_choice(value, options: Sequence, what: str):
    """A value a selectbox sent: one of its options (demo mode; a forged value is refused, not echoed)."""
    if enabled() and value not in options:
        raise SweepError(_not_offered(f"this {what} is", [str(o) for o in options]))
    return value


def check_layer_text(text: str) -> str:
    """The study form's layer rule. Demo mode: one rule (index, relative depth or best), fixed message."""
    if not enabled():
        return text
    try:
        if "=" in text:
            raise SweepError("")
        return check_layer_rule(text)
    except SweepError:
        raise SweepError("layer rule: give an index (12), a relative depth between 0 and 1 (0.4) or best") from None


def parse_multipliers(text: str) -> list[float]:
    """The multiplier grid a visitor typed, sorted without repeats; demo mode: a fixed message for text
    that is not numbers, and at most ``STEERING_DEMO_MAX_MULTIPLIERS`` values."""
    if not enabled():
        return sorted(set(core_parse_multipliers(text)))
    try:
        values = sorted({float(x) for x in str(text).split(",") if x.strip()})
    except ValueError:
        raise SweepError("cannot read the multipliers: give comma-separated numbers, e.g. -1, 0, 1") from None
    check_multipliers(values)
    limits.Limits.from_env().check_sweep(1, 1, 1, len(values))
    return values


# ---------------------------------------------------------------- bounded work (ui.limits), demo mode only


def check_sweep(cfg, n_layers: int | None = None) -> None:
    """A sweep about to run (layers, items, multipliers); ``n_layers`` overrides ``len(cfg.layers)``."""
    if enabled():
        n = n_layers if n_layers is not None else len(cfg.layers)
        limits.Limits.from_env().check_sweep(n, cfg.n_train, cfg.n_test, len(cfg.multipliers))


def check_study(spec, executor: str) -> None:
    if enabled():
        cells = len(spec.models) * len(spec.datasets) * len(spec.variants)
        limits.Limits.from_env().check_study(cells, spec.n_train, spec.n_test, len(spec.multipliers), executor)


def check_concepts(n: int) -> None:
    if enabled():
        limits.Limits.from_env().check_concepts(n)


def executors(available: list[str]) -> list[str]:
    """The executors the study form offers: Ray in demo mode only when the operator allows it."""
    if enabled() and not limits.Limits.from_env().ray:
        return [e for e in available if e == "local"]
    return available


def item_cap() -> int | None:
    """The most training (or test) items one visitor may ask for (None outside demo mode)."""
    return limits.Limits.from_env().items if enabled() else None


def job_slots() -> int | None:
    """Long computations that may run at once (None: no queue, outside demo mode)."""
    return limits.Limits.from_env().jobs if enabled() else None


def quiet(e: Exception) -> Exception:
    """Demo mode: an error from reading a server's data file (a DatasetError, or one caused by it) becomes
    one line that quotes none of it. For computations whose visitor-chosen concepts were already read."""
    cause: BaseException | None = e
    while enabled() and cause is not None:
        if isinstance(cause, DatasetError):
            return DatasetError("a data file on this server could not be read; choose another concept or setting")
        cause = cause.__cause__
    return e


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
