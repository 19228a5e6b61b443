"""How much of a `dev_eval` EER difference between two detectors is noise.

`dev_eval` has 338 clips and some of its sources hold only 5 or 10 real ones, so a point of EER
is a handful of clips. `eer_interval` gives one detector's EER a bootstrap interval (the card and the
app show it beside the figure); `paired_eer_difference` resamples the clips (with replacement, within each
(source, label) cell, so every resample keeps the set's make-up), scores both detectors on the
same resample and returns the spread of EER(candidate) - EER(reference). An interval that holds 0
means the set cannot tell the two apart.

    python -m core.training.bootstrap CARD DEV_DIR --column whisper     # or --column ensemble

writes each variant's interval into CARD's `dev_eval` block, from the per-clip CSVs that
`core.training.dev_eval` wrote into DEV_DIR (restored.csv, platform.csv, phone.csv).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..metrics import eer


def strata(sources, labels) -> list[np.ndarray]:
    """Indices of each (source, label) cell."""
    cells: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(sources, labels)):
        cells.setdefault(key, []).append(i)
    return [np.array(v) for _, v in sorted(cells.items())]


def _resample(cells: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([c[rng.integers(len(c), size=len(c))] for c in cells])


def eer_interval(labels, scores, sources, n: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """The EER of `scores` and its bootstrap interval over clips resampled within (source, label)."""
    y, s = np.asarray(labels, int), np.asarray(scores, float)
    if not (len(y) == len(s) == len(sources)):
        raise ValueError("labels, scores and sources must hold the same clips")
    cells = strata(sources, y)
    rng = np.random.default_rng(seed)
    draws = np.array([eer(y[idx], s[idx])[0] for idx in (_resample(cells, rng) for _ in range(n))])
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return {"eer": float(eer(y, s)[0]), "low": float(lo), "high": float(hi), "resamples": n, "level": level}


def paired_eer_difference(labels, reference, candidate, sources, n: int = 2000, seed: int = 0,
                          level: float = 0.95) -> dict:
    """EER(candidate) - EER(reference) on the clips as given, and its bootstrap interval."""
    y = np.asarray(labels, int)
    a, b = np.asarray(reference, float), np.asarray(candidate, float)
    if not (len(y) == len(a) == len(b) == len(sources)):
        raise ValueError("labels, both score columns and sources must hold the same clips")
    cells = strata(sources, y)
    rng = np.random.default_rng(seed)
    diffs = np.empty(n)
    for k in range(n):
        idx = _resample(cells, rng)
        diffs[k] = eer(y[idx], b[idx])[0] - eer(y[idx], a[idx])[0]
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return {"difference": float(eer(y, b)[0] - eer(y, a)[0]), "low": float(lo), "high": float(hi),
            "share_better": float((diffs < 0).mean()), "resamples": n, "level": level}


METHOD = ("bootstrap over the clips, resampled with replacement within each (source, label) cell, "
          "2.5th-97.5th percentile of the resampled EERs")


def add_intervals(card_path: str | Path, dev_dir: str | Path, column: str, n: int = 2000) -> dict:
    """Write `eer_interval` [low, high] into each variant of the card's `dev_eval` that DEV_DIR scored."""
    from .unseen_report import VARIANTS, col, labels, read

    card_path, dev_dir = Path(card_path), Path(dev_dir)
    card = json.loads(card_path.read_text())
    block = card.get("dev_eval")
    if not isinstance(block, dict):
        raise SystemExit(f"{card_path} has no dev_eval figures to put an interval on")
    done = {}
    for v in VARIANTS:
        if not (dev_dir / f"{v}.csv").exists() or not isinstance(block.get(v), dict):
            continue
        rows = read(dev_dir / f"{v}.csv")
        got = eer_interval(labels(rows), col(rows, column), [r["source"] for r in rows], n=n)
        if abs(got["eer"] - block[v]["eer"]) > 5e-4:
            raise SystemExit(f"{dev_dir / f'{v}.csv'} gives EER {got['eer']:.4f} for {column}, the card says "
                             f"{block[v]['eer']:.4f}: these are not the scores the card was measured with")
        block[v]["eer_interval"] = [round(got["low"], 4), round(got["high"], 4)]
        done[v] = block[v]["eer_interval"]
    block["eer_interval_method"] = f"{METHOD} ({n} resamples)"
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return done


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.bootstrap", description=__doc__.split("\n\n")[1])
    p.add_argument("card", help="a model or ensemble card (JSON) with dev_eval figures")
    p.add_argument("dev_dir", help="the folder of per-clip CSVs core.training.dev_eval wrote")
    p.add_argument("--column", required=True, help="the score column: a model name, or ensemble")
    p.add_argument("--resamples", type=int, default=2000)
    a = p.parse_args(argv)
    for v, (lo, hi) in add_intervals(a.card, a.dev_dir, a.column, a.resamples).items():
        print(f"{v}: EER 95% interval {lo:.1%} - {hi:.1%}")
    print(f"wrote {a.card}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
