"""The Side effects page's run section: the settings form, the recommendation within a KL budget and
the four figures of a run's side effects (computed through ``ui.side``)."""

from __future__ import annotations

import streamlit as st

from steering.analyses.side_effects import figures as side_figures
from steering.analyses.side_effects import tradeoff
from steering.analyses.side_effects.compute import SideEffectsConfig
from steering.run import figures
from ui import demo, side, state, views

FORM_FIELDS = ("text", "n_texts", "text_tokens", "n_mc")  # what the settings form sets
COSTS = {"kl": "KL on neutral text", "ppl_ratio": "perplexity ratio", "mc_drop": "capability drop"}


def neutral_sources() -> dict[str, str]:
    """Neutral-text choices: the bundled set, then the registered public sources (downloaded once, checksummed)."""
    from steering.core.sources import list_sources
    from steering.errors import DatasetError

    try:
        public = {s.name: f"{s.name} (public: {s.license}; downloaded once, checksum verified)"
                  for s in list_sources() if s.group == "neutral"}
    except DatasetError:
        public = {}
    return {"": "The project's encyclopaedic paragraphs (data/neutral)", **public}


def settings_form() -> SideEffectsConfig:
    with st.expander("Side-effect settings"):
        options = neutral_sources()
        text = st.selectbox("Neutral text", list(options), format_func=options.get, key="w_se_text")
        c = st.columns(3)
        n_texts = c[0].slider("Neutral texts", 1, 32, SideEffectsConfig.n_texts, key="w_se_texts")
        tokens = c[1].slider("Tokens per text", 16, 256, SideEffectsConfig.text_tokens, step=16, key="w_se_tokens")
        n_mc = c[2].slider("Multiple-choice items", 10, 200, SideEffectsConfig.n_mc, step=10, key="w_se_mc")
        st.caption("Capability: TruthfulQA mc1 when the data directory has it, else the bundled general-knowledge "
                   "set (data/mc). Steering applies at every position of the neutral text.")
    text = demo.check_choice(text, list(options), "neutral text")  # a source name, never a path
    return SideEffectsConfig(text=text or None, n_texts=n_texts, text_tokens=tokens, n_mc=n_mc)


def recommendation(ctx: state.Context, df) -> dict:
    budget = st.number_input("KL budget (nats per token of neutral text)", min_value=0.0,
                             value=tradeoff.DEFAULT_KL_BUDGET, step=0.05,
                             format="%.3f", key="w_se_budget")
    rec = tradeoff.recommend(df, float(budget))
    if rec["found"]:
        c = st.columns(4)
        c[0].metric("Recommended", f"layer {rec['layer']}, × {rec['multiplier']:g}",
                    help="Largest gain within the KL budget on the validation part of the training split, "
                         "measured with a vector fitted on the rest of the training split.")
        c[1].metric("Gain on test (honest)", f"{rec['test_gain']:.3g}", help="Mean propensity shift vs multiplier 0.")
        c[2].metric("Gain if chosen on test", f"{rec['test_chosen_gain']:.3g}",
                    delta=f"+{rec['overestimate']:.3g} overestimate", delta_color="inverse")
        c[3].metric("KL at the recommendation", f"{rec['kl']:.3g}")
    st.markdown(tradeoff.describe(rec, f" {figures.propensity_unit(ctx.metric)}"))
    return rec


def settings_line(info: dict) -> str:
    """What the stored side effects were measured on, in words."""
    s = info.get("settings", {})
    text = s.get("text") or "the bundled encyclopaedic paragraphs"
    line = (f"Neutral text: {text}, {info.get('n_texts', s.get('n_texts'))} texts, {info.get('n_text_tokens', '?')} "
            f"tokens in all · capability: {s.get('mc_name', '?')}, {info.get('mc_items', s.get('n_mc'))} items")
    if "n_fit" in info:
        line += (f" · validation: {info['n_val']} training items, measured with a vector fitted on the other "
                 f"{info['n_fit']}")
    else:  # stored before the validation items were held out
        line += f" · validation: {info.get('n_val', '?')} training items that also trained the vector"
    return line + f" · computed in {info.get('seconds', '?')} s."


def run_section(ctx: state.Context, result) -> None:
    se = settings_form()
    df = side.stored(result)
    if df is None:
        st.info(f"Side effects of this run ({len(result.layers)} layer(s)) are not computed yet: KL and perplexity on "
                f"{se.n_texts} neutral texts at every layer × multiplier, capability on {se.n_mc} "
                "multiple-choice items, and the behaviour gain on a validation part of the training split (held out "
                "of a vector refitted on the rest).")
        if st.button("Compute side effects", type="primary", key="se_compute"):
            side.compute(ctx, result, se)
            st.rerun()
    else:
        stored = result.manifest.get("side_effects", {}).get("settings", {})
        changed = [f for f in FORM_FIELDS if stored.get(f) != getattr(se, f)]
        if changed:
            st.info(f"The table below was measured with other settings ({', '.join(changed)} differ from the form).")
            if st.button("Recompute with the settings above", key="se_recompute"):
                side.compute(ctx, result, se)
                st.rerun()
        rec = recommendation(ctx, df)
        left, right = st.columns(2)
        with left:
            views.chart(side_figures.cell_heatmap(df, "kl", "KL(unsteered ‖ steered) on neutral text",
                                                  "nats/token", ctx.layer), key="se_kl")
        with right:
            views.chart(side_figures.cell_heatmap(df, "ppl_ratio", "Perplexity ratio (steered / unsteered)",
                                                  "ratio", ctx.layer), key="se_ppl")
        c = st.columns(2)
        cost = c[0].selectbox("Cost axis", list(COSTS), format_func=COSTS.get, key="w_se_cost")
        split = c[1].radio("Gain measured on", ["validation", "test"], horizontal=True, key="w_se_split")
        gain = "val_gain" if split == "validation" else "test_gain"
        left, right = st.columns(2)
        with left:
            views.chart(side_figures.tradeoff(df, rec, cost, gain, ctx.metric, st.session_state.get("w_se_budget")),
                        key="se_tradeoff")
        with right:
            fallback = ctx.layer if ctx.layer in result.layers else result.layers[0]
            layer = rec["layer"] if rec.get("found") else fallback
            views.chart(side_figures.capability(df, layer), key="se_capability")
        st.caption(settings_line(result.manifest.get("side_effects", {})))
