"""Labelled audio from the three layouts users have: a manifest CSV, In-the-Wild's meta.csv,
or a folder with `real/` and `fake/` sub-folders. Labels: 1 = fake, 0 = real.

Each item carries a `group` used to split train/validation honestly: the source repository
when the manifest has one, else the speaker, else the parent folder. Paired utterances (the
same sentence as a real recording and as fakes) then never straddle the split.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..batch import AUDIO_EXTENSIONS
from ..errors import ConfigError

FAKE_LABELS = {"fake", "spoof", "1", "synthetic", "deepfake"}
REAL_LABELS = {"real", "bona-fide", "bonafide", "bona_fide", "0", "genuine"}


@dataclass
class Item:
    path: str
    label: int          # 1 = fake, 0 = real
    group: str          # split unit: source repo / speaker / folder
    meta: dict = field(default_factory=dict)


def _label(value: str, where: str) -> int:
    v = str(value).strip().lower()
    if v in FAKE_LABELS:
        return 1
    if v in REAL_LABELS:
        return 0
    raise ConfigError(f"{where}: unknown label {value!r} (use real/fake or bona-fide/spoof)")


def read_labelled(source: str | os.PathLike, exclude: dict[str, set[str]] | None = None) -> list[Item]:
    """Items from a manifest CSV, an In-the-Wild meta.csv or a real/ + fake/ folder.

    `exclude` drops rows whose column value is listed, e.g. {"attack_type": {"codec_resynthesis"}}.
    """
    p = Path(source)
    if p.is_dir():
        items = _from_folder(p)
    elif p.is_file() and p.suffix.lower() == ".csv":
        items = _from_csv(p)
    else:
        raise ConfigError(f"{p}: give a manifest CSV, a meta.csv or a folder with real/ and fake/ sub-folders")
    if exclude:
        items = [it for it in items if not any(str(it.meta.get(k, "")) in v for k, v in exclude.items())]
    if not items:
        raise ConfigError(f"{p}: no labelled audio found")
    return items


def _from_csv(p: Path) -> list[Item]:
    with open(p, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    cols = set(rows[0])
    base = p.parent
    items = []
    if {"path", "label"} <= cols:  # project manifest (../shared/data/manifest.csv)
        for i, r in enumerate(rows):
            group = r.get("source_repo") or r.get("speaker_or_corpus") or r.get("speaker") or str(Path(r["path"]).parent)
            items.append(Item(str(base / r["path"]), _label(r["label"], f"{p}:{i + 2}"), group, dict(r)))
    elif {"file", "label"} <= cols:  # In-the-Wild meta.csv: file, speaker, label (bona-fide / spoof)
        for i, r in enumerate(rows):
            items.append(Item(str(base / r["file"]), _label(r["label"], f"{p}:{i + 2}"),
                              r.get("speaker") or "unknown", dict(r)))
    else:
        raise ConfigError(f"{p}: expected columns path,label (manifest) or file,speaker,label (meta.csv); "
                          f"found {', '.join(sorted(cols))}")
    return items


def _from_folder(p: Path) -> list[Item]:
    items = []
    for name, label in (("real", 0), ("fake", 1)):
        sub = p / name
        if not sub.is_dir():
            raise ConfigError(f"{p}: a labelled folder needs real/ and fake/ sub-folders ({name}/ is missing)")
        for root, _, files in os.walk(sub):
            for f in sorted(files):
                if Path(f).suffix.lower() in AUDIO_EXTENSIONS:
                    fp = Path(root) / f
                    rel_parent = fp.parent.relative_to(sub)
                    group = str(rel_parent) if str(rel_parent) != "." else name
                    items.append(Item(str(fp), label, group, {"folder": name}))
    return items
