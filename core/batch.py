"""Many files -> one CSV row each (facts, one p_fake column per model, ensemble, verdict, error).

The row layout is shared by the CLI's `batch`, the dashboard's download and the Ray engine,
so the same file gives the same row whichever path scored it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .inference import FileResult

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aac", ".oga", ".wave", ".aif", ".aiff"}
FACT_COLUMNS = ["duration_s", "original_rate", "channels", "container", "codec", "peak_dbfs",
                "clipped_fraction", "silence_ratio"]


def csv_columns(model_names: Iterable[str]) -> list[str]:
    names = list(model_names)
    return (["file", "set"] + FACT_COLUMNS + [f"p_fake_{n}" for n in names]
            + ["p_fake_ensemble", "threshold_ensemble", "verdict", "error"])


def result_to_row(res: FileResult, model_names: Iterable[str]) -> dict:
    """Flatten a FileResult into the CSV row; model errors go into `error`, the rest still score."""
    row = {c: "" for c in csv_columns(model_names)}
    row["file"], row["set"] = res.file, res.set_name
    if res.facts is not None:
        f = res.facts
        row.update(duration_s=round(f.duration_s, 3), original_rate=f.original_rate, channels=f.channels,
                   container=f.container, codec=f.codec,
                   peak_dbfs=round(f.peak_dbfs, 2) if f.peak_dbfs != float("-inf") else "-inf",
                   clipped_fraction=round(f.clipped_fraction, 6), silence_ratio=round(f.silence_ratio, 4))
    errors = [res.error] if res.error else []
    for n in model_names:
        m = res.models.get(n)
        if m is None:
            continue
        if m.p_fake is not None:
            row[f"p_fake_{n}"] = round(m.p_fake, 6)
        elif m.error:
            errors.append(f"{n}: {m.error}")
    if res.ensemble is not None and res.ensemble.p_fake is not None:
        row["p_fake_ensemble"] = round(res.ensemble.p_fake, 6)
        row["threshold_ensemble"] = round(res.ensemble.threshold, 6)
        row["verdict"] = res.ensemble.verdict
    row["error"] = " | ".join(e.replace("\n", " ").replace("\r", " ") for e in errors)
    return row


def scan_audio(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Expand folders recursively into audio files (sorted, each once); files are kept as given.

    Symlink loops and unreadable folders are skipped rather than followed forever.
    """
    out: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=True, onerror=lambda e: None):
                try:
                    st = os.stat(root)
                except OSError:
                    dirs[:] = []
                    continue
                if (st.st_dev, st.st_ino) in seen_dirs:
                    dirs[:] = []
                    continue
                seen_dirs.add((st.st_dev, st.st_ino))
                dirs.sort()
                for f in sorted(files):
                    if Path(f).suffix.lower() in AUDIO_EXTENSIONS:
                        out.append(str(Path(root) / f))
        else:
            out.append(str(p))
    uniq = list(dict.fromkeys(out))
    return uniq
