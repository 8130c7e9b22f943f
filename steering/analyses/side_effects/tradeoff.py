"""Behaviour gain against cost per (layer, multiplier), the Pareto frontier, and a recommended setting.

The recommendation is chosen on a validation part of the training split, measured with a vector
fitted on the rest of the training split, and only *reported* on the test split (with the run's
vector, fitted on the whole training split); choosing on test would overstate the gain (the
winner's curse), and ``recommend`` says by how much.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from steering.errors import SweepError

DEFAULT_KL_BUDGET = 0.1  # nats per token of neutral text


def gains(props: np.ndarray, multipliers: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """From propensities [example, layer, multiplier]: (mean shift vs multiplier 0, fraction moved toward
    the behaviour), each [layer, multiplier]."""
    mults = np.asarray(multipliers, dtype=float)
    zero = np.flatnonzero(mults == 0)
    if not len(zero):
        raise SweepError("the multipliers need 0 (the unsteered reference) to measure a gain")
    shift = props - props[:, :, zero[0]][:, :, None]
    return shift.mean(0), (shift > 0).mean(0)


def pareto(gain: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Mask of points no other point beats (higher or equal gain at lower or equal cost, one strictly)."""
    gain, cost = np.asarray(gain, float), np.asarray(cost, float)
    keep = np.ones(len(gain), bool)
    for i in range(len(gain)):
        better = (gain >= gain[i]) & (cost <= cost[i]) & ((gain > gain[i]) | (cost < cost[i]))
        keep[i] = not better.any()
    return keep


def _best(table: pd.DataFrame, column: str) -> pd.Series | None:
    table = table[np.isfinite(table[column].to_numpy(dtype=float))]  # a NaN gain is no candidate
    return None if table.empty else table.loc[table[column].idxmax()]


def recommend(table: pd.DataFrame, kl_budget: float = DEFAULT_KL_BUDGET) -> dict:
    """The (layer, multiplier) with the largest *validation* gain among cells with positive multiplier
    and KL within the budget, with its test gain; and what choosing on test would have claimed.

    ``table`` has columns layer, multiplier, kl, val_gain, test_gain (one row per cell).
    """
    ok = table[(table.multiplier > 0) & (table.kl <= kl_budget) & np.isfinite(table.kl)]
    chosen = _best(ok, "val_gain")
    if chosen is None:
        return {"kl_budget": kl_budget, "found": False,
                "reason": f"no positive multiplier has KL <= {kl_budget:g} nats/token and a measured gain"}
    if not float(chosen.val_gain) > 0:  # nan included: a setting that does not help is no recommendation
        return {"kl_budget": kl_budget, "found": False,
                "reason": f"no setting within the KL budget of {kl_budget:g} nats/token moves the behaviour the "
                          f"intended way on the validation items (the best validation gain is "
                          f"{float(chosen.val_gain):.3g}, at layer {int(chosen.layer)}, multiplier "
                          f"{float(chosen.multiplier):g})"}
    on_test = _best(ok, "test_gain")
    return {
        "kl_budget": kl_budget, "found": True,
        "layer": int(chosen.layer), "multiplier": float(chosen.multiplier), "kl": float(chosen.kl),
        "val_gain": float(chosen.val_gain), "test_gain": float(chosen.test_gain),
        # Had the cell been picked on the test split, the test gain of that pick is what would be reported:
        "test_chosen_layer": int(on_test.layer), "test_chosen_multiplier": float(on_test.multiplier),
        "test_chosen_gain": float(on_test.test_gain),
        "test_chosen_val_gain": float(on_test.val_gain),
        "overestimate": float(on_test.test_gain - chosen.test_gain),
    }


def describe(rec: dict, unit: str = "") -> str:
    """One paragraph for the CLI and the page."""
    if not rec.get("found"):
        return f"No recommendation: {rec.get('reason', 'no cell fits')}."
    return (f"Recommended: layer {rec['layer']}, multiplier {rec['multiplier']:g} "
            f"(KL {rec['kl']:.3g} <= budget {rec['kl_budget']:g} nats/token), chosen on validation items held out of "
            f"the vector's training: gain {rec['val_gain']:.3g} on them; the run's vector (all training items) "
            f"gains {rec['test_gain']:.3g} on test{unit}. "
            f"Chosen on the test split instead it would have been layer {rec['test_chosen_layer']}, multiplier "
            f"{rec['test_chosen_multiplier']:g}, claiming a test gain of {rec['test_chosen_gain']:.3g} "
            f"(an overestimate of {rec['overestimate']:.3g} over the honest {rec['test_gain']:.3g}; "
            f"that cell's validation gain is {rec['test_chosen_val_gain']:.3g}).")
