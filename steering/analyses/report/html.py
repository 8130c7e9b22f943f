"""The report card as one self-contained HTML file: the card, the verdict, the worst inputs and every
figure, with plotly.js inlined once (no CDN, no external request: it opens offline)."""

from __future__ import annotations

import html
from typing import Mapping

import plotly.graph_objects as go

from steering.analyses.report import criteria as cr
from steering.analyses.report.card import Card

COLOURS = {cr.GREEN: "#2e7d32", cr.AMBER: "#b26a00", cr.RED: "#c62828", cr.MISSING: "#616161",
           cr.UNDEFINED: "#616161"}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: 6px 8px; vertical-align: top; text-align: left; font-size: 14px; }
th { background: #f4f4f4; }
.mark { color: white; font-weight: bold; text-transform: uppercase; white-space: nowrap; }
.verdict { font-size: 18px; padding: 10px 14px; border-left: 6px solid #444; background: #fafafa; }
.small { color: #555; font-size: 13px; }
"""


def _e(text) -> str:
    return html.escape(str(text))


def card_table(card: Card) -> str:
    """The card's rows as an HTML table with inline styles (the report file and the dashboard page)."""
    cell = "border:1px solid #ddd;padding:6px 8px;vertical-align:top;text-align:left"
    rows = ["<table style='border-collapse:collapse;width:100%'><tr>" + "".join(
        f"<th style='{cell}'>{h}</th>" for h in ("mark", "criterion", "numbers", "threshold")) + "</tr>"]
    for r in card.rows:
        rows.append(f"<tr class='criterion' data-key='{_e(r.key)}'><td class='mark' style='{cell};background:"
                    f"{COLOURS[r.mark]};color:white;font-weight:bold;text-transform:uppercase'>{_e(r.mark)}</td>"
                    f"<td style='{cell}'>{_e(r.name)}</td><td style='{cell}'>{_e(r.summary)}</td>"
                    f"<td style='{cell};font-size:0.85em;color:#555'>{_e(r.threshold)}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _worst_table(card: Card) -> str:
    if not card.worst:
        return "<p>No run yet: the worst inputs come with it.</p>"
    cols = [c for c in ("example_id", "slope", "slope_letter_free", "slope_swapped", "letter_driven", "question")
            if c in card.worst[0]]
    out = ["<table><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"]
    for r in card.worst:
        cells = [f"{r[c]:+.3g}" if isinstance(r[c], float) else r[c] for c in cols]
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render(card: Card, figures: Mapping[str, go.Figure]) -> str:
    """The whole report as one HTML document."""
    s = card.settings
    title = f"Report card: {card.dataset} on {card.model}, layer {card.layer}"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{_e(title)}</h1>",
             f"<p class='small'>metric {_e(s['metric'])} · aggregator {_e(s['aggregator'])} · train {s['n_train']} "
             f"({_e(s['train_variant'])}), test {s['n_test']} ({_e(s['test_variant'])}) · seed {s['seed']} · "
             f"multipliers {_e(', '.join(f'{m:g}' for m in s['multipliers']))}</p>",
             f"<p class='verdict'>{_e(card.verdict)}</p>", card_table(card)]
    if card.missing:
        parts.append("<p><b>Missing parts</b> (compute them with <code>python -m steering report</code> or the "
                     "dashboard's <i>Complete the report card</i>): " + _e(", ".join(card.missing)) + "</p>")
    parts.append(f"<p class='small'>Shifts and costs are read at layer {card.setting['layer']}, multiplier "
                 f"{card.setting['multiplier']:g}: {_e(card.setting['why'])}.</p>")
    parts.append(f"<h2>Five worst inputs (ranked by {_e(card.worst_by or 'slope')})</h2>")
    parts.append("<p class='small'>Open them in the dashboard's <i>Inspect examples</i> page by their id.</p>")
    parts.append(_worst_table(card))
    for i, (name, fig) in enumerate(figures.items()):
        parts.append(f"<h2>{_e(name)}</h2>")
        parts.append(f"<div class='figure'>{fig.to_html(include_plotlyjs=i == 0, full_html=False)}</div>")
    parts.append("<h2>Thresholds</h2><table><tr><th>name</th><th>value</th><th>source</th></tr>")
    sources = {t["name"]: t["source"] for t in cr.threshold_table()}
    for name, value in card.thresholds.items():
        parts.append(f"<tr><td>{_e(name)}</td><td>{value:g}</td><td class='small'>{_e(sources[name])}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def write(card: Card, figures: Mapping[str, go.Figure], folder) -> tuple:
    """report.json and report.html in ``folder``, each written through a temporary file and a rename."""
    import json
    import os
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (("report.json", json.dumps(card.to_json(), indent=2, allow_nan=False)),
                       ("report.html", render(card, figures))):
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
        paths.append(folder / name)
    return tuple(paths)
