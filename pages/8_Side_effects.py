"""Side effects: what steering costs (KL and perplexity on neutral text, capability), the trade-off with
the behaviour gain, a recommended setting chosen on validation items, and entanglement between concepts."""

import streamlit as st

from steering import entanglement as ent
from steering import figures, side_figures, tradeoff
from steering.side_effects import SideEffectsConfig
from ui import page, runs, side, state, views

COSTS = {"kl": "KL on neutral text", "ppl_ratio": "perplexity ratio", "mc_drop": "capability drop"}


def settings_form() -> SideEffectsConfig:
    with st.expander("Side-effect settings"):
        c = st.columns(3)
        n_texts = c[0].slider("Neutral texts", 1, 32, SideEffectsConfig.n_texts, key="w_se_texts")
        tokens = c[1].slider("Tokens per text", 16, 256, SideEffectsConfig.text_tokens, step=16, key="w_se_tokens")
        n_mc = c[2].slider("Multiple-choice items", 10, 200, SideEffectsConfig.n_mc, step=10, key="w_se_mc")
        st.caption("Neutral text: the project's own encyclopaedic paragraphs (data/neutral). Capability: TruthfulQA "
                   "mc1 when the data directory has it, else the bundled general-knowledge set (data/mc). "
                   "Steering applies at every position of the neutral text.")
    return SideEffectsConfig(n_texts=n_texts, text_tokens=tokens, n_mc=n_mc)


def recommendation(ctx: state.Context, df) -> dict:
    budget = st.number_input("KL budget (nats per token of neutral text)", min_value=0.0, value=0.1, step=0.05,
                             format="%.3f", key="w_se_budget")
    rec = tradeoff.recommend(df, float(budget))
    if rec["found"]:
        c = st.columns(4)
        c[0].metric("Recommended", f"layer {rec['layer']}, × {rec['multiplier']:g}",
                    help="Largest gain on the validation part of the training split within the KL budget.")
        c[1].metric("Gain on test (honest)", f"{rec['test_gain']:.3g}", help="Mean propensity shift vs multiplier 0.")
        c[2].metric("Gain if chosen on test", f"{rec['test_chosen_gain']:.3g}",
                    delta=f"+{rec['overestimate']:.3g} overestimate", delta_color="inverse")
        c[3].metric("KL at the recommendation", f"{rec['kl']:.3g}")
    st.markdown(tradeoff.describe(rec, f" {figures.propensity_unit(ctx.metric)}"))
    return rec


def entanglement_section(ctx: state.Context) -> None:
    st.subheader("Entanglement: does X's vector move Y?")
    choices = state.dataset_choices(state.get("data_dir"))
    paths = {c.label: c.key for c in choices if not c.key.startswith("upload:")}
    default = [l for l in paths][:3]
    picked = st.multiselect("Concepts (at least two; each is trained with the sidebar settings)", list(paths),
                            default=default, key="w_ent_concepts")
    mult = st.number_input("Multiplier", value=1.0, step=0.5, key="w_ent_mult")
    ready = len(picked) >= 2 and mult != 0
    clicked = st.button(f"Compute the matrix at layer {ctx.layer}", key="ent_compute", disabled=not ready)
    df = side.entanglement(ctx, [paths[p] for p in picked], float(mult), clicked) if ready else None
    if df is None:
        st.caption("Rows steer with concept X's vector; columns measure the mean propensity shift on concept Y's test "
                   "items, divided by Y's own vector's shift (the diagonal is 1). Studies are not read here yet.")
        return
    views.chart(side_figures.entanglement(ent.matrix(df), ctx.layer, float(mult)), key="ent_heatmap")


def body(ctx: state.Context) -> None:
    result = runs.stored(ctx, "all") or views.result_or_compute(ctx)
    if result is None:
        return
    se = settings_form()
    df = side.stored(result)
    if df is None:
        st.info(f"Side effects of this run ({len(result.layers)} layer(s)) are not computed yet: KL and perplexity on "
                f"{se.n_texts} neutral texts at every layer × multiplier, capability on {se.n_mc} "
                "multiple-choice items, and the behaviour gain on a validation part of the training split.")
        if st.button("Compute side effects", type="primary", key="se_compute"):
            side.compute(ctx, result, se)
            st.rerun()
    else:
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
        st.caption(f"Settings: {result.manifest.get('side_effects', {}).get('settings', {})}")
    entanglement_section(ctx)


page.run("Side effects", body)
