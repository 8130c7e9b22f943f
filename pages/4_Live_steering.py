"""Live steering: a prompt, a layer and a multiplier; steered and unsteered text side by side, streamed."""

import streamlit as st

from steering.engine.generate import chat_prompt
from ui import ladder, page, runs, state, views


def prompt_of(ctx: state.Context, result) -> str | None:
    """The formatted prompt: a free text through the chat template, or a stored test item's prompt."""
    source = state.bound(st.radio, "Prompt", "live_source", options=["Free prompt", "Test item"], horizontal=True)
    if source == "Free prompt":
        text = state.bound(st.text_area, "Your prompt (user turn)", "live_text", height=100)
        return chat_prompt(ctx.lm, text) if text.strip() else None
    if result is None:
        st.info("Compute the sweep first (Home or Compute below) to pick a test item.")
        return None
    rows = runs.layer_rows(result, result.layers[0])
    prompts = dict(zip(rows.example_id, rows.prompt))
    if state.get("live_example") not in prompts:
        state.put("live_example", next(iter(prompts)))
    state.bound(st.selectbox, "Test item", "live_example", options=list(prompts))
    return prompts[state.get("live_example")]


def body(ctx: state.Context) -> None:
    result = runs.current(ctx)
    prompt = prompt_of(ctx, result)
    c = st.columns(3)
    if not 0 <= state.get("live_layer") < ctx.lm.n_layers:
        state.put("live_layer", ctx.layer)
    layer = state.bound(c[0].slider, "Layer", "live_layer", min_value=0, max_value=ctx.lm.n_layers - 1, step=1)
    multiplier = state.bound(c[1].slider, "Multiplier", "live_multiplier", min_value=-10.0, max_value=10.0, step=0.5)
    n = state.bound(c[2].slider, "Max new tokens", "live_tokens", min_value=1, max_value=200, step=1)
    with st.expander("Decoding"):
        sample = state.bound(st.checkbox, "Sample (instead of greedy)", "live_sample")
        s = st.columns(2)
        seed = state.bound(s[0].number_input, "Seed", "live_seed", min_value=0, step=1, disabled=not sample)
        temperature = state.bound(s[1].slider, "Temperature", "live_temperature", min_value=0.1, max_value=2.0,
                                  step=0.1, disabled=not sample)
    vector = ladder.vector(ctx, layer)
    if vector is None:
        st.info(f"No vector for layer {layer} yet with the sidebar settings.")
        if st.button(f"Train the vector for layer {layer}", key="live_train"):
            runs.compute(ctx, "layer", layer=layer)
            st.rerun()
    if vector is None or prompt is None:
        views.last_generations("s_live_gen", prompt)
        return
    with st.expander("Formatted prompt the model sees"):
        st.code(prompt, language=None, wrap_lines=True)
    decoding = dict(max_new_tokens=int(n), sample=bool(sample), seed=int(seed), temperature=float(temperature))
    if st.button("Generate", type="primary", key="live_generate"):
        views.generations(ctx.lm, prompt, layer, vector, float(multiplier), "s_live_gen", mode=ctx.settings.position,
                          **decoding)
    else:
        views.last_generations("s_live_gen", prompt)
    ladder.section(ctx, prompt, layer, vector, "live", decoding, find=True)


page.run("Live steering", body)
