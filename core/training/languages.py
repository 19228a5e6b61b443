"""Which languages trained a model, per class: written into its card, so the engine can say when a
file's language is one the model never saw on both sides.

Why per class: a language present only among the reals (Urdu in the extended pool) or only
among the fakes (Italian, Javanese, ...) teaches the model that the language itself is evidence.

    python -m core.training.languages assets/models/whisper.json \\
        ../shared/data/extended/manifest.csv:train ../shared/data/manifest.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path


def language_counts(manifests: list[str]) -> dict[str, dict[str, int]]:
    """{language: {"real": n, "fake": n}} over the manifests' rows. A manifest given as
    `path:split` counts only that split's rows; rows without a language count as "unknown"."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"real": 0, "fake": 0})
    for spec in manifests:
        path, _, split = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if split and row.get("split", "") != split:
                    continue
                label = row.get("label", "")
                if label in ("real", "fake"):
                    counts[(row.get("language") or "unknown").strip() or "unknown"][label] += 1
    return {k: counts[k] for k in sorted(counts, key=lambda k: -(counts[k]["real"] + counts[k]["fake"]))}


def write_into_card(card_path: str, manifests: list[str]) -> dict:
    card = json.loads(Path(card_path).read_text())
    card["training_languages"] = language_counts(manifests)
    card["training_languages_source"] = "rows of " + ", ".join(manifests) + " (the manifests that trained it)"
    Path(card_path).write_text(json.dumps(card, indent=2) + "\n")
    return card["training_languages"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.languages")
    p.add_argument("card")
    p.add_argument("manifests", nargs="+", help="manifest.csv, or manifest.csv:SPLIT")
    a = p.parse_args(argv)
    print(json.dumps(write_into_card(a.card, a.manifests)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
