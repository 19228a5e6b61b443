"""espeak-ng speech (formant and Klatt synthesis) as labelled fakes of a kind the pool lacks.

The shipped detectors learned neural-vocoder traces and call plain espeak-ng speech real
(P(fake) about 0.02, reports/unseen_espeak.md). `train --espeak N` adds it as fakes drawn from
TRAIN_VOICES x TRAIN_VARIANTS with template sentences; session 4 tried that on gnn and resnet
and it cost 4-5 points of mean LOSO EER, so the shipped set does not use it (README). The
probe (scripts/probe_espeak.py) keeps other accents, variants and hand-written sentences apart.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..audio import load_audio
from ..errors import ConfigError

TRAIN_VOICES = ["en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-x-gbcwmd"]
TRAIN_VARIANTS = ["", "m1", "m2", "m3", "m4", "f1", "f2", "f3", "klatt", "klatt2", "whisper", "croak",
                  "Annie", "Andy", "Michael", "Linda", "Mr_Serious", "Robosoft", "Steph", "max"]
PROBE_VOICES = ["en-gb-scotland", "en-gb-x-gbclan", "en-us-nyc"]
PROBE_VARIANTS = ["", "m5", "m7", "f4", "f5", "klatt3", "Alicia", "Paul", "Jacky", "John"]
PROBE_SENTENCES = [
    "The committee will publish its findings on Thursday morning.",
    "I never said that, and I would like the recording checked.",
    "Please transfer the money before the end of the business day.",
    "Our reporters spoke to residents who left the area last week.",
    "The results were better than anyone on the team expected.",
    "Call me back when you get this message, it is rather urgent.",
    "Voters in the northern districts waited for hours in the rain.",
    "We have reviewed the contract and found nothing unusual in it.",
    "The train to the airport leaves every fifteen minutes after six.",
    "He told the audience that the plan would be announced next month.",
]

_SUBJECTS = ["the minister", "my brother", "our bank", "the company", "a spokesman", "the police",
             "your account manager", "the mayor", "the doctor", "this station", "the board", "my colleague"]
_VERBS = ["confirmed", "denied", "announced", "postponed", "approved", "questioned", "cancelled",
          "reported", "explained", "rejected", "signed", "discussed"]
_OBJECTS = ["the new budget", "the payment", "the meeting on Friday", "the results of the inquiry",
            "a change to the schedule", "the contract", "the vote", "the deal with the suppliers",
            "an urgent transfer", "the election timetable", "the merger", "the interview"]
_TAILS = ["this morning", "after a long debate", "without further comment", "in a short statement",
          "late last night", "to the surprise of many", "for the second time", "on Tuesday",
          "before the deadline", "in front of reporters"]


def training_sentence(rng: np.random.Generator) -> str:
    """A news- or phone-style English sentence from templates (never one of the probe's)."""
    pick = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    return f"{pick(_SUBJECTS).capitalize()} {pick(_VERBS)} {pick(_OBJECTS)} {pick(_TAILS)}."


def espeak_exe() -> str:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if not exe:
        raise ConfigError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return exe


def write_speech(path: Path, text: str, voice: str, speed: int = 160, pitch: int = 50) -> Path:
    """espeak-ng's WAV of `text` (voice as `accent` or `accent+variant`) at `path`."""
    subprocess.run([espeak_exe(), "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                   check=True, capture_output=True, timeout=60)
    return path


def synthesize(text: str, voice: str, variant: str = "", speed: int = 160, pitch: int = 50) -> np.ndarray:
    """espeak-ng speech as mono 16 kHz float32 (resampled by core.audio like any input)."""
    with tempfile.TemporaryDirectory() as tmp:
        v = f"{voice}+{variant}" if variant else voice
        return load_audio(write_speech(Path(tmp) / "speech.wav", text, v, speed, pitch)).samples


def training_clips(n: int, seed: int) -> Iterator[tuple[np.ndarray, dict]]:
    """n clips over the training voices and variants, two or three sentences each (seeded)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        voice, variant = TRAIN_VOICES[i % len(TRAIN_VOICES)], TRAIN_VARIANTS[int(rng.integers(len(TRAIN_VARIANTS)))]
        text = " ".join(training_sentence(rng) for _ in range(int(rng.integers(2, 4))))
        speed, pitch = int(rng.integers(130, 190)), int(rng.integers(25, 75))
        yield (synthesize(text, voice, variant, speed, pitch),
               {"attack_type": "formant_synthesis", "generator": "espeak-ng",
                "voice": f"{voice}+{variant}" if variant else voice, "speed": speed, "pitch": pitch})
