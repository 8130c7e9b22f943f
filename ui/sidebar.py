"""The sidebar every page shares: model, data, concept, layer, vector and split settings.

Returns a ``state.Context`` once the model and dataset are ready; a setting
that cannot be used (a model that does not load, a missing data directory)
is reported in the sidebar and the page shows what it can.
"""

from __future__ import annotations

from typing import Callable

import streamlit as st

from steering.core.config import CHOICES
from steering.core.datasets import MAX_UPLOAD_BYTES
from steering.core.names import METRIC_UNITS, POSITION_HELP
from steering.core.registry import REGISTRY, default_layer, list_models
from steering.core.usable import usable
from steering.errors import DatasetError
from ui import demo, failures, state, unreadable, upload

VARIANT_HELP = ("BASE: the plain prompt. SYS_POS / SYS_NEG: a persona sentence ('You are X.' / 'You are not X.') "
                "as the system prompt. USER_POS / USER_NEG: the sentence prepended to the user turn.")


def _model_options() -> list[str]:
    if demo.enabled():
        return demo.allowed_models()
    names = [m["name"] for m in list_models() if m["installed"]]
    for extra in (state.env_model(), state.get("model")):
        if extra not in names:
            names.append(extra)
    return names


def _set_custom_model() -> None:
    name = st.session_state.get("w_custom_model", "").strip()
    if name and not demo.enabled():
        state.put("model", name)


def _model_section() -> bool:
    """The model selector; False (and why) when the chosen model may not be loaded."""
    sb = st.sidebar
    state.bound(sb.selectbox, "Model", "model", options=_model_options(),
                format_func=lambda n: f"{n} — {REGISTRY[n].description}" if n in REGISTRY else n)
    try:
        state.check_request(state.get("model"))
        return True
    except Exception as e:  # noqa: BLE001 - bad input is its message, a bug one line naming its log
        failures.show(e, state.results_dir(), "loading the model", sb, prefix="Model: ")
        return False


def _await_model(name: str, where, loading: Callable[[], None] | None) -> state.LoadedModel | None:
    """The model, its load started now unless loaded or loading, with ``loading`` drawn in the page while it
    is not ready; a model that may not or does not load is shown in ``where``."""
    try:
        if state.ready(name):
            return state.model(name)
        slot = st.empty()
        with slot.container():
            (loading or (lambda: st.info(f"Loading {name} (once per server)…")))()
        lm = state.model(name)
        slot.empty()
        return lm
    except Exception as e:  # noqa: BLE001 - bad input is its message, a bug one line naming its log
        failures.show(e, state.results_dir(), "loading the model", where, prefix="Model: ")
        return None


def _layer_slider(where, name: str, n_layers: int) -> None:
    layer = state.get("layer")
    if layer is None or not 0 <= layer < n_layers:
        state.put("layer", default_layer(name, n_layers))
    state.bound(where.slider, "Layer", "layer", min_value=0, max_value=n_layers - 1, step=1,
                help="Decoder block whose output is read (training) and steered.")


def _dataset_section() -> state.Dataset | None:
    sb = st.sidebar
    if demo.enabled():  # shared demo: only the directories the operator lists
        state.bound(sb.selectbox, "Data directory", "data_dir", options=demo.allowed_data_dirs(),
                    format_func=lambda d: d or "bundled data only")
    else:
        state.bound(sb.text_input, "Data directory", "data_dir", fmt=lambda v: v or "",
                    parse=lambda v: v.strip(), placeholder="bundled data only",
                    help="A folder searched recursively for .jsonl / .json / .csv datasets (e.g. ../shared/datasets).")
    try:
        choices = state.dataset_choices(state.get("data_dir"))
    except DatasetError as e:
        sb.error(str(e))
        choices = state.dataset_choices("")
    keys = [c.key for c in choices]
    if state.get("dataset") not in keys:
        state.put("dataset", state.default_dataset_key(choices))
    labels = {c.key: c.label for c in choices}
    state.bound(sb.selectbox, "Concept (A/B dataset)", "dataset", options=keys, format_func=labels.get)
    unreadable.show(state.get("data_dir"))
    sb.file_uploader(f"Upload a dataset (≤ {MAX_UPLOAD_BYTES // 2**20} MB)", type=["jsonl", "json", "csv"],
                     key="w_upload", on_change=upload.on_upload,
                     help="JSONL/JSON/CSV with 'question' and 'answer_matching_behavior' ('(A)'/'(B)' or Yes/No).")
    if state.get("upload_error"):
        sb.error(f"Upload rejected: {state.get('upload_error')}")
    try:
        return state.resolve_dataset(state.get("dataset"))
    except DatasetError as e:
        sb.error(str(e))
        return None


def _split_section(ds: state.Dataset) -> bool:
    """Train/test sizes, kept within what the dataset allows; False when it is too small to split."""
    pool = usable(ds, state.get("metric"))
    ds = pool.dataset  # the split draws from the items the metric can use: bound the sizes by those
    if len(ds) < 2:
        st.sidebar.error(f"{ds.name} has {len(ds)} usable item(s): a train/test split needs at least 2"
                         + (f" ({len(pool.skipped)} unusable: {pool.why()})." if pool.skipped else "."))
        return False
    max_train, max_test = (min(n, demo.item_cap() or n) for n in state.split_limits(ds))
    n_train, n_test = state.get("n_train"), state.get("n_test")
    changed = st.session_state.get("s_split_for") not in (None, state.get("dataset"))
    st.session_state["s_split_for"] = state.get("dataset")
    if changed or n_train is None or n_test is None or n_train > max_train or n_test > max_test:
        n_train, n_test = state.default_split(ds)  # a new concept starts from its own default sizes
    if ds.fixed_split is None and n_train + n_test > len(ds):
        n_test = max(1, len(ds) - n_train)
    state.put("n_train", n_train)
    state.put("n_test", n_test)
    if ds.fixed_split is None:
        max_test = min(max(1, len(ds) - n_train), demo.item_cap() or len(ds))
    c1, c2 = st.sidebar.columns(2)
    state.bound(c1.number_input, "Train items", "n_train", min_value=1, max_value=max_train, step=1)
    state.bound(c2.number_input, "Test items", "n_test", min_value=1, max_value=max_test, step=1,
                help="Disjoint from the training items.")
    return True


def _advanced_section() -> None:
    with st.sidebar.expander("Advanced settings"):
        state.bound(st.text_input, "Multipliers (grid for the slope fit)", "multipliers",
                    fmt=state.format_multipliers, parse=demo.parse_multipliers,
                    help="Comma-separated, e.g. -1.5, -1, -0.5, 0, 0.5, 1, 1.5 (the paper's grid).")
        if state.error_of("multipliers"):
            st.error(state.error_of("multipliers"))
        state.bound(st.selectbox, "Propensity metric", "metric", options=list(CHOICES["metric"]),
                    format_func=METRIC_UNITS.get)
        state.bound(st.selectbox, "Steered positions", "position", options=list(CHOICES["position"]),
                    format_func=lambda m: f"{m}: {POSITION_HELP[m]}")
        state.bound(st.number_input, "Split seed", "seed", min_value=0, step=1)
        state.bound(st.checkbox, "Rescale PCA / logistic vectors to the mean difference's norm", "rescale")
        state.bound(st.checkbox, "Balance training pairs by answer letter", "balance_train",
                    help="As many positive-is-A as positive-is-B training pairs, so the A-minus-B letter "
                         "direction cancels out of the vector.")
        if not demo.enabled():
            st.text_input("Other model (HF id, local folder or .gguf)", key="w_custom_model",
                          on_change=_set_custom_model, placeholder="e.g. /models/my-model.gguf")


def render(loading: Callable[[], None] | None = None) -> state.Context | None:
    """Draw the shared sidebar; None when no model or dataset can be used (the reason is shown).

    Everything but the model's own settings is drawn while the model loads in the background; then
    this waits for it, with ``loading()`` drawn in the page meanwhile."""
    state.init_state()
    demo.enforce()
    sb = st.sidebar
    sb.header("Settings")
    allowed = _model_section()
    model_errors = sb.container()
    ds = _dataset_section()
    if not allowed or ds is None:
        _advanced_section()
        return None
    name = state.get("model")
    layer_box = sb.container()
    # A registry model's layer count is known before it loads: the slider need not wait for torch.
    drawn = REGISTRY[name].n_layers if name in REGISTRY and not state.ready(name) else 0
    if drawn:
        _layer_slider(layer_box, name, drawn)
    state.bound(sb.selectbox, "Aggregator", "aggregator", options=list(CHOICES["aggregator"]),
                help="mean: CAA mean difference; pca / logistic: directions rescaled to the mean's norm.")
    c1, c2 = sb.columns(2)
    state.bound(c1.selectbox, "Train variant", "train_variant", options=list(CHOICES["variant"]), help=VARIANT_HELP)
    state.bound(c2.selectbox, "Test variant", "test_variant", options=list(CHOICES["variant"]), help=VARIANT_HELP)
    split_ok = _split_section(ds)
    _advanced_section()
    state.painted.set()  # the settings are drawn: the launcher's preload may take the CPU now
    lm = _await_model(name, model_errors, loading)
    if lm is None:
        return None
    if not drawn:
        _layer_slider(layer_box, lm.name, lm.n_layers)
    elif drawn != lm.n_layers:  # the registry disagreed with the model: draw the slider for the real count
        state.put("layer", default_layer(lm.name, lm.n_layers))
        st.rerun()
    if not split_ok:
        return None
    return state.Context(lm=lm, dataset=ds, settings=state.Settings.from_state())
