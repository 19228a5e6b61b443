"""Figures on sources the models never trained on, from the per-clip score CSVs that
`dev_eval` writes: every model and every candidate ensemble, as restored, through a platform
and through a phone line, per source, at each one's threshold; reliability (ECE); the
inconclusive band. Also what the cards and the ensemble card record of them.

Candidate ensembles are equal-weight means of calibrated model P(fake); their thresholds come
from a sample of the extended pool's `train` split (`train_sample.csv`, on which the shipped
six never trained) with the whisper model's out-of-fold scores there, never from `dev_eval`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..metrics import balanced_weights, eer, error_rates, fit_platt, reliability, roc_auc
from .validation_report import _logit

VARIANT_TITLES = {"restored": "as restored", "platform": "platform (24 kHz mp3, 64 kbit/s)",
                  "phone": "phone (300-3400 Hz, 8 kHz, mu-law)"}


def read(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def join(*tables: list[dict]) -> list[dict]:
    """Rows of several score CSVs of the same clips, merged by path (the first table's order)."""
    by_path = [{r["path"]: r for r in t} for t in tables[1:]]
    out = []
    for r in tables[0]:
        row = dict(r)
        for t in by_path:
            row.update({k: v for k, v in t.get(r["path"], {}).items() if k.startswith("p_")})
        out.append(row)
    return out


def col(rows: list[dict], name: str) -> np.ndarray:
    return np.array([float(r[f"p_{name}"]) if r.get(f"p_{name}") not in ("", None) else np.nan for r in rows])


def labels(rows: list[dict]) -> np.ndarray:
    return np.array([int(r["label"]) for r in rows])


def mean_of(rows: list[dict], names: list[str]) -> np.ndarray:
    return np.nanmean(np.stack([col(rows, n) for n in names]), axis=0)


def figures(y: np.ndarray, s: np.ndarray, threshold: float | None) -> dict:
    ok = np.isfinite(s)
    y, s = y[ok], s[ok]
    e, t = eer(y, s)
    out = {"clips": int(len(y)), "eer": round(float(e), 4), "auc": round(float(roc_auc(y, s)), 4)}
    if threshold is not None:
        r = error_rates(y, s, threshold)
        out.update(threshold=round(float(threshold), 6), real_called_fake=round(r["fpr"], 4),
                   fakes_caught=round(1 - r["fnr"], 4))
    return out


def per_source(rows: list[dict], s: np.ndarray) -> dict:
    y = labels(rows)
    src = np.array([r["source"] for r in rows])
    out = {}
    for g in sorted(set(src)):
        m = src == g
        if len(set(y[m])) == 2:
            out[g] = round(float(eer(y[m], s[m])[0]), 4)
    return out


def platt(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt calibration to even odds: dev_eval is 70% fake, an analyst's cases need not be."""
    return fit_platt(_logit(p), y, sample_weight=balanced_weights(y))


def apply_platt(p: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(ab[0] * _logit(p) + ab[1], -50, 50)))


def cross_fitted_ece(rows: list[dict], s: np.ndarray) -> dict:
    """ECE of P(fake) as it is, and after a Platt calibration fitted on the other dev_eval sources
    (leave one source out: the calibration never sees the source it is judged on)."""
    y = labels(rows)
    src = np.array([r["source"] for r in rows])
    cal = np.full(len(s), np.nan)
    for g in sorted(set(src)):
        m = src == g
        if len(set(y[~m])) == 2:
            cal[m] = apply_platt(s[m], platt(s[~m], y[~m]))
    ok = np.isfinite(cal)
    return {"as_trained": round(reliability(y, s, balanced=True)["ece"], 4),
            "platt_fitted_on_other_sources": round(reliability(y[ok], cal[ok], balanced=True)["ece"], 4)}


def threshold_map(thr: float, ab: tuple[float, float]) -> float:
    """A threshold on uncalibrated scores, re-expressed on Platt-calibrated ones (same decisions)."""
    return float(apply_platt(np.array([thr]), ab)[0])


# -- the session's comparison, as planned in reports/experiments.md --------------------------------

SIX = ("senet", "resnet", "res2net", "gnn", "darts", "lstm")
VARIANTS = ("restored", "platform", "phone")


def whisper_oof(run_dir: Path) -> dict[str, float]:
    """The whisper run's out-of-fold clip P(fake) on its training clips, by clip key."""
    from .whisper_backend import _clip_index, _clip_scores

    d = np.load(Path(run_dir) / "whisper.oof.npz")
    return {str(k): float(v) for k, v in zip(_clip_index(d["key"])[0], _clip_scores(d["logit"], d["key"]))}


def train_sample_scores(sample_csv: Path, whisper_run: Path) -> list[dict]:
    """The shipped six's engine scores on a capped sample of the extended `train` split (which they
    never trained on), with the whisper run's out-of-fold scores of the same clips as `p_whisper`."""
    from .decoded_pool import clip_key

    oof = whisper_oof(whisper_run)
    rows = read(sample_csv)
    for r in rows:
        v = oof.get(clip_key(r["path"]))
        r["p_whisper"] = "" if v is None else f"{v:.6f}"
    return [r for r in rows if r["p_whisper"] != ""]


def compare(dev_dir: Path, whisper_runs: dict[str, Path], sample_csv: Path, models_dir: Path,
            extras: dict[str, tuple[str, str]] | None = None) -> dict:
    """Every configuration of the plan on every variant; the choices the plan's rules make.
    `extras` adds single models scored elsewhere (label -> (dev_dir sub-folder, model name)),
    reported without a threshold (runs trained without out-of-fold scores have none)."""
    import json

    cards = {n: json.loads((models_dir / f"{n}.json").read_text()) for n in SIX}
    ens_card = json.loads((models_dir / "ensemble.json").read_text())
    ens_card = ens_card.get("previous", ens_card)       # the ensemble as it stood before `ship` rewrote it
    w_cards = {w: json.loads((d / "whisper.json").read_text()) for w, d in whisper_runs.items()}
    tables = {v: {w: read(dev_dir / w / f"{v}.csv") for w in whisper_runs if (dev_dir / w / f"{v}.csv").exists()}
              for v in VARIANTS}
    shipped = {v: read(dev_dir / "shipped" / f"{v}.csv") for v in VARIANTS}
    out: dict = {"configs": {}, "per_source": {}}

    def add(name, v, rows, s, thr):
        out["configs"].setdefault(name, {})[v] = figures(labels(rows), s, thr)
        if v == "restored":
            out["per_source"][name] = per_source(rows, s)
            out.setdefault("ece", {})[name] = cross_fitted_ece(rows, s)

    for v in VARIANTS:
        rows = shipped[v]
        for n in SIX:
            add(n, v, rows, col(rows, n), cards[n]["threshold"])
        add("shipped ensemble (gnn + resnet)", v, rows, col(rows, "ensemble"), ens_card["threshold"])
        for w, t in tables[v].items():
            add(f"whisper {w}", v, t, col(t, "whisper"), w_cards[w]["threshold"])
        for label, (sub, model) in (extras or {}).items():
            if (dev_dir / sub / f"{v}.csv").exists():
                t = read(dev_dir / sub / f"{v}.csv")
                add(label, v, t, col(t, model), None)
    # the plan's choices, on dev_eval as restored
    best_w = min(tables["restored"], key=lambda w: out["configs"][f"whisper {w}"]["restored"]["eer"])
    sample = train_sample_scores(sample_csv, whisper_runs[best_w])
    members = {"4a whisper alone": ["whisper"], "4b mean of whisper, gnn, resnet": ["whisper", "gnn", "resnet"],
               "4c mean of all seven": ["whisper", *SIX]}
    thresholds = {}
    for name, ms in members.items():
        ts = mean_of(sample, ms)
        thresholds[name] = (w_cards[best_w]["threshold"] if ms == ["whisper"] else float(eer(labels(sample), ts)[1]))
        out.setdefault("train_sample", {})[name] = figures(labels(sample), ts, thresholds[name])
        for v in VARIANTS:
            rows = join(shipped[v], tables[v][best_w])
            add(name, v, rows, mean_of(rows, ms), thresholds[name])
    rule = min(members, key=lambda n: out["configs"][n]["restored"]["eer"])
    out["choices"] = {
        "whisper": best_w, "rule": rule, "members": members[rule], "threshold_before_calibration": thresholds[rule],
        "whisper_joins": min(out["configs"][n]["restored"]["eer"] for n in members)
        < out["configs"]["shipped ensemble (gnn + resnet)"]["restored"]["eer"],
        "train_sample_clips": len(sample)}
    return out


def calibrate_and_band(dev_dir: Path, best_w: str, members: list[str], threshold: float, target: float = 0.9) -> dict:
    """The chosen ensemble's calibration (Platt on dev_eval as restored), its threshold on the
    calibrated scale, the inconclusive band fitted there, and what they give on every variant."""
    from ..assessment import fit_band

    out: dict = {}
    rows = join(read(dev_dir / "shipped" / "restored.csv"), read(dev_dir / best_w / "restored.csv"))
    y, s = labels(rows), mean_of(rows, members)
    ece = cross_fitted_ece(rows, s)
    fitted = platt(s, y)
    # a calibration ships only if it holds on sources it was not fitted on (leave one source out)
    keep = ece["platt_fitted_on_other_sources"] < ece["as_trained"]
    ab = fitted if keep else (1.0, 0.0)
    cal_thr = threshold_map(threshold, ab)
    sc = apply_platt(s, ab)
    band = fit_band(y, sc, cal_thr, target)
    calibration = ({"method": "platt", "a": round(ab[0], 6), "b": round(ab[1], 6)} if keep else
                   {"method": "none", "why": "a Platt calibration fitted on the other dev_eval sources raised the "
                    f"ECE from {ece['as_trained']:.3f} to {ece['platt_fitted_on_other_sources']:.3f}: it does not "
                    "carry across sources, so P(fake) is left as trained",
                    "rejected": {"a": round(fitted[0], 6), "b": round(fitted[1], 6)}})
    out.update(calibration=calibration, threshold=round(cal_thr, 6), band=band, ece=ece,
               ece_after_in_sample=round(reliability(y, sc, balanced=True)["ece"], 4),
               reliability=reliability(y, sc, balanced=True))
    for v in VARIANTS:
        r = join(read(dev_dir / "shipped" / f"{v}.csv"), read(dev_dir / best_w / f"{v}.csv"))
        yv, sv = labels(r), apply_platt(mean_of(r, members), ab)
        inside = (sv >= band["low"]) & (sv < band["high"])
        fake_side, real_side = sv >= band["high"], sv < band["low"]
        out.setdefault("variants", {})[v] = {
            **figures(yv, sv, cal_thr), "per_source": per_source(r, sv),
            "inconclusive_share": round(float(inside.mean()), 4),
            "right_when_likely_fake": round(float(yv[fake_side].mean()), 4) if fake_side.any() else None,
            "right_when_likely_real": round(float(1 - yv[real_side].mean()), 4) if real_side.any() else None}
    return out


PROTOCOL = ("extended pool `dev_eval` (338 clips: HierSpeech++, SpeechTokenizer, Pheme, Fish-Speech 0.4; never "
            "trained on), whole files scored by the engine; platform = resampled to 24 kHz and mp3 at 64 kbit/s; "
            "phone = 300-3400 Hz, 8 kHz, G.711 mu-law (ffmpeg)")


def ship(comparison: dict, calib: dict, whisper_run: Path, models_dir: Path, command: str,
         dev_dir: Path | None = None, interval_resamples: int = 2000) -> dict:
    """Write what the comparison chose into the shipped set: the whisper model (when it joins),
    every card's dev_eval figures, and the ensemble card (members, weights, threshold,
    calibration and inconclusive band). With `dev_dir`, each card also gets the bootstrap
    interval of its EER where a score column holds what its figures were measured on."""
    import datetime as dt
    import json
    import shutil

    ch = comparison["choices"]
    names = list(SIX) + (["whisper"] if ch["whisper_joins"] else [])
    if ch["whisper_joins"]:
        for ext in ("safetensors", "json"):
            shutil.copy(Path(whisper_run) / f"whisper.{ext}", models_dir / f"whisper.{ext}")
    for n in names:
        key = f"whisper {ch['whisper']}" if n == "whisper" else n
        path = models_dir / f"{n}.json"
        card = json.loads(path.read_text())
        card["dev_eval"] = {"protocol": PROTOCOL, **comparison["configs"][key],
                            "eer_per_source": comparison["per_source"][key], "ece": comparison["ece"][key]}
        path.write_text(json.dumps(card, indent=2) + "\n")
    members = ch["members"] if ch["whisper_joins"] else ["gnn", "resnet"]
    old = json.loads((models_dir / "ensemble.json").read_text())
    band = calib["band"]
    ens = {
        "name": "ensemble", "set": "shipped", "members": names,
        "rule": f"{ch['rule'] if ch['whisper_joins'] else 'the pool-validated top two'}: equal weights on "
                f"{', '.join(members)}, then the calibration below",
        "rule_name": ch["rule"] if ch["whisper_joins"] else "top2",
        "weights": {n: (1 / len(members) if n in members else 0.0) for n in names},
        "threshold": calib["threshold"],
        "threshold_source": ("EER threshold on a capped sample of the extended pool's train split (whisper: its "
                             "out-of-fold scores)" if len(members) > 1 else
                             "the whisper card's EER threshold on source-grouped out-of-fold training scores")
                            + (", mapped through the dev_eval calibration"
                               if calib["calibration"]["method"] == "platt" else ""),
        "calibration": ({**calib["calibration"], "fitted_on": "the ensemble's scores on dev_eval as restored, "
                         "real and fake weighted equally (P(fake) at even odds)"}
                        if calib["calibration"]["method"] == "platt" else calib["calibration"]),
        "inconclusive_band": {
            "low": round(band["low"], 6), "high": round(band["high"], 6), "target": band["target"],
            "source": (f"fitted on dev_eval (4 sources never trained on, {band['clips']} clips): outside "
                       f"[{band['low']:.2f}, {band['high']:.2f}) the call was right at least {band['target']:.0%} of "
                       "the time there, real and fake clips counted at equal weight"
                       + ("; no range of scores was real that often, so this set never says 'likely real'"
                          if band["low"] <= 0 else "")),
            "figures": band},
        "dev_eval": {"protocol": PROTOCOL, **calib["variants"], "ece": calib["ece"],
                     "ece_after_calibration_in_sample": calib["ece_after_in_sample"],
                     "reliability": calib["reliability"]},
        "selection": {"plan": "reports/experiments.md, session 11 (written before scoring)",
                      "dev_eval_eer_as_restored": {k: v["restored"]["eer"] for k, v in comparison["configs"].items()},
                      "train_sample": comparison.get("train_sample"), "choices": ch},
        "previous": {k: old[k] for k in ("rule", "rule_name", "weights", "threshold", "threshold_source")
                     if k in old},
        "command": command, "date": dt.date.today().isoformat(),
    }
    (models_dir / "ensemble.json").write_text(json.dumps(ens, indent=2) + "\n")
    if dev_dir is not None:
        add_card_intervals(models_dir, Path(dev_dir), names, ch["whisper"], interval_resamples)
    return ens


def add_card_intervals(models_dir: Path, dev_dir: Path, names: list[str], whisper_dir: str, n: int) -> list[str]:
    """Bootstrap intervals into the cards just written: each model from its own score column; the
    ensemble from whisper's when its figures are whisper's (a one-member rule, calibrated or not).
    A card whose figures no column reproduces is left without one, and named in the return."""
    import sys

    from .bootstrap import add_intervals

    jobs = [(n_, dev_dir / ("shipped" if n_ in SIX else whisper_dir), n_) for n_ in names]
    jobs.append(("ensemble", dev_dir / whisper_dir, "whisper"))
    skipped = []
    for card, folder, column in jobs:
        try:
            add_intervals(models_dir / f"{card}.json", folder, column, n=n)
        except (SystemExit, KeyError, FileNotFoundError) as why:
            skipped.append(card)
            print(f"no EER interval for {card}: {why}", file=sys.stderr)
    return skipped


def main(argv=None) -> int:
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(prog="python -m core.training.unseen_report", description=__doc__.split("\n\n")[0])
    p.add_argument("dev_dir", help="folder with shipped/ and W*/ score CSVs from core.training.dev_eval")
    p.add_argument("--whisper", action="append", required=True, metavar="NAME=RUN_DIR",
                   help="a whisper candidate: its dev_dir sub-folder name and its training run folder")
    p.add_argument("--train-sample", required=True, help="restored.csv of the shipped six on a train sample")
    p.add_argument("--extra", action="append", default=[], metavar="LABEL=SUBDIR:MODEL",
                   help="another single model's scores to report (no threshold)")
    p.add_argument("--models", default="assets/models")
    p.add_argument("--out", required=True, help="where the comparison JSON goes")
    p.add_argument("--ship", action="store_true", help="write the choices into --models")
    p.add_argument("--report", default=None, help="prepend the markdown section to this report")
    p.add_argument("--audit", default=None, help="the shortcut audit's markdown table, to include")
    a = p.parse_args(argv)
    runs = dict(w.split("=", 1) for w in a.whisper)
    runs = {k: Path(v) for k, v in runs.items()}
    extras = {e.split("=", 1)[0]: tuple(e.split("=", 1)[1].split(":", 1)) for e in a.extra}
    comp = compare(Path(a.dev_dir), runs, Path(a.train_sample), Path(a.models), extras)
    ch = comp["choices"]
    members = ch["members"] if ch["whisper_joins"] else ["gnn", "resnet"]
    thr = ch["threshold_before_calibration"] if ch["whisper_joins"] else json.loads(
        (Path(a.models) / "ensemble.json").read_text())["threshold"]
    comp["calibrated"] = calibrate_and_band(Path(a.dev_dir), ch["whisper"], members, thr)
    Path(a.out).write_text(json.dumps(comp, indent=1) + "\n")
    for name, by_v in comp["configs"].items():
        print(f"{name:34s} " + "  ".join(f"{v} EER {f['eer']:.3f}" for v, f in by_v.items()), file=sys.stderr)
    print(json.dumps(ch), file=sys.stderr)
    if a.ship:
        ship(comp, comp["calibrated"], runs[ch["whisper"]], Path(a.models), " ".join(sys.argv), dev_dir=Path(a.dev_dir))
    if a.report:
        rep = Path(a.report)
        old = rep.read_text() if rep.exists() else ""
        title = "Shipped detectors: leave-one-source-out validation"   # the pool-only report below it
        if title in old:
            old = "# Before session 11: " + old[old.index(title):]
        rep.write_text(markdown(comp, Path(a.audit).read_text() if a.audit else "") + "\n" + old)
    return 0



def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def markdown(comp: dict, audit_md: str = "") -> str:
    """The validation report's section on unseen sources, from `compare` + `calibrate_and_band`."""
    ch, cal = comp["choices"], comp["calibrated"]
    lines = ["# On sources the models never trained on (`dev_eval`)", "",
             f"Measured in session 11 ({PROTOCOL}). Each configuration was scored there once; the comparison and "
             "its rules were written down before (reports/experiments.md). The ensemble's calibration and its "
             "inconclusive band are fitted on `dev_eval` itself, so its figures after calibration are in-sample; "
             "EER and AUC do not depend on the calibration.", "",
             "## Every configuration", "",
             "| configuration | " + " | ".join(f"EER {VARIANT_TITLES[v]}" for v in VARIANTS)
             + " | AUC (restored) | real called fake / fakes caught at its threshold (restored) |",
             "|---|---|---|---|---|---|"]
    for name, by_v in comp["configs"].items():
        r = by_v.get("restored", {})
        rates = (f"{r['real_called_fake']:.1%} / {r['fakes_caught']:.1%} (threshold {r['threshold']:.3f})"
                 if "real_called_fake" in r else "")
        lines.append(f"| {name} | " + " | ".join(f"{by_v[v]['eer']:.1%}" if v in by_v else "" for v in VARIANTS)
                     + f" | {r.get('auc', float('nan')):.3f} | {rates} |")
    sources = sorted({s for v in comp["per_source"].values() for s in v})
    lines += ["", "## EER per `dev_eval` source (as restored)", "",
              "| configuration | " + " | ".join(sources) + " |", "|---|" + "---|" * len(sources)]
    for name, ps in comp["per_source"].items():
        lines.append(f"| {name} | " + " | ".join(f"{ps[s]:.1%}" if s in ps else "" for s in sources) + " |")
    lines += ["", "## Reliability of P(fake) (ECE, as restored, real and fake at equal weight)", "",
              "| configuration | as trained | Platt fitted on the other dev_eval sources |", "|---|---|---|"]
    for name, e in comp["ece"].items():
        lines.append(f"| {name} | {e['as_trained']:.3f} | {e['platt_fitted_on_other_sources']:.3f} |")
    b = cal["band"]
    lines += ["", "## What ships", "",
              f"- whisper candidate chosen: **{ch['whisper']}**; it joins the default set: **{ch['whisper_joins']}**.",
              f"- ensemble rule: **{ch['rule'] if ch['whisper_joins'] else 'unchanged (gnn + resnet)'}**, members "
              f"{', '.join(ch['members'] if ch['whisper_joins'] else ['gnn', 'resnet'])}, equal weights.",
              (f"- calibration: Platt on `dev_eval` as restored, to even odds (a = {cal['calibration']['a']:.3f}, "
               f"b = {cal['calibration']['b']:.3f})" if cal["calibration"]["method"] == "platt" else
               f"- calibration: none ({cal['calibration']['why']})")
              + f"; ECE as trained {cal['ece']['as_trained']:.3f}, with a Platt fitted on the other sources "
              f"{cal['ece']['platt_fitted_on_other_sources']:.3f}, as shipped {cal['ece_after_in_sample']:.3f}.",
              f"- threshold {cal['threshold']:.3f} (from training-side out-of-fold scores"
              + (", mapped through the calibration)." if cal["calibration"]["method"] == "platt" else ")."),
              f"- inconclusive band [{b['low']:.3f}, {b['high']:.3f}) (target: right {b['target']:.0%} of the time, "
              "real and fake counted at equal weight): above it the call 'likely fake' was right "
              f"{_pct(b['right_when_fake'])}; below it 'likely real' was right {_pct(b['right_when_real'])}"
              + (" (no range of scores held real recordings that often, so the set never says 'likely real')"
                 if b["low"] <= 0 else "") + f"; {b['inconclusive_share']:.1%} of `dev_eval` is inconclusive.",
              "", "The same calibration, threshold and band on each variant (shares of clips, unweighted):", "",
              "| variant | EER | AUC | real called fake | fakes caught | inconclusive | right when likely fake | "
              "right when likely real |", "|---|---|---|---|---|---|---|---|"]
    for v, f in cal["variants"].items():
        rf = f"{f['right_when_likely_fake']:.1%}" if f["right_when_likely_fake"] is not None else "n/a"
        rr = f"{f['right_when_likely_real']:.1%}" if f["right_when_likely_real"] is not None else "n/a"
        lines.append(f"| {VARIANT_TITLES[v]} | {f['eer']:.1%} | {f['auc']:.3f} | {f['real_called_fake']:.1%} | "
                     f"{f['fakes_caught']:.1%} | {f['inconclusive_share']:.1%} | {rf} | {rr} |")
    if audit_md:
        lines += ["", "## Shortcut audit (`python -m core.training.shortcuts`)", "",
                  "A logistic regression on what is not the voice, validated with the whisper back end's "
                  "source-grouped folds and example weights, on the clips as restored and on the crops the "
                  "models are trained on (near 50% = no usable cue).", "", audit_md.strip()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
