"""Each criterion's row from the stored parts: its numbers (with the file or manifest entry each came from),
its threshold in words and its mark. Every method returns (mark, summary, threshold, numbers, sources, missing).
"""

from __future__ import annotations

import math

import numpy as np

from steering.analyses.report import criteria as cr
from steering.analyses.report.parts import LABELS, Parts, has_zero
from steering.analyses.side_effects import tradeoff
from steering.analyses.study.compute import examples_frame
from steering.analyses.study.stats import dataset_rows
from steering.core.metrics import anti_steerable
from steering.run.diagnostics import stats as diag_stats
from steering.run.diagnostics.stats import Z95
from steering.run.figures import propensity_unit


def _missing(parts: list[str], threshold: str, extra: str = ""):
    text = missing_text(parts) + (f" ({extra})" if extra else "")
    return cr.MISSING, text, threshold, {}, {}, parts


def _undefined(why: str, threshold: str, numbers: dict | None = None, sources: dict | None = None):
    return cr.UNDEFINED, f"undefined ({why})", threshold, numbers or {}, sources or {}, []


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _ci(iv: tuple[float, float] | None) -> str:
    return f"[{iv[0]:.0%}, {iv[1]:.0%}]" if iv is not None else "[undefined: no items]"


def setting_of(parts: Parts, th: cr.Thresholds) -> dict:
    """The (layer, multiplier) at which shifts are read: the side effects' recommendation (chosen on
    validation items within the KL budget), else the largest multiplier, saying why."""
    mults = sorted(float(m) for m in parts.cfg.multipliers)
    fallback = {"layer": parts.layer, "multiplier": mults[-1], "recommended": False}
    if parts.side is None:
        return {**fallback, "why": "no recommended setting yet (side effects missing): the largest multiplier"}
    rec = tradeoff.recommend(parts.side, th.kl_budget)
    if not rec["found"]:
        return {**fallback, "why": f"no recommended setting ({rec['reason']}): the largest multiplier",
                "recommendation": rec}
    return {"layer": rec["layer"], "multiplier": rec["multiplier"], "recommended": True,
            "why": "recommended by the side effects: the largest validation gain within the KL budget",
            "recommendation": rec}


class RowSet:
    def __init__(self, parts: Parts, th: cr.Thresholds):
        self.p, self.th = parts, th
        self.unit = propensity_unit(parts.cfg.metric)
        self.steer = None
        if parts.run is not None:
            s = parts.run.steerability
            self.steer = s[s.layer == parts.layer].reset_index(drop=True)
        self.answer_text = parts.cfg.metric == "answer_text"
        self.diag = (parts.run.manifest.get("diagnostics", {}).get("layers", {}).get(str(parts.layer), {})
                     if parts.run is not None else {})
        self.where = f"steerability.parquet (layer {parts.layer})"

    def letter_free(self) -> tuple[np.ndarray | None, str]:
        """Letter-free slopes and their source: the slopes themselves under answer_text, else the swap's."""
        if self.steer is None:
            return None, ""
        if self.answer_text:
            return self.steer.slope.to_numpy(), f"{self.where}: slope (answer_text shows no letters)"
        if "slope_letter_free" in self.steer:
            return self.steer.slope_letter_free.to_numpy(), f"{self.where}: slope_letter_free"
        return None, ""

    def steers(self):
        th = self.th
        threshold = (f"green: the {th.level:.0%} interval of the letter-free mean slope lies above 0; "
                     "amber: mean > 0 but the interval reaches 0; red: mean <= 0")
        lf, src = self.letter_free()
        if lf is None:
            extra = f"as given: mean slope {self.steer.slope.mean():+.3g}" if self.steer is not None else ""
            return _missing(["diagnostics"], threshold, extra)
        mean, lo, hi = cr.mean_interval(lf, th.level)
        # For scale: how far items move as given (letters included); a tiny letter-free mean can still exclude 0.
        scale = float(np.mean(np.abs(self.steer.slope.to_numpy())))
        numbers = {"mean": mean, "lo": lo, "hi": hi, "n": len(lf), "mean_abs_given": scale}
        sources = {"mean": src, "lo": f"t interval of {src}", "hi": f"t interval of {src}",
                   "mean_abs_given": f"{self.where}: mean of |slope|"}
        if lo is None:
            return _undefined("an interval from one item", threshold, numbers, sources)
        return (cr.mark_steers(mean, lo), f"letter-free mean slope {mean:+.3g} [{lo:+.3g}, {hi:+.3g}] "
                f"({self.unit} per unit multiplier, {len(lf)} items; as given items move by |slope| {scale:.3g} "
                f"on average)", threshold, numbers, sources, [])

    def chance(self):
        th = self.th
        threshold = (f"red: mean slope inside or below the random null range; green: above both null ranges and "
                     f"at least {_pct(th.beyond_green)} of items beyond their random null band")
        r, s = self.diag.get("null_random"), self.diag.get("null_shuffled")
        if not r or not s:
            return _missing(["diagnostics"], threshold)
        z = self.steer.null_z_random.to_numpy(dtype=float)
        # the one rule for "beyond the band" (two-sided, finite z only), on the side the vector steers toward
        k, n = int(np.sum(diag_stats.beyond_null_band(z) & (z > 0))), int(np.isfinite(z).sum())
        if n == 0:
            return _missing(["diagnostics with null slopes that vary"], threshold)
        iv = cr.wilson(k, n, th.level)
        where = f"manifest diagnostics layers.{self.p.layer}"
        numbers = {"mean_slope": r["mean_slope"], "random_lo": r["null_mean_lo"], "random_hi": r["null_mean_hi"],
                   "shuffled_lo": s["null_mean_lo"], "shuffled_hi": s["null_mean_hi"], "beyond": k / n,
                   "beyond_k": k, "n": n, "beyond_lo": iv[0], "beyond_hi": iv[1],
                   "beyond_shuffled": s["frac_beyond"]}
        sources = {"mean_slope": f"{where}.null_random.mean_slope",
                   "random_lo": f"{where}.null_random.null_mean_lo", "random_hi": f"{where}.null_random.null_mean_hi",
                   "shuffled_lo": f"{where}.null_shuffled.null_mean_lo",
                   "shuffled_hi": f"{where}.null_shuffled.null_mean_hi",
                   "beyond": f"{self.where}: null_z_random beyond its band (|z| > {Z95:.2f}) and > 0, among finite z",
                   "beyond_shuffled": f"{where}.null_shuffled.frac_beyond"}
        mark = cr.mark_chance(r["mean_slope"], r["null_mean_hi"], s["null_mean_hi"], k / n, th)
        summary = (f"mean slope {r['mean_slope']:+.3g} vs null ranges random [{r['null_mean_lo']:+.3g}, "
                   f"{r['null_mean_hi']:+.3g}], label-shuffled [{s['null_mean_lo']:+.3g}, {s['null_mean_hi']:+.3g}] "
                   f"({r['k']} each); {k}/{n} = {_pct(k / n)} {_ci(iv)} of items beyond their random null band")
        return mark, summary, threshold, numbers, sources, []

    def reliable(self):
        th = self.th
        threshold = (f"the worse of as given and letter-free: green <= {_pct(th.anti_green)} anti-steerable, "
                     f"red > {_pct(th.anti_red)}")
        if self.steer is None:
            return _missing(["diagnostics"], threshold)
        given = self.steer.anti_steerable.to_numpy(dtype=bool)
        n = len(given)
        numbers = {"anti_given": float(given.mean()), "anti_given_k": int(given.sum()), "n": n}
        iv = cr.wilson(int(given.sum()), n, th.level)
        numbers.update(anti_given_lo=iv[0], anti_given_hi=iv[1])
        sources = {"anti_given": f"{self.where}: anti_steerable"}
        text = f"anti-steerable {int(given.sum())}/{n} = {_pct(given.mean())} {_ci(iv)} as given"
        lf, src = self.letter_free()
        if lf is None:
            mark = cr.mark_reliable(float(given.mean()), None, th)
            return (mark, text + "; letter-free: " + missing_text(["diagnostics"]), threshold, numbers, sources,
                    ["diagnostics"])
        free = anti_steerable(lf)
        ivf = cr.wilson(int(free.sum()), n, th.level)
        numbers.update(anti_free=float(free.mean()), anti_free_k=int(free.sum()), anti_free_lo=ivf[0],
                       anti_free_hi=ivf[1])
        sources["anti_free"] = f"not slope > 0 of {src}"
        if not self.answer_text:
            text += f", {int(free.sum())}/{n} = {_pct(free.mean())} {_ci(ivf)} letter-free"
        else:
            text += " (answer_text: letter-free)"
        return cr.mark_reliable(float(given.mean()), float(free.mean()), th), text, threshold, numbers, sources, []

    def letter(self):
        th = self.th
        threshold = f"green <= {_pct(th.letter_green)} letter-driven, red > {_pct(th.letter_red)}"
        if self.answer_text:
            return (cr.GREEN, "not applicable: answer_text prompts show no letters, so no letter can drive them",
                    threshold, {}, {}, [])
        if self.steer is None or "letter_driven" not in self.steer:
            return _missing(["diagnostics"], threshold)
        d = self.steer.letter_driven.to_numpy(dtype=bool)
        k, n = int(d.sum()), len(d)
        iv = cr.wilson(k, n, th.level)
        numbers = {"letter_driven": k / n, "k": k, "n": n, "lo": iv[0], "hi": iv[1]}
        sources = {"letter_driven": f"{self.where}: letter_driven "
                                    f"(= manifest diagnostics layers.{self.p.layer}.swap.frac_letter_driven)"}
        return (cr.mark_letter(k / n, th), f"{k}/{n} = {_pct(k / n)} {_ci(iv)} of slopes flip sign when the options "
                f"swap letters", threshold, numbers, sources, [])

    def stable(self):
        th = self.th
        threshold = (f"green: cosine >= {th.split_cos_green:g} and Spearman >= {th.split_rho_green:g}; "
                     f"red: cosine < {th.split_cos_red:g} or Spearman < {th.split_rho_red:g}")
        s = self.diag.get("split_half")
        if not s:
            return _missing(["diagnostics"], threshold)
        if "cosine" not in s:
            return _undefined(s.get("note", "not computed"), threshold)
        numbers = {"cosine": s["cosine"], "spearman": s["spearman"], "n_half": s["n_half"]}
        sources = {"cosine": "split_half.parquet: cosine", "spearman": "split_half.parquet: spearman"}
        for name in ("cosine", "spearman"):
            if s[name] is None or not math.isfinite(s[name]):
                return _undefined(f"the split-half {name} cannot be estimated: constant slopes or vectors",
                                  threshold, numbers, sources)
        return (cr.mark_stable(s["cosine"], s["spearman"], th), f"split-half vectors' cosine {s['cosine']:.3f}, "
                f"Spearman of per-item slopes {s['spearman']:.3f} ({s['n_half']} training pairs each)",
                threshold, numbers, sources, [])

    def generalises(self):
        th = self.th
        threshold = (f"OOD / ID median slope per prompt variant: green when every ratio >= {th.ood_green:g}, "
                     f"red when the worst < {th.ood_red:g}")
        if self.steer is None:
            return _missing(["diagnostics", "ood"], threshold)
        left = [v for v, r in self.p.ood.items() if r is None]
        if left:
            return _missing(["ood"], threshold, "variants " + ", ".join(left))
        results = [self.p.run, *self.p.ood.values()]
        table = dataset_rows(examples_frame(results)).set_index("test_variant")
        id_median = float(table.loc[self.p.cfg.test_variant, "median_slope"])
        numbers = {"id_median": id_median}
        sources = {"id_median": f"{self.where}: median of slope"}
        for v, r in self.p.ood.items():
            numbers[f"median_{v}"] = float(table.loc[v, "median_slope"])
            sources[f"median_{v}"] = f"{r.run_dir.name}/steerability.parquet: median of slope"
        if not id_median > 0:
            return _undefined(f"the in-distribution median slope is {id_median:+.3g}, not positive: there is no "
                              "steerability to keep", threshold, numbers, sources)
        ratios = {v: numbers[f"median_{v}"] / id_median for v in self.p.ood}
        numbers.update({f"ratio_{v}": x for v, x in ratios.items()})
        text = f"ID median slope {id_median:+.3g}; OOD / ID " + ", ".join(f"{v} {x:.2f}" for v, x in ratios.items())
        return cr.mark_generalises(ratios, th), text, threshold, numbers, sources, []

    def beats(self):
        th = self.th
        threshold = (f"share of items that steering moves more than the better way of asking: green >= "
                     f"{_pct(th.beats_green)}, red < {_pct(th.beats_red)}")
        if not has_zero(self.p.cfg):
            return _undefined("the multipliers have no 0: shifts need the unsteered reference", threshold)
        if self.p.prompting is None:
            return _missing(["prompting"], threshold)
        st = setting_of(self.p, th)
        df = self.p.prompting
        g = df[(df.layer == st["layer"]) & (df.multiplier == st["multiplier"])]
        if g.empty:
            return _undefined(f"the baseline has no row at layer {st['layer']}, x{st['multiplier']:g}", threshold)
        asks = {v: float(g[f"ask_{k}"].mean()) for v, k in (("SYS_POS", "sys"), ("USER_POS", "user"))}
        best = max(asks, key=asks.get)
        col = "ask_sys" if best == "SYS_POS" else "ask_user"
        wins = g.steer.to_numpy() > g[col].to_numpy()
        k, n = int(wins.sum()), len(wins)
        iv = cr.wilson(k, n, th.level)
        src = f"prompting.parquet (layer {st['layer']}, multiplier {st['multiplier']:g})"
        numbers = {"layer": st["layer"], "multiplier": st["multiplier"], "steer_mean": float(g.steer.mean()),
                   "ask_SYS_POS_mean": asks["SYS_POS"], "ask_USER_POS_mean": asks["USER_POS"],
                   "both_SYS_POS_mean": float(g.both_sys.mean()), "both_USER_POS_mean": float(g.both_user.mean()),
                   "best_ask": best, "wins": k / n, "k": k, "n": n, "lo": iv[0], "hi": iv[1]}
        sources = {"steer_mean": f"{src}: mean of steer", "ask_SYS_POS_mean": f"{src}: mean of ask_sys",
                   "ask_USER_POS_mean": f"{src}: mean of ask_user", "both_SYS_POS_mean": f"{src}: mean of both_sys",
                   "both_USER_POS_mean": f"{src}: mean of both_user"}
        sources["wins"] = f"{src}: steer > {col}"
        larger = "steering" if numbers["steer_mean"] > asks[best] else "asking"
        text = (f"at layer {st['layer']}, x{st['multiplier']:g} ({'recommended' if st['recommended'] else 'largest'}"
                f"): mean shift {numbers['steer_mean']:+.3g} steering, {asks['SYS_POS']:+.3g} asking (SYS_POS), "
                f"{asks['USER_POS']:+.3g} asking (USER_POS), {numbers['both_SYS_POS_mean']:+.3g} both (SYS_POS); "
                f"{larger} is larger on average; steering moves {k}/{n} = {_pct(k / n)} {_ci(iv)} of items more "
                f"than {best}")
        return cr.mark_beats(k / n, th), text, threshold, numbers, sources, []

    def affordable(self):
        th = self.th
        threshold = (f"at the recommended setting (KL <= {th.kl_budget:g} nats/token): green with perplexity ratio "
                     f"<= {th.ppl_green:g} and capability lost <= {th.mc_drop_green:.0%} points; red with ratio > "
                     f"{th.ppl_red:g}, lost > {th.mc_drop_red:.0%} or no setting within the budget")
        if not has_zero(self.p.cfg):
            return _undefined("the multipliers have no 0: costs need the unsteered reference", threshold)
        if self.p.side is None:
            return _missing(["side_effects"], threshold)
        st = setting_of(self.p, th)
        if not st["recommended"]:
            return (cr.RED, f"no recommended setting: {st['recommendation']['reason']}", threshold,
                    {"found": False}, {"found": "side_effects.parquet: kl"}, [])
        df = self.p.side
        row = df[(df.layer == st["layer"]) & (df.multiplier == st["multiplier"])].iloc[0]
        src = f"side_effects.parquet (layer {st['layer']}, multiplier {st['multiplier']:g})"
        numbers = {"found": True, "layer": st["layer"], "multiplier": st["multiplier"], "kl": float(row.kl),
                   "ppl_ratio": float(row.ppl_ratio), "mc_drop": float(row.mc_drop),
                   "mc_accuracy": float(row.mc_accuracy)}
        sources = {k: f"{src}: {k}" for k in ("kl", "ppl_ratio", "mc_drop", "mc_accuracy")}
        info = self.p.side_info or {}
        mc = info.get("settings", {}).get("mc_name", "the capability set")
        text = (f"layer {st['layer']}, x{st['multiplier']:g}: KL {row.kl:.3g} nats/token, perplexity ratio "
                f"{row.ppl_ratio:.3f}, capability {row.mc_accuracy:.0%} on {mc} ({-row.mc_drop:+.0%} points)")
        return (cr.mark_affordable(True, float(row.ppl_ratio), float(row.mc_drop), th), text, threshold, numbers,
                sources, [])


def missing_text(parts: list[str]) -> str:
    return "missing: " + ", ".join(LABELS[p] for p in parts) + " — compute it"
