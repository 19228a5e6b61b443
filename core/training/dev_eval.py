"""Score a held-out split (the extended pool's `dev_eval`) with a model set, as restored and as a
platform would pass it on, and report every model's and the ensemble's figures there.

Variants, applied to real and fake clips alike with Debian's ffmpeg:
  * `restored`: the files as they are;
  * `platform`: resampled to 24 kHz and encoded as mp3 at 64 kbit/s (a typical upload path);
  * `phone`: 300-3400 Hz band, 8 kHz, G.711 mu-law (a telephone line).

Scores are the engine's own (`Detector.score_many`, whole files in windows), written per clip to
a CSV so ensembles and bands can be computed from them afterwards without scoring again.

    python -m core.training.dev_eval RESTORED_DIR --out runs/dev_eval --variants restored,platform,phone
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from .datasets import read_labelled
from .unseen_report import col, figures, labels, read

VARIANTS = {
    "restored": None,
    "platform": ("mp3", ["-ac", "1", "-ar", "24000", "-c:a", "libmp3lame", "-b:a", "64k"]),
    "phone": ("wav", ["-ac", "1", "-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000", "-c:a", "pcm_mulaw"]),
}


def dev_items(restored: str | Path, split: str = "dev_eval", cap: int = 0, seed: int = 0):
    """The clips of one split; with `cap`, at most that many per (source, label), a seeded draw."""
    items = [it for it in read_labelled(Path(restored) / "manifest.csv") if it.meta.get("split") == split]
    if not cap:
        return items
    rng = np.random.default_rng(seed)
    cells: dict = {}
    for it in items:
        cells.setdefault((it.group, it.label), []).append(it)
    out = []
    for key in sorted(cells):
        c = cells[key]
        out += [c[i] for i in sorted(rng.choice(len(c), cap, replace=False))] if len(c) > cap else c
    return out


def variant_path(item, restored: Path, cache: Path, variant: str) -> Path:
    """The clip as `variant` passes it on (made once with ffmpeg, then reused)."""
    spec = VARIANTS[variant]
    if spec is None:
        return Path(item.path)
    ext, args = spec
    out = cache / variant / Path(item.meta["path"]).with_suffix(f".{ext}")
    if not out.exists():
        if shutil.which("ffmpeg") is None:
            raise SystemExit("ffmpeg is needed for the platform and phone variants (apt-get install ffmpeg)")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"{out.stem}.{os.getpid()}.tmp{out.suffix}")   # parallel runs never share one
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", item.path, *args, str(tmp)],
                       check=True)
        tmp.replace(out)
    return out


def score_variant(det, items, restored: Path, cache: Path, variant: str, out_csv: Path) -> Path:
    from tqdm import tqdm

    paths = [(it.meta["path"], variant_path(it, restored, cache, variant))
             for it in tqdm(items, desc=f"{variant} files")]
    names = [m.name for m in det.models]
    bar = tqdm(total=len(paths), desc=f"scoring {variant}")
    rows = []
    for it, res in zip(items, det.score_many([(str(p), p) for _, p in paths])):
        bar.update(1)
        row = {"path": it.meta["path"], "label": it.label, "source": it.group,
               "generator": it.meta.get("generator", ""), "error": res.error or ""}
        for n in names:
            ms = res.models.get(n)
            row[f"p_{n}"] = "" if ms is None or ms.p_fake is None else f"{ms.p_fake:.6f}"
        row["p_ensemble"] = "" if res.ensemble is None or res.ensemble.p_fake is None else f"{res.ensemble.p_fake:.6f}"
        rows.append(row)
    bar.close()
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out_csv


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.dev_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("restored", help="the folder restore.py wrote (holds manifest.csv)")
    p.add_argument("--out", required=True, help="folder for the per-clip score CSVs")
    p.add_argument("--variants", default="restored,platform,phone")
    p.add_argument("--cache", default=None, help="where the platform/phone copies go (default OUT/audio)")
    p.add_argument("--set", dest="set_name", default="shipped")
    p.add_argument("--models", default=None, help="comma-separated subset (default: the whole set)")
    p.add_argument("--weights-dir", default=None, help="looked at before the set's own folder")
    p.add_argument("--split", default="dev_eval", help="the manifest split to score (train: with --cap)")
    p.add_argument("--cap", type=int, default=0, help="at most this many clips per (source, label)")
    a = p.parse_args(argv)
    from ..inference import Detector

    det = Detector.from_set(a.set_name, models=a.models, weights_dir=a.weights_dir, allow_download=False)
    for name, why in det.loaded.skipped.items():
        print(f"warning: {name} not loaded: {why}", file=sys.stderr)
    restored, out = Path(a.restored), Path(a.out)
    items = dev_items(restored, a.split, a.cap)
    for v in a.variants.split(","):
        csv_path = score_variant(det, items, restored, Path(a.cache or out / "audio"), v, out / f"{v}.csv")
        rows = read(csv_path)
        for c in (k[2:] for k in rows[0] if k.startswith("p_")):
            f = figures(labels(rows), col(rows, c), None)
            print(f"{v:9s} {c:9s} EER {f['eer']:.3f}  AUC {f['auc']:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
