"""A labelled manifest decoded once into a cache of 16 kHz mono clips, so every run after the
first reads arrays instead of decoding thousands of files of mixed formats again.

Layout of a cache folder: `clips/<key>.npy` (float16, at most `MAX_CACHED_S` seconds from the
start of each clip) and `index.csv`: one row per manifest row with its label, split, group
(source repository), generator, language, attack type and the facts of the original file that
the shortcut audit reads (duration, original rate, codec, silence, loudness, bandwidth).
Building is resumable: clips already in `clips/` are not decoded again.

    python -m core.training.decoded_pool MANIFEST CACHE_DIR      # e.g. /work/extended_data/manifest.csv
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import TARGET_SR, load_audio
from .datasets import read_labelled

MAX_CACHED_S = 30.0
INDEX_COLUMNS = ("key", "path", "label", "split", "group", "generator", "language", "attack_type",
                 "speaker_or_corpus", "duration_s", "original_rate", "codec", "container", "silence_ratio",
                 "peak_dbfs", "bandwidth_hz", "cached_samples", "error")


@dataclass
class CachedClip:
    key: str
    label: int
    split: str
    group: str
    meta: dict

    def audio(self, cache: Path) -> np.ndarray:
        return np.load(Path(cache) / "clips" / f"{self.key}.npy").astype(np.float32)


def clip_key(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:20]


def build(manifest: str | Path, cache: str | Path, progress: bool = True) -> Path:
    """Decode every row of `manifest` into `cache`; returns the index path. Failures are rows
    with an `error`, never a stop."""
    from tqdm import tqdm

    cache = Path(cache)
    (cache / "clips").mkdir(parents=True, exist_ok=True)
    items = read_labelled(manifest)
    rows = []
    for it in tqdm(items, disable=not progress, desc="decoding", unit="clip"):
        rel = it.meta.get("path", it.path)
        key = clip_key(rel)
        out = cache / "clips" / f"{key}.npy"
        row = {"key": key, "path": rel, "label": it.label, "split": it.meta.get("split", "train"),
               "group": it.group, **{c: it.meta.get(c, "") for c in
                                     ("generator", "language", "attack_type", "speaker_or_corpus")}}
        try:
            a = load_audio(it.path)
            x = a.samples[: int(MAX_CACHED_S * TARGET_SR)]
            if not out.exists():
                tmp = out.with_suffix(".tmp.npy")
                np.save(tmp, x.astype(np.float16))
                tmp.replace(out)
            f = a.facts
            row.update(duration_s=round(f.duration_s, 4), original_rate=f.original_rate, codec=f.codec,
                       container=f.container, silence_ratio=round(f.silence_ratio, 4),
                       peak_dbfs=round(f.peak_dbfs, 2), bandwidth_hz=round(f.bandwidth_hz, 1),
                       cached_samples=len(x), error="")
        except Exception as e:  # one bad clip is one error row
            row.update(error=f"{type(e).__name__}: {e}"[:200])
        rows.append(row)
    index = cache / "index.csv"
    with open(index, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=INDEX_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return index


def read_index(cache: str | Path, split: str | None = None) -> list[CachedClip]:
    """The decoded clips of a cache (rows with an error left out), optionally of one split."""
    with open(Path(cache) / "index.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if not r["error"]]
    return [CachedClip(r["key"], int(r["label"]), r["split"], r["group"], r) for r in rows
            if split is None or r["split"] == split]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.decoded_pool", description=__doc__.split("\n\n")[0])
    p.add_argument("manifest")
    p.add_argument("cache")
    a = p.parse_args(argv)
    index = build(a.manifest, a.cache)
    bad = sum(1 for r in csv.DictReader(open(index)) if r["error"])
    print(f"{index}: {bad} clip(s) could not be decoded", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
