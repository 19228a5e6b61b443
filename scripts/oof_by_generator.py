"""Where a trained family's out-of-fold errors sit: one row per held-out source and generator (fakes)
or corpus (real clips).

usage: python scripts/oof_by_generator.py RUN_DIR --model gnn --data ../shared/data/manifest.csv [--top 15]

For each (source, label, generator or corpus) cell: its clips, their median out-of-fold score and its
rank error, the share of the other class in the same held-out source that the cell's clips are
mis-ranked against (0 = every clip ranked right, 1 = every one wrong). The worst cells are what
a change to training has to fix; the mean over a source's fakes is 1 - that source's AUC.
Needs the run's `<name>.oof.npy` (written by `python -m core train`, not committed) and card,
and the labelled source it was trained on; added fakes (after the pool's clips) are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.training.datasets import read_labelled  # noqa: E402
from core.training.trainset import exclude_spec  # noqa: E402


def cell_rows(items, oof: np.ndarray, decoded: int) -> list[dict]:
    """Rows sorted worst first. oof holds one score per decoded pool clip, in the labelled source's
    order, then the added fakes; `decoded` is the card's pool clip count."""
    if decoded != len(items) or len(oof) < len(items):
        raise SystemExit(f"{len(items)} labelled clips, but the run decoded {decoded} and scored {len(oof)}: "
                         "give the data (and --exclude) it was trained on")
    labels = np.array([it.label for it in items])
    groups = np.array([it.group for it in items])
    scores = np.asarray(oof[: len(items)], dtype=float)
    cells: dict[tuple, list[int]] = {}
    for i, it in enumerate(items):
        if np.isfinite(scores[i]):
            what = it.meta.get("generator", "") if it.label else it.meta.get("speaker_or_corpus", "")
            cells.setdefault((it.group, it.label, what), []).append(i)
    rows = []
    for (group, label, what), idx in cells.items():
        other = scores[(groups == group) & (labels != label) & np.isfinite(scores)]
        if not len(other):
            continue
        s = scores[idx]
        # a fake is mis-ranked against every real scoring at least as high, a real against every fake at most as high
        wrong = [np.mean(other >= v) if label == 1 else np.mean(other <= v) for v in s]
        rows.append({"source": group, "label": "fake" if label else "real", "generator_or_corpus": what,
                     "clips": len(idx), "median_score": float(np.median(s)), "rank_error": float(np.mean(wrong))})
    return sorted(rows, key=lambda r: (-r["rank_error"] * r["clips"], r["source"], r["generator_or_corpus"]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a train output folder")
    p.add_argument("--model", default="gnn", help="the family whose <name>.oof.npy and card to read")
    p.add_argument("--data", required=True, help="the labelled source the run was trained on")
    p.add_argument("--exclude", action="append", metavar="COLUMN=VALUE", help="as given to train (repeatable)")
    p.add_argument("--top", type=int, default=15, help="rows to print, worst first (0 = all)")
    args = p.parse_args()
    run = Path(args.run)
    card = json.loads((run / f"{args.model}.json").read_text())
    rows = cell_rows(read_labelled(args.data, exclude_spec(args.exclude)), np.load(run / f"{args.model}.oof.npy"),
                     card["training_data"]["clips"])
    print("| held-out source | label | generator or corpus | clips | median score | rank error |\n"
          "|---|---|---|---|---|---|")
    for r in rows[: args.top or None]:
        print(f"| {r['source']} | {r['label']} | {r['generator_or_corpus']} | {r['clips']} | {r['median_score']:.2f} | "
              f"{r['rank_error']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
