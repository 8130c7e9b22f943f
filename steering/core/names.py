"""The names a user chooses among (metrics, aggregators, steered positions) and what each means.

Kept free of torch so that the dashboard can draw its settings before torch has loaded; the modules
that implement each choice (core.scoring, core.vectors, engine.hooks) re-export these.
"""

from __future__ import annotations

METRICS = ("logit_diff", "logprob_diff", "prob", "answer_text")
METRIC_UNITS = {
    "logit_diff": "logit difference (positive - negative)",
    "logprob_diff": "log-probability difference (positive - negative)",
    "prob": "P(positive), normalised over the two answers",
    # Letter-free: the prompt without its Choices block, completions are the option texts.
    "answer_text": "mean per-token log-probability difference of the option texts (positive - negative)",
}

AGGREGATORS = ("mean", "pca", "logistic")

POSITION_MODES = ("answer", "all", "generated")  # where steering is added (engine.hooks)
POSITION_HELP = {
    "answer": "from the last prompt token onward (the paper's choice)",
    "all": "every position, the prompt included",
    "generated": "only tokens after the prompt (completion / generated tokens)",
}
