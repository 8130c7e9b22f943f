"""Pieces of page layout used on more than one page."""

from __future__ import annotations

import html
from itertools import zip_longest
from typing import Any

import streamlit as st

from steering.core import metrics, usable
from steering.core.results import SweepResult
from steering.engine.coherence import distinct_2, perplexity
from steering.engine.generate import generate_stream
from steering.run import figures
from ui import compute, runs, state


def chart(fig: Any, key: str) -> None:
    """Plotly chart themed by Streamlit (readable in light and dark mode)."""
    st.plotly_chart(fig, theme="streamlit", key=key, config={"displaylogo": False})


def settings_line(ctx: state.Context) -> str:
    s = ctx.settings
    return (f"{ctx.lm.name} · {ctx.dataset.name} · layer {s.layer} · {s.aggregator} vector · "
            f"train {s.train_variant} → test {s.test_variant} · {s.n_train} train / {s.n_test} test items · "
            f"multipliers {state.format_multipliers(list(s.multipliers))}")


def concept_summary(ctx: state.Context) -> None:
    s = ctx.dataset.summary()
    c = st.columns(4)
    c[0].metric("Items", s["n"])
    c[1].metric("Positive answer is (A)", f"{s['frac_pos_is_A']:.0%}" if s["frac_pos_is_A"] is not None else "–",
                help="A/B balance: the share of items whose behaviour-matching answer is letter A.")
    c[2].metric("Positive answer is Yes", f"{s['frac_pos_is_yes']:.0%}" if s["frac_pos_is_yes"] is not None else "n/a",
                help="Yes/No balance (persona datasets only).")
    c[3].metric("Format", s["kind"])
    if s.get("n_multi_option"):
        st.caption(f"{s['n_multi_option']} of {s['n']} items offered more than two options; each is read as an A/B "
                   "pair of its matching and its named non-matching option (the other options are dropped).")


def headline(ctx: state.Context, result: SweepResult) -> None:
    """Mean / median steerability and the anti-steerable fraction with its 95% interval."""
    f = result.figures(ctx.layer)
    unit = f"{figures.propensity_unit(ctx.metric)} per unit multiplier"
    c = st.columns(4)
    why = f.undefined
    c[0].metric("Mean steerability", metrics.shown(f.mean_slope, reason=why.get("mean_slope")),
                help=f"Mean OLS slope of propensity vs multiplier, in {unit}. 95% interval (Student t): "
                     + metrics.shown(f.mean_slope_lo, reason=why.get("mean_slope_interval"))
                     + ("" if "mean_slope_interval" in why else f" to {f.mean_slope_hi:.3g}") + ".")
    c[1].metric("Median steerability", metrics.shown(f.median_slope, reason=why.get("median_slope")), help=unit)
    c[2].metric("Anti-steerable", metrics.shown(f.frac_anti, "{:.0%}", "see below" if "frac_anti" in why else None),
                help="Fraction of test examples with slope ≤ 0 (the paper's 1 − mean(slope > 0)); "
                     "Wilson 95% interval below (honest at small n).")
    if "frac_anti" in why:
        c[2].caption(f"undefined: {why['frac_anti']}")
    else:
        c[2].caption(f"95% interval {f.frac_anti_lo:.0%} – {f.frac_anti_hi:.0%} (n = {f.n})")
    r2 = f.r2_spurious
    c[3].metric("Variance from spurious factors",
                metrics.shown(r2, "{:.0%}", why.get("r2_spurious")) if r2 is not None or "r2_spurious" in why
                else "n/a",
                help="R² of the slopes on 'positive answer is A' (and 'is Yes' for persona data): "
                     "how much of the per-example variation is explained by answer position, not content.")


def result_or_compute(ctx: state.Context) -> SweepResult | None:
    """The result for the sidebar settings, or a Compute button (which computes the sidebar layer only)."""
    result = runs.current(ctx)
    if result is not None:
        return result
    st.info(f"Nothing computed yet for these settings: {settings_line(ctx)}.")
    if st.button(f"Compute layer {ctx.layer}", type="primary", key="compute_layer"):
        runs.compute(ctx, "layer")
        st.rerun()  # redraw from the stored result, without the button
    return None


def provenance(result: SweepResult) -> None:
    m = result.manifest
    how = "served from the results store" if result.cached else f"computed in {m.get('seconds', '?')} s"
    frac_a = m.get("train_frac_pos_is_A")
    # An unbalanced training split leaves the A-minus-B letter direction in the vector.
    balance = f" · training pairs {frac_a:.0%} positive-is-A" if frac_a is not None else ""
    st.caption(f"Run {m.get('key', '?')} · {how} · {m.get('path', '?')} path{balance} · {result.run_dir}")
    skipped = m.get("skipped_items") or []
    if skipped:  # left out of both splits: the counts above are of the usable items only
        st.warning(f"{_first_upper(usable.skipped_summary(skipped))}: the {m['settings'].get('metric', '')} metric "
                   "cannot show them, so they are left out of both splits.")
    if m.get("reference_fallback_items"):
        st.caption(_first_upper(usable.fallback_summary(m["reference_fallback_items"])) + ".")
    repeated = m.get("test_items_in_train") or []
    if repeated:
        st.warning(f"{len(repeated)} test item(s) also appear in the training split (duplicates in the dataset "
                   f"file: {', '.join(repeated[:3])}{' …' if len(repeated) > 3 else ''}): their steerability is "
                   "not measured out of sample.")


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


ROLE_STYLE = {
    "prompt": "",
    "steered_prompt": "background: rgba(31, 119, 180, 0.28);",
    "completion": "background: rgba(31, 119, 180, 0.28);",
    "read": "background: rgba(214, 39, 40, 0.40); outline: 2px solid #d62728; font-weight: 700;",
}
ROLE_HELP = {"prompt": "prompt token (not steered)", "steered_prompt": "steered prompt position",
             "completion": "steered completion token", "read": "answer-letter token: vector read here, steered"}


def _token_text(text: str) -> str:
    """Escaped token text with whitespace made visible (a newline token also breaks the line)."""
    shown = html.escape(text).replace(" ", "&nbsp;").replace("\t", "&#9;")
    return shown.replace("\n", "↵<br>")


def tokens_html(tokens: list[dict]) -> str:
    """Tokens as spans: steered positions shaded blue, the read (answer-letter) token outlined red."""
    spans = [f"<span title='#{t['index']} {ROLE_HELP.get(t['role'], t['role'])}' "
             f"style='{ROLE_STYLE.get(t['role'], '')} border-radius: 2px; "
             f"box-shadow: inset -1px 0 0 rgba(128, 128, 128, 0.45);'>{_token_text(t['text'])}</span>" for t in tokens]
    legend = (f"<div style='margin-top: 0.6em; font-size: 0.85em;'>"
              f"<span style='{ROLE_STYLE['steered_prompt']} padding: 0 4px;'>steered positions</span> "
              f"<span style='{ROLE_STYLE['read']} padding: 0 4px;'>read token (answer letter)</span> "
              f"unshaded: prompt tokens left alone</div>")
    return (f"<div class='token-view' style='font-family: monospace; font-size: 0.85em; line-height: 1.9; "
            f"word-break: break-all;'>{''.join(spans)}</div>{legend}")


def generations(lm: Any, prompt: str, layer: int, vector: Any, multiplier: float, memo_key: str,
                max_new_tokens: int = 48, **kw: Any) -> None:
    """Unsteered and steered generations side by side, streamed together token by token.

    The finished pair is kept in session state (for this prompt), so other widgets' reruns do not wipe it.
    """
    left, right = st.columns(2)
    left.markdown("**Unsteered** (multiplier 0)")
    right.markdown(f"**Steered** (layer {layer}, multiplier {multiplier:g})")
    slots = left.empty(), right.empty()
    texts = ["", ""]
    kw["max_new_tokens"] = max_new_tokens
    streams = (generate_stream(lm, prompt, None, None, 0.0, **kw),
               generate_stream(lm, prompt, layer, vector, multiplier, **kw))

    def stream(progress) -> None:
        for n, pair in enumerate(zip_longest(*streams), start=1):  # one new token of each text per step
            for i, text in enumerate(pair):
                if text is not None:
                    texts[i] = text
                    slots[i].code(text or " ", language=None, wrap_lines=True)
            progress("generate", n, max_new_tokens)

    compute.run(stream, model=lm.name, labels={"generate": "Generating (tokens)"})
    for i in range(2):
        slots[i].code(texts[i] or "(no tokens before end of text)", language=None, wrap_lines=True)
    scores = [coherence_line(lm, prompt, t) for t in texts]
    left.caption(scores[0])
    right.caption(scores[1])
    st.session_state[memo_key] = {"layer": layer, "multiplier": multiplier, "texts": texts, "prompt": prompt,
                                  "scores": scores}


def coherence_line(lm: Any, prompt: str, text: str) -> str:
    """Perplexity under the unsteered model and distinct-2: noise and repetition show up here."""
    ppl, d2 = perplexity(lm, prompt, text), distinct_2(text)
    return (f"perplexity (unsteered model) {ppl:.3g} · distinct-2 {d2:.2f}" if ppl is not None and d2 is not None
            else f"perplexity (unsteered model) {ppl:.3g} · distinct-2 n/a (under two words)" if ppl is not None
            else "perplexity and distinct-2: n/a (no text)")


def last_generations(memo_key: str, prompt: str | None) -> None:
    """Show the pair generated last on this page, if it was for this prompt."""
    last = st.session_state.get(memo_key)
    if not last or last.get("prompt") != prompt:
        return
    left, right = st.columns(2)
    left.markdown("**Unsteered** (multiplier 0)")
    right.markdown(f"**Steered** (layer {last['layer']}, multiplier {last['multiplier']:g})")
    left.code(last["texts"][0] or "(no tokens before end of text)", language=None, wrap_lines=True)
    right.code(last["texts"][1] or "(no tokens before end of text)", language=None, wrap_lines=True)
    for col, line in zip((left, right), last.get("scores", ())):
        col.caption(line)
