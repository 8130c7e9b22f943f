"""The multiplier ladder (Live steering and Inspect): one prompt at several multipliers, generated as one
batch and streamed into columns side by side, each with its perplexity under the unsteered model and its
edit distance from the unsteered text; and *Find a demo setting*, which sets the Live sliders."""

from __future__ import annotations

from typing import Any

import streamlit as st

from steering.core.config import SweepConfig
from steering.run.demo_search import concept_vectors, find_demo_setting
from steering.run.ladder import Row, ladder_stream, parse_ladder
from steering.run.sweep import train_key
from ui import compute, runs, state

SLIDER_LIMIT = 10.0  # the Live multiplier slider's range: a found setting must be one the slider can show
VECTORS = state.SessionMemo("concept_vectors", 2)  # every layer's vectors, kept after a search
LABELS = {"generate": "Generating the ladder (tokens)", "train": "Training vectors (every layer, one pass per "
          "training prompt)", "probe": "Probing layers × multipliers (first tokens)",
          "final": "Generating the best settings in full"}


def _vectors_key(cfg: SweepConfig, ctx: state.Context) -> str:
    return train_key(cfg, ctx.dataset, ctx.lm.name)


def vector(ctx: state.Context, layer: int) -> Any | None:
    """The sidebar concept's vector at ``layer``: from a stored run holding it, else from a search's
    every-layer vectors (trained with the same settings, so the same vector)."""
    run = runs.with_layer(ctx, layer)
    if run is not None:
        return run.vectors[layer]
    found = VECTORS.get(_vectors_key(ctx.config(None), ctx))
    return found.get(layer) if found is not None else None


def _caption(row: Row, bound: float) -> str:
    ppl = f"perplexity {row.perplexity:.3g}" if row.perplexity is not None else "perplexity n/a"
    ratio = f" ({row.ppl_ratio:.2f}× unsteered)" if row.ppl_ratio is not None else ""
    flag = f" · **incoherent** (above {bound:g}×)" if row.incoherent else ""
    return f"{ppl}{ratio} · edit distance {row.edit_distance} tokens{flag}"


def _header(m: float, layer: int, row: Row | None = None) -> str:
    name = "unsteered" if m == 0 else f"×{m:g}"
    return f"**:red[{name} · incoherent]**" if row is not None and row.incoherent else f"**{name}**"


def _draw(memo: dict) -> None:
    """A finished ladder: one column per multiplier."""
    cols = st.columns(len(memo["rows"]))
    for col, row in zip(cols, memo["rows"]):
        col.markdown(_header(row.multiplier, memo["layer"], row))
        col.code(row.text or "(no tokens before end of text)", language=None, wrap_lines=True)
        col.caption(_caption(row, memo["bound"]))


def _generate(ctx: state.Context, prompt: str, layer: int, vec: Any, memo_key: str, decoding: dict) -> None:
    """Stream the ladder into columns, then score it; kept in session state for this prompt and layer."""
    multipliers, bound = state.get("ladder_multipliers"), float(state.get("ladder_bound"))
    cols = st.columns(len(parse_ladder(multipliers)))
    heads = [c.empty() for c in cols]
    slots = [c.empty() for c in cols]
    last = {}

    def stream(progress) -> None:
        for update in ladder_stream(ctx.lm, prompt, layer, vec, multipliers, bound=bound, mode=ctx.settings.position,
                                    **decoding):
            for m, head, slot, text in zip(update.multipliers, heads, slots, update.texts):
                head.markdown(_header(m, layer))
                slot.code(text or " ", language=None, wrap_lines=True)
            progress("generate", update.step, update.total)
            last["rows"] = update.rows

    compute.run(stream, model=ctx.lm.name, labels=LABELS)
    for head, slot in zip(heads, slots):
        head.empty()
        slot.empty()
    memo = {"prompt": prompt, "layer": layer, "rows": last["rows"], "bound": bound}
    st.session_state[memo_key] = memo
    _draw(memo)


def _find(ctx: state.Context, prompt: str, decoding: dict) -> None:
    """Search every layer x the ladder's multipliers (within the slider's range); set the Live sliders to
    the result and ask for the ladder at its layer on the next run."""
    ms = [m for m in parse_ladder(state.get("ladder_multipliers")) if abs(m) <= SLIDER_LIMIT]
    cfg = ctx.config(None)

    def search(progress):
        vectors = concept_vectors(ctx.lm, ctx.dataset, cfg, state.results_dir(), progress)
        VECTORS.put(_vectors_key(cfg, ctx), vectors)
        return find_demo_setting(ctx.lm, prompt, vectors, multipliers=ms, bound=float(state.get("ladder_bound")),
                                 mode=ctx.settings.position, progress=progress, **decoding)

    found = compute.run(search, model=ctx.lm.name, labels=LABELS)
    st.session_state["s_live_search"] = {"prompt": prompt, "reason": found.reason, "final": found.final,
                                         "found": found.setting is not None}
    if found.setting is not None:
        state.put("live_layer", found.setting.layer)
        state.put("live_multiplier", found.setting.multiplier)
        st.session_state["s_ladder_auto"] = True  # the ladder at the new layer, drawn on the rerun
    st.rerun()


def _search_result(prompt: str) -> None:
    found = st.session_state.get("s_live_search")
    if not found or found["prompt"] != prompt:
        return
    (st.success if found["found"] else st.warning)(f"Demo setting: {found['reason']}")
    with st.expander("The settings compared at full length"):
        st.dataframe(found["final"], hide_index=True, key="ladder_search_table")


def section(ctx: state.Context, prompt: str, layer: int, vec: Any, where: str, decoding: dict,
            find: bool = False) -> None:
    """The ladder for ``prompt`` on ``layer``; ``where`` names the page (button keys, the kept ladder);
    ``find`` adds the search button (the Live page, whose sliders it sets)."""
    st.markdown("#### Multiplier ladder")
    c = st.columns([3, 2, 1.2, 1.6] if find else [3, 2, 1.2])
    state.bound(c[0].text_input, "Ladder multipliers (0 is always added)", "ladder_multipliers",
                fmt=state.format_multipliers, parse=parse_ladder)
    state.bound(c[1].number_input, "Incoherent above (× the unsteered perplexity)", "ladder_bound",
                min_value=1.0, max_value=1e6, step=1.0)
    if state.error_of("ladder_multipliers"):
        st.error(state.error_of("ladder_multipliers"))
    memo_key = f"s_{where}_ladder"
    generate = c[2].button("Generate ladder", key=f"{where}_ladder")
    if find and c[3].button("Find a demo setting", key=f"{where}_find",
                            help="Search every layer × these multipliers (a few tokens each, then the best "
                                 "few in full) for the largest change that stays under the perplexity bound, "
                                 "and set the sliders to it."):
        _find(ctx, prompt, decoding)
    if find:
        _search_result(prompt)
    if generate or st.session_state.pop("s_ladder_auto", False):
        _generate(ctx, prompt, layer, vec, memo_key, decoding)
        return
    last = st.session_state.get(memo_key)
    if last and last["prompt"] == prompt and last["layer"] == layer:
        _draw(last)
