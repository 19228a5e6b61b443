"""Combine labelled manifests into one training manifest, with absolute paths, one split only,
and at most `cap` clips per (source, label) cell.

Why the cap: in the extended pool two sources hold over a third of the fakes (VoiceLoop's 1,686
WORLD-vocoder clips, Mimic 3's 2.6 hours); trained on as they are, a detector learns those
vocoders. A per-cell cap, drawn with a seed, keeps every source but weighs them closer to evenly.

    python -m core.training.manifests OUT.csv MANIFEST [MANIFEST ...] --split train --cap 150
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

COLUMNS = ("path", "label", "split", "source_repo", "generator", "speaker_or_corpus", "language", "attack_type")


def combine(manifests: list[str | Path], out: str | Path, split: str = "train", cap: int = 0, seed: int = 0) -> dict:
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for m in manifests:
        m = Path(m).resolve()
        with open(m, newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if r.get("split", "train") != split:
                    continue
                row = {c: r.get(c, "") for c in COLUMNS}
                row["path"] = str((m.parent / r["path"]).resolve())
                row["split"] = split
                row["source_repo"] = r.get("source_repo") or m.parent.name
                cells[(row["source_repo"], row["label"])].append(row)
    rng = np.random.default_rng(seed)
    rows = []
    for key in sorted(cells):
        cell = cells[key]
        if cap and len(cell) > cap:
            cell = [cell[i] for i in sorted(rng.choice(len(cell), cap, replace=False))]
        rows.extend(cell)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    labels = [r["label"] for r in rows]
    return {"clips": len(rows), "real": labels.count("real"), "fake": labels.count("fake"),
            "sources": len({r["source_repo"] for r in rows})}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.manifests", description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("manifests", nargs="+")
    p.add_argument("--split", default="train")
    p.add_argument("--cap", type=int, default=0, help="at most this many clips per (source, label); 0 = all")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(combine(a.manifests, a.out, a.split, a.cap, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
