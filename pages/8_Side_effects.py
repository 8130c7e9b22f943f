"""Side effects: what steering costs (KL and perplexity on neutral text, capability), the trade-off with
the behaviour gain, a recommended setting chosen on validation items, and entanglement between concepts."""

from ui import entanglement_view, page, runs, side_effects_view, state, views


def body(ctx: state.Context) -> None:
    result = runs.stored(ctx, "all") or views.result_or_compute(ctx)
    if result is not None:
        side_effects_view.run_section(ctx, result)
    entanglement_view.section(ctx)  # needs no run of the sidebar's concept


page.run("Side effects", body)
