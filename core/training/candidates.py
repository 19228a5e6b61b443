"""Compare whisper-style candidates on `dev_eval` from the CSVs `dev_eval` wrote, each at the
threshold its training side gives (never fitted on `dev_eval`): single models, and equal-weight
means of several whose threshold is the EER threshold of the mean of their out-of-fold scores.

    python -m core.training.candidates \\
        --single W1=runs/dev/W1:assets/models --single B1=runs/dev/B1:runs/B1 \\
        --mean E1=W1+B1 --against W1 --out runs/dev/session12.json

Each `--single NAME=DEV_DIR:RUN_DIR` names a folder of `dev_eval` CSVs (restored.csv,
platform.csv, phone.csv, column p_whisper) and the folder with the model's card
(`whisper.json`: its threshold) and out-of-fold scores (`whisper.oof.npz`). With `--against REF`,
every other candidate's EER difference from REF gets a paired bootstrap interval per variant
(`core/training/bootstrap.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..metrics import eer
from .bootstrap import paired_eer_difference
from .unseen_report import VARIANTS, col, figures, labels, per_source, read


def _oof_by_key(run_dir: Path) -> tuple[dict[str, float], dict[str, int]]:
    from .whisper_backend import _clip_index, _clip_labels, _clip_scores

    d = np.load(run_dir / "whisper.oof.npz")
    keys = _clip_index(d["key"])[0]
    p = _clip_scores(d["logit"], d["key"])
    y = _clip_labels(d["y"].astype(int), d["key"])
    return dict(zip(map(str, keys), p)), dict(zip(map(str, keys), y))


def mean_threshold(run_dirs: list[Path]) -> tuple[float, float, int]:
    """(EER, threshold, clips) of the mean out-of-fold P(fake) over the clips every run scored."""
    maps = [_oof_by_key(r) for r in run_dirs]
    common = sorted(set.intersection(*(set(m[0]) for m in maps)))
    s = np.mean([[m[0][k] for k in common] for m in maps], axis=0)
    y = np.array([maps[0][1][k] for k in common])
    e, t = eer(y, s)
    return float(e), float(t), len(common)


def compare(singles: dict[str, tuple[Path, Path]], means: dict[str, list[str]], against: str | None = None) -> dict:
    out, scores = {}, {}
    rows = {n: {v: read(d / f"{v}.csv") for v in VARIANTS if (d / f"{v}.csv").exists()} for n, (d, _) in
            singles.items()}
    for name, (dev_dir, run_dir) in singles.items():
        card = json.loads((run_dir / "whisper.json").read_text())
        thr = float(card["threshold"])
        out[name] = {"threshold": thr, "threshold_source": card.get("threshold_source"),
                     "training_side_eer": card.get("validation", {}).get("pooled_eer"),
                     "C": card.get("training", {}).get("C"), "encoder": card.get("architecture", {}).get("encoder",
                                                                                                      "tiny.en")}
        for v, r in rows[name].items():
            s = col(r, "whisper")
            scores[name, v] = (r, s)
            out[name][v] = {**figures(labels(r), s, thr), "per_source": per_source(r, s)}
    for name, members in means.items():
        e_oof, thr, n = mean_threshold([singles[m][1] for m in members])
        out[name] = {"members": members, "threshold": thr, "training_side_eer": round(e_oof, 4),
                     "threshold_source": f"EER threshold of the mean out-of-fold P(fake) of {'+'.join(members)} "
                                         f"({n} training clips)"}
        for v in VARIANTS:
            tabs = [rows[m].get(v) for m in members]
            if any(t is None for t in tabs):
                continue
            paths = [[r["path"] for r in t] for t in tabs]
            if any(p != paths[0] for p in paths):
                raise SystemExit(f"{name}: the members' {v} CSVs hold different clips")
            s = np.mean([col(t, "whisper") for t in tabs], axis=0)
            scores[name, v] = (tabs[0], s)
            out[name][v] = {**figures(labels(tabs[0]), s, thr), "per_source": per_source(tabs[0], s)}
    if against:
        for name in out:
            for v in VARIANTS:
                if name == against or (name, v) not in scores or (against, v) not in scores:
                    continue
                (r_ref, s_ref), (r, s) = scores[against, v], scores[name, v]
                if [x["path"] for x in r_ref] != [x["path"] for x in r]:
                    raise SystemExit(f"{name} and {against}: their {v} CSVs hold different clips")
                out[name][v]["against"] = {"reference": against, **paired_eer_difference(
                    labels(r), s_ref, s, [x["source"] for x in r])}
    return out


def markdown(res: dict) -> str:
    lines = ["| candidate | restored EER | platform EER | phone EER | AUC (restored) | threshold | real called fake "
             "| fakes caught | worst source (restored) | training-side EER |", "|---" * 10 + "|"]
    for name, r in res.items():
        g = {v: r.get(v, {}) for v in VARIANTS}
        worst = max(g["restored"].get("per_source", {}).items(), key=lambda kv: kv[1], default=("", float("nan")))
        lines.append(f"| {name} | " + " | ".join(f"{g[v].get('eer', float('nan')):.1%}" for v in VARIANTS)
                     + f" | {g['restored'].get('auc', float('nan')):.3f} | {r['threshold']:.3f} "
                     f"| {g['restored'].get('real_called_fake', float('nan')):.1%} "
                     f"| {g['restored'].get('fakes_caught', float('nan')):.1%} | {worst[0]} {worst[1]:.1%} "
                     f"| {r.get('training_side_eer')} |")
    paired = [(name, v, r[v]["against"]) for name, r in res.items() for v in VARIANTS
              if "against" in r.get(v, {})]
    if paired:
        lines += ["", f"EER difference from {paired[0][2]['reference']} (negative = fewer errors), with a 95% paired "
                      "bootstrap interval over clips resampled within each (source, label):", "",
                  "| candidate | " + " | ".join(VARIANTS) + " |", "|---" * (1 + len(VARIANTS)) + "|"]
        for name in dict.fromkeys(n for n, _, _ in paired):
            cells = {v: d for n, v, d in paired if n == name}
            lines.append(f"| {name} | " + " | ".join(
                f"{cells[v]['difference']:+.1%} [{cells[v]['low']:+.1%}, {cells[v]['high']:+.1%}]" if v in cells
                else "" for v in VARIANTS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.candidates")
    p.add_argument("--single", action="append", required=True, metavar="NAME=DEV_DIR:RUN_DIR")
    p.add_argument("--mean", action="append", default=[], metavar="NAME=A+B")
    p.add_argument("--against", default=None, metavar="NAME",
                   help="paired bootstrap intervals of every other candidate's EER difference from NAME")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    singles = {}
    for spec in a.single:
        name, _, dirs = spec.partition("=")
        dev_dir, _, run_dir = dirs.partition(":")
        singles[name] = (Path(dev_dir), Path(run_dir))
    means = {}
    for spec in a.mean:
        name, _, members = spec.partition("=")
        means[name] = members.split("+")
        missing = [m for m in means[name] if m not in singles]
        if missing:
            raise SystemExit(f"{name}: unknown members {missing}")
    if a.against and a.against not in singles and a.against not in means:
        raise SystemExit(f"--against {a.against}: not one of the candidates")
    res = compare(singles, means, a.against)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(markdown(res))
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
