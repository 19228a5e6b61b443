"""Validation figures from out-of-fold scores: calibration, thresholds, the ensemble card and
the leave-one-source-out report (reports/validation.md)."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np

from ..metrics import eer, error_rates, fit_platt, roc_auc
from ..models.registry import MODEL_NAMES
from .trainset import Pool


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))



def summarise(name: str, res: dict, pool: Pool) -> dict:
    """Validation figures, Platt calibration and the EER threshold from out-of-fold scores."""
    is_pool = np.array([o == "pool" for o in pool.origin])
    mask = is_pool & np.isfinite(res["oof"])
    y, p = pool.labels[mask], res["oof"][mask]
    out = {"per_group": res["per_group"]}
    if len(y) and 0 < y.sum() < len(y):
        a, b = fit_platt(_logit(p), y)
        pc = 1 / (1 + np.exp(-(a * _logit(p) + b)))
        e, thr = eer(y, pc)
        both = [v["eer"] for v in res["per_group"].values() if np.isfinite(v["eer"])]
        no8k = np.array([m.get("original_rate", 16000) != 8000 for m, ok in zip(pool.meta, mask) if ok])
        e_no8k, _ = eer(y[no8k], pc[no8k])
        out.update(
            calibration={"method": "platt", "a": a, "b": b,
                         "fitted_on": "pooled leave-one-source-out scores of the shared pool"},
            threshold=thr, pooled_eer=e, pooled_auc=roc_auc(y, pc), pooled_eer_without_8k=e_no8k,
            mean_group_eer=float(np.mean(both)) if both else float("nan"),
            rates_at_threshold=error_rates(y, pc, thr),
            per_group_rates_at_threshold={
                g: error_rates(pool.labels[mask & (np.array(pool.groups) == g)],
                               1 / (1 + np.exp(-(a * _logit(res["oof"][mask & (np.array(pool.groups) == g)]) + b))),
                               thr)
                for g in res["per_group"]},
            oof_calibrated=pc,
        )
    return out


def card_figures(summary: dict) -> dict:
    """The part of `summarise`'s result that goes under a card's "validation" (calibration and
    threshold have their own card fields; the calibrated scores stay out of the card)."""
    return {k: v for k, v in summary.items() if k not in ("oof_calibrated", "calibration", "threshold")}


def clean_json(o):
    if isinstance(o, dict):
        return {str(k): clean_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean_json(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return None if not math.isfinite(float(o)) else round(float(o), 6)
    if isinstance(o, np.integer):
        return int(o)
    return o


def _calibrated(card: dict, p: np.ndarray) -> np.ndarray:
    cal = card.get("calibration") or {}
    if cal.get("method") != "platt":
        return p
    return 1 / (1 + np.exp(-(cal["a"] * _logit(p) + cal["b"])))


def _two_class(y: np.ndarray) -> bool:
    return 0 < y.sum() < len(y)


def ensemble_weights(scores: dict[str, np.ndarray], labels: np.ndarray, power: float = 1.0) -> dict[str, float]:
    """Weight each model by how far its AUC beats chance (to `power`); equal weights if none does."""
    raw = {n: max(0.0, roc_auc(labels, p) - 0.5) ** power if _two_class(labels) else 0.0
           for n, p in scores.items()}
    raw = {n: (0.0 if not math.isfinite(v) else v) for n, v in raw.items()}
    total = sum(raw.values())
    if total <= 0:
        return {n: 1 / len(scores) for n in scores}
    return {n: v / total for n, v in raw.items()}


def _top_k(k: int):
    def rule(scores: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, float]:
        auc = ensemble_weights(scores, labels)      # proportional to AUC - 0.5: the same order as the AUC
        best = sorted(scores, key=lambda n: -auc[n])[:k]
        return {n: (1 / len(best) if n in best else 0.0) for n in scores}
    return rule


# The candidate weighting rules, fixed in code. Which one ships is chosen by an inner
# leave-one-source-out (select_rule), never by the held-out source's own figures.
# The first is the rule sessions 1-3 shipped; it wins ties.
ENSEMBLE_RULES = {
    "auc": ("weight = max(0, AUC - 0.5), normalised", ensemble_weights),
    "auc_squared": ("weight = max(0, AUC - 0.5) squared, normalised",
                    lambda s, y: ensemble_weights(s, y, power=2.0)),
    "top2": ("equal weights on the two models with the highest AUC", _top_k(2)),
    "top3": ("equal weights on the three models with the highest AUC", _top_k(3)),
    "equal": ("equal weights on every model", lambda s, y: {n: 1 / len(s) for n in s}),
}


def leave_one_group_out(scores: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray,
                        mask: np.ndarray, rule) -> tuple[np.ndarray, float]:
    """Each group's ensemble score with `rule`'s weights fitted on the other groups; their mean EER."""
    ens = np.full(len(y), np.nan)
    eers = []
    for g in sorted(set(groups[mask])):
        fit = mask & (groups != g)
        w = rule({n: p[fit] for n, p in scores.items()}, y[fit])
        sel = mask & (groups == g)
        ens[sel] = sum(w[n] * p[sel] for n, p in scores.items())
        if _two_class(y[sel]):
            eers.append(eer(y[sel], ens[sel])[0])
    return ens, (float(np.mean(eers)) if eers else float("nan"))


def select_rule(scores: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray,
                mask: np.ndarray) -> tuple[str, dict[str, float]]:
    """The candidate rule with the lowest leave-one-group-out mean EER within `mask`, and every rule's figure."""
    table = {r: leave_one_group_out(scores, y, groups, mask, fn)[1] for r, (_, fn) in ENSEMBLE_RULES.items()}
    finite = {r: e for r, e in table.items() if math.isfinite(e)}
    best = min(finite, key=lambda r: (finite[r], list(ENSEMBLE_RULES).index(r))) if finite else "auc"
    return best, table


def nested_ensemble(scores: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray,
                    mask: np.ndarray) -> tuple[np.ndarray, dict]:
    """Out-of-fold ensemble scores: for each held-out group, the rule (by an inner leave-one-group-out)
    and its weights are chosen on the other groups only. Also returns each fold's choice."""
    ens = np.full(len(y), np.nan)
    folds = {}
    for g in sorted(set(groups[mask])):
        rest = mask & (groups != g)
        rule, _ = select_rule(scores, y, groups, rest)
        w = ENSEMBLE_RULES[rule][1]({n: p[rest] for n, p in scores.items()}, y[rest])
        sel = mask & (groups == g)
        ens[sel] = sum(w[n] * p[sel] for n, p in scores.items())
        folds[g] = {"rule": rule, "weights": w}
    return ens, folds


def refresh_cards(out_dir: Path, pool: Pool, names=MODEL_NAMES) -> None:
    """Refit calibration, threshold and validation figures of written cards from their out-of-fold scores."""
    for n in names:
        card = json.loads((out_dir / f"{n}.json").read_text())
        per_group = {g: {k: (float("nan") if v is None else v) for k, v in d.items()}
                     for g, d in card["validation"]["per_group"].items()}  # JSON stores NaN as null
        res = {"per_group": per_group, "oof": np.load(out_dir / f"{n}.oof.npy")}
        summary = summarise(n, res, pool)
        card["calibration"] = summary.get("calibration")
        card["threshold"] = summary.get("threshold")
        card["validation"].update(card_figures(summary))
        (out_dir / f"{n}.json").write_text(json.dumps(clean_json(card), indent=2) + "\n")


def write_ensemble(out_dir: Path, pool: Pool, report: Path | None, names=MODEL_NAMES, command: str = "") -> dict:
    """Ensemble = weighted mean of the calibrated model scores, by the rule that leave-one-source-out
    picks among ENSEMBLE_RULES; its card, EER threshold and the LOSO report."""
    is_pool = np.array([o == "pool" for o in pool.origin])
    groups = np.array(pool.groups)
    cards = {n: json.loads((out_dir / f"{n}.json").read_text()) for n in names}
    oof = {n: _calibrated(cards[n], np.load(out_dir / f"{n}.oof.npy")) for n in names}
    mask = is_pool & np.all([np.isfinite(v) for v in oof.values()], axis=0)
    y = pool.labels
    # Nested: on each held-out source the rule and its weights come from the other sources' scores only.
    ens, folds = nested_ensemble(oof, y, groups, mask)
    rule, rule_table = select_rule(oof, y, groups, mask)
    weights = ENSEMBLE_RULES[rule][1]({n: oof[n][mask] for n in names}, y[mask])
    no8k = np.array([m.get("original_rate", 16000) != 8000 for m in pool.meta])

    def figures(p: np.ndarray, thr: float | None = None) -> dict:
        per = {}
        for g in sorted(set(groups[mask])):
            m = mask & (groups == g)
            both = 0 < y[m].sum() < m.sum()
            per[g] = {"eer": eer(y[m], p[m])[0] if both else float("nan"),
                      "auc": roc_auc(y[m], p[m]) if both else float("nan"),
                      "n_real": int((y[m] == 0).sum()), "n_fake": int(y[m].sum())}
        e, t = eer(y[mask], p[mask])
        thr = t if thr is None else thr
        for g in per:
            per[g].update(error_rates(y[mask & (groups == g)], p[mask & (groups == g)], thr))
        valid = [v["eer"] for v in per.values() if math.isfinite(v["eer"])]
        return {"per_group": per, "mean_group_eer": float(np.mean(valid)), "pooled_eer": e,
                "pooled_auc": roc_auc(y[mask], p[mask]), "threshold": thr,
                "pooled_eer_without_8k": eer(y[mask & no8k], p[mask & no8k])[0]}

    ens_fig = figures(ens)
    card = {"name": "ensemble", "set": "shipped", "members": list(names),
            "rule": f"weighted mean of the members' calibrated P(fake); {ENSEMBLE_RULES[rule][0]} (fitted on the "
                    "pooled out-of-fold scores)",
            "rule_name": rule,
            "weights": weights,
            "rule_selection": {
                "candidates": {r: d for r, (d, _) in ENSEMBLE_RULES.items()},
                "how": "the candidate whose ensemble has the lowest mean leave-one-source-out EER on the "
                       "out-of-fold scores (ties go to the first listed)",
                "mean_eer_by_rule": rule_table},
            "validation_protocol": "nested: on each held-out source, the rule (by an inner leave-one-source-out "
                                   "over the other sources) and its weights come from the other sources' "
                                   "out-of-fold scores only",
            "folds": folds,
            "validation": {k: v for k, v in ens_fig.items() if k != "threshold"},
            "threshold": ens_fig["threshold"],
            "threshold_source": "EER threshold of the ensemble on pooled leave-one-source-out validation scores",
            "date": dt.date.today().isoformat()}
    (out_dir / "ensemble.json").write_text(json.dumps(clean_json(card), indent=2) + "\n")
    if report:
        model_figs = {n: figures(oof[n], cards[n]["threshold"]) for n in names}
        model_figs["ensemble"] = ens_fig
        glist = sorted(ens_fig["per_group"])
        lines = [
            "# Shipped detectors: leave-one-source-out validation", "",
            f"Generated {dt.date.today().isoformat()} by `python -m core train` on `../shared/data/manifest.csv` "
            f"({int(is_pool.sum())} clips). {command}", "",
            "Each source repository that holds both classes is held out in turn; the two sources that hold only "
            "real clips are held out together. The model is trained on the remaining sources"
            + (" (plus Griffin-Lim resynthesised real clips of those sources, labelled fake)"
               if "griffinlim" in pool.origin else "")
            + " and scores every held-out clip whole (3 s windows, 50% hop, mean P(fake)). The real-only sources "
            "have no EER: their columns show the false-positive rate (real called fake) at the model's threshold. "
            "The ensemble's weighting rule and its weights are chosen without the held-out source (nested; "
            "see the last section).", "",
            "## EER (%) per held-out source", "",
            "| model | " + " | ".join(g.split("/")[-1] for g in glist) + " | mean EER | pooled EER | pooled EER w/o 8 kHz | AUC |",
            "|---" * (len(glist) + 5) + "|",
        ]
        for n, f in model_figs.items():
            cells = [("n/a" if not math.isfinite(f["per_group"][g]["eer"]) else f"{100 * f['per_group'][g]['eer']:.1f}")
                     for g in glist]
            lines.append(f"| {n} | " + " | ".join(cells) + f" | **{100 * f['mean_group_eer']:.1f}** | "
                         f"{100 * f['pooled_eer']:.1f} | {100 * f['pooled_eer_without_8k']:.1f} | {f['pooled_auc']:.3f} |")
        lines += ["", "## Error rates at the threshold the app uses", "",
                  "| model | threshold (calibrated P(fake)) | " + " | ".join(f"{g.split('/')[-1]} FPR/FNR" for g in glist) + " |",
                  "|---" * (len(glist) + 2) + "|"]
        for n, f in model_figs.items():
            cells = []
            for g in glist:
                r = f["per_group"][g]
                fpr = "-" if not math.isfinite(r["fpr"]) else f"{100 * r['fpr']:.0f}%"
                fnr = "-" if not math.isfinite(r["fnr"]) else f"{100 * r['fnr']:.0f}%"
                cells.append(f"{fpr} / {fnr}")
            lines.append(f"| {n} | {f['threshold']:.3f} | " + " | ".join(cells) + " |")
        lines += ["", "Source sizes (real / fake): " + ", ".join(
            f"{g.split('/')[-1]} {ens_fig['per_group'][g]['n_real']}/{ens_fig['per_group'][g]['n_fake']}" for g in glist),
            "", "## How the ensemble weighs its members", "",
            f"Shipped rule: **{rule}** ({ENSEMBLE_RULES[rule][0]}), weights "
            + ", ".join(f"{n} {w:.2f}" for n, w in weights.items()) + ". "
            "It is the candidate whose ensemble has the lowest mean leave-one-source-out EER on the "
            "out-of-fold scores: " + ", ".join(f"{r} {100 * e:.1f}%" for r, e in rule_table.items()) + ". "
            "For the ensemble row above, each held-out source got the rule that an inner leave-one-source-out "
            "over the other sources chose, and weights fitted on those sources: " + ", ".join(
                f"{g.split('/')[-1]} {f['rule']}" for g, f in folds.items()) + ".",
            "", "Figures are validation on the pool's own sources; the detectors are also judged on "
            "speakers and generators absent from the pool, where error rates will be higher."]
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("\n".join(lines) + "\n")
    return card
