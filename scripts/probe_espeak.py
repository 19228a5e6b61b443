"""Probe a model set with espeak-ng speech in voices, variants and sentences that training never used.

The pool has no formant synthesis at all; `train --espeak N` adds espeak-ng clips from
core/training/synthetic_speech.py's TRAIN_* lists, and this probe draws from its PROBE_* lists and
its own hand-written sentences. Every clip is fake, so this measures only how many each model
catches at its own threshold, not an EER. Writes a markdown table.

    python scripts/probe_espeak.py --out reports/unseen_espeak.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.inference import Detector  # noqa: E402
from core.training.synthetic_speech import PROBE_SENTENCES, PROBE_VARIANTS, PROBE_VOICES, write_speech  # noqa: E402


def make_clips(folder: Path, n: int, seed: int) -> list[tuple[str, Path]]:
    """n espeak-ng clips: accent, variant, sentence pair, speed and pitch drawn at random (seeded)."""
    rng = random.Random(seed)
    clips = []
    for i in range(n):
        variant = rng.choice(PROBE_VARIANTS)
        voice = PROBE_VOICES[i % len(PROBE_VOICES)] + (f"+{variant}" if variant else "")
        text = " ".join(rng.sample(PROBE_SENTENCES, 2))
        speed, pitch = rng.randint(135, 185), rng.randint(30, 70)
        out = write_speech(folder / f"espeak_{i:03d}_{voice.replace('+', '_')}.wav", text, voice, speed, pitch)
        clips.append((f"{voice} s{speed} p{pitch}", out))
    return clips


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default="shipped", help="model set to probe (default: shipped)")
    ap.add_argument("--weights-dir", default=None,
                    help="probe the checkpoints, cards and ensemble card in this folder (a candidate set)")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="", help="markdown file to write (default: print only)")
    args = ap.parse_args()
    det = Detector.from_set(args.set, weights_dir=args.weights_dir, allow_download=False)
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp), args.clips, args.seed)
        results = list(det.score_many([(str(p), p) for _, p in clips]))
    bad = [r for r in results if r.error]
    ok = [r for r in results if not r.error]
    names = [m.name for m in det.models] + ["ensemble"]
    lines = [
        f"# Unseen generator probe: espeak-ng ({dt.date.today().isoformat()})", "",
        f"`python scripts/probe_espeak.py` scored {len(ok)} espeak-ng clips ({', '.join(PROBE_VOICES)} "
        f"accents, voice variants drawn from {len(PROBE_VARIANTS)}, random speed 135-185 wpm and pitch "
        f"30-70, two hand-written sentences each) with the **{det.set_name}** set"
        + (f" from `{args.weights_dir}`" if args.weights_dir else "") + ". The shared pool has "
        "no formant synthesis; `train --espeak` adds espeak-ng clips in other accents, other variants "
        "and other sentences. All clips are fake, so the table gives the share each model catches at "
        "its own threshold, not an EER." + (f" {len(bad)} clips failed to score." if bad else ""), "",
        "| model | threshold | mean P(fake) | median P(fake) | called fake |", "|---|---|---|---|---|"]
    for n in names:
        scores = [r.ensemble if n == "ensemble" else r.models[n] for r in ok]
        p = np.array([s.p_fake for s in scores if s.p_fake is not None], float)
        thr = scores[0].threshold
        lines.append(f"| {n} | {thr:.3f} | {p.mean():.3f} | {np.median(p):.3f} | "
                     f"{100 * (p >= thr).mean():.0f}% ({int((p >= thr).sum())}/{len(p)}) |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
