"""Streamlit glue for the study pages: which study is shown, starting/resuming one with a progress
bar, and opening a study's cell in the per-concept pages (the sidebar set to the cell's settings)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import streamlit as st

from steering.analyses.study.compute import Study, load_study, run_study, scan_studies
from steering.analyses.study.executors import available_executors, study_measure
from steering.analyses.study.spec import StudySpec
from steering.errors import StoreError
from ui import demo, state
from ui.compute import run

KEYS = {"study": None, "study_model": None, "study_pair": "BASE->BASE", "study_concept": None,
        "study_ood": "SYS_POS", "study_pending": None}
LOADED = state.SessionMemo("studies", 4)


def init() -> None:
    for name, value in KEYS.items():
        st.session_state.setdefault(f"s_{name}", value)


def pair_label(pair) -> str:
    return f"{pair[0]}->{pair[1]}"


def load(name: str) -> Study:
    path = state.results_dir() / "studies" / name / "study.json"
    stamp = path.stat().st_mtime if path.exists() else 0
    return LOADED.get_or_compute((name, stamp), lambda: load_study(state.results_dir(), name))


def default_name() -> str:
    """A study name for the form, new for each session: visitors sharing a server never write one study."""
    key = "s_form_default_name"
    if key not in st.session_state:
        st.session_state[key] = f"study-{time.strftime('%m%d-%H%M')}-{secrets.token_hex(2)}"
    return st.session_state[key]


def pick_study() -> Study | None:
    """The study selector (shared by the study pages); None when no study can be shown. A damaged
    study is one line naming its file; the others stay listed."""
    init()
    found, damaged = scan_studies(state.results_dir())
    for d in damaged:
        st.warning(d["message"])
    names = [s["name"] for s in found]
    if not names:
        return None
    if state.get("study") not in names:
        state.put("study", names[0])
    info = {s["name"]: s for s in found}
    state.bound(st.selectbox, "Study", "study", options=names,
                format_func=lambda n: f"{n} — {', '.join(info[n]['models'])} · {info[n]['n_datasets']} concepts · "
                                      f"{info[n]['n_pairs']} variant pairs")
    try:
        return load(state.get("study"))
    except StoreError as e:  # damaged after it was listed: say which file, keep the page (and its form)
        st.warning(str(e))
        return None


def pick_model(study: Study, label: str = "Model", name: str = "study_model") -> str:
    models = study.spec.models
    if state.get(name) not in models:
        state.put(name, models[0])
    if len(models) > 1:
        state.bound(st.selectbox, label, name, options=models)
    return state.get(name)


def open_cell(study: Study, model: str, dataset: str, pair: tuple[str, str], page: str,
              example: str | None = None) -> None:
    """Point the sidebar at one cell of the study and switch to ``page``: its run is in the store."""
    spec = study.spec
    data_dir = study.meta.get("data_dir_abs") or data_dir_of(spec)
    key = study.dataset_path(dataset) or ""
    infos = state.dataset_infos(data_dir)
    if key not in {i.path for i in infos}:  # the study ran elsewhere: find the concept by name
        key = next((i.path for i in infos if i.name == dataset), key)
    values = {"model": model, "data_dir": data_dir, "dataset": key, "layer": study.layer(model),
              "train_variant": pair[0], "test_variant": pair[1], "n_train": spec.n_train, "n_test": spec.n_test,
              "multipliers": list(spec.multipliers), "seed": spec.seed, "aggregator": spec.aggregator,
              "metric": spec.metric, "balance_train": spec.balance_train, "position": "answer", "rescale": True}
    for name, value in values.items():
        state.put(name, value)
    st.session_state["s_split_for"] = key  # keep the study's split sizes (a new concept would reset them)
    if example is not None:
        state.put("example", example)
        state.put("only_anti", False)
    st.switch_page(page)


def start(spec: StudySpec, executor: str, lm) -> Study:
    """Run or resume ``spec`` with a progress bar; finished cells come from the store."""
    state.put("study_pending", {"spec": spec.to_json(), "executor": executor})
    t0 = time.time()
    models = {lm.name: lm} if lm is not None else None
    try:  # the shared model, when the study uses it, stays loaded until the study has finished
        demo.check_study(spec, executor)  # demo mode: cells, items, multipliers and the executor are bounded
        study = run(lambda progress: run_study(spec, state.results_dir(), progress=progress, executor=executor,
                                               models=models, caches=state.cache_store()),
                    model=lm.name if lm is not None else None, measure=study_measure, start="Starting the study…")
    except Exception:  # a bad spec must not be retried on every visit; leaving the page (a BaseException) resumes
        state.put("study_pending", None)
        raise
    state.put("study_pending", None)
    state.put("study", spec.name)
    st.caption(f"Finished in {time.time() - t0:.0f} s.")
    return study


def pending() -> tuple[StudySpec, str] | None:
    """A study started in this session and not finished (the user left the page): resume it on return."""
    init()
    p = state.get("study_pending")
    return (StudySpec.from_json(p["spec"]), p["executor"]) if p else None


def executors() -> list[str]:
    return demo.executors(available_executors())


def data_dir_of(spec: StudySpec) -> str:
    return str(Path(spec.data_dir).expanduser().absolute()) if spec.data_dir else ""


def mean_ab_share(rows) -> tuple[str, str]:
    """The overview's "mean share explained by A/B" (value, help): over the concepts where it is defined;
    "undefined" with the reasons when it is defined for none (DESIGN.md: undefined is not zero)."""
    defined = rows.share_ab.dropna()
    what = "R² of the per-example slopes on 'positive answer is A'"
    if defined.empty:
        why = "; ".join(f"{r.dataset}: {r.share_why}" for r in rows.itertuples()) or "no concepts"
        return "undefined", f"{what}, undefined for every concept ({why})."
    return f"{defined.mean():.0%}", f"{what}, averaged over the {len(defined)} of {len(rows)} concepts where it is " \
                                    "defined."


def undefined_shares(rows) -> str | None:
    """A caption naming each concept with an undefined share and why; None when every share is defined."""
    notes = [f"{r.dataset}: {r.share_why}" for r in rows.itertuples() if r.share_why]
    return ("Undefined (not zero): " + " · ".join(notes)) if notes else None

