"""The reliability report card: can this steering vector be trusted, for this model and concept, and at what
setting? Built from the stored analyses (run, diagnostics, out-of-distribution runs, side effects) plus the
prompting baseline (is steering better than just asking?), computing only what is missing.

- ``criteria``: the thresholds (one dataclass, each with its source) and the pure marking rules;
- ``prompting``: the prompting baseline, stored beside the run;
- ``parts``: finding the stored analyses a card needs, and completing the missing ones;
- ``card``: the card itself (rows, verdict, worst inputs) from those parts;
- ``figures`` and ``html``: its figures and the self-contained HTML report;
- ``study_table``: one row of marks per concept of a stored study.

Above ``study`` and ``side_effects`` (it reads both); they never import it.
"""
