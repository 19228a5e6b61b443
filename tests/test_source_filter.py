"""Source-filter resynthesis: pitch, voicing and envelope survive; the waveform does not."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import torchaudio.functional as AF

from core.training.source_filter import SR, pitch_track, resynthesize
from core.training.train import add_train_arguments, train_command
from core.training.trainset import Pool, source_filter_fakes
from test_train import _labelled_folder


def _vowel(f0: float, seconds: float = 1.5, formants=((700, 90), (1200, 110))) -> np.ndarray:
    """A pulse train at f0 through two resonances (by default 700 and 1200 Hz): a crude vowel."""
    n = int(seconds * SR)
    x = np.zeros(n)
    x[(np.arange(0, n, SR / f0)).astype(int)] = 1.0
    for hz, bw in formants:
        r, th = np.exp(-np.pi * bw / SR), 2 * np.pi * hz / SR
        a = torch.tensor([1.0, -2 * r * np.cos(th), r * r], dtype=torch.float64)
        x = AF.lfilter(torch.from_numpy(x), a, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), clamp=False).numpy()
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _band_share(x: np.ndarray, lo: float, hi: float) -> float:
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(p[(f >= lo) & (f < hi)].sum() / p.sum())


@pytest.mark.parametrize("f0", [85.0, 140.0, 230.0, 340.0])
def test_pitch_track_finds_the_period_not_a_multiple_of_it(f0):
    track = pitch_track(_vowel(f0))
    voiced = track[track > 0]
    assert len(voiced) > 0.9 * len(track)
    assert np.median(voiced) == pytest.approx(f0, rel=0.02)


def test_noise_and_silence_are_unvoiced():
    rng = np.random.default_rng(0)
    assert (pitch_track(0.1 * rng.standard_normal(SR)) == 0).all()
    assert (pitch_track(np.zeros(SR)) == 0).all()


def test_resynthesis_keeps_pitch_envelope_and_level_but_not_the_waveform():
    x = _vowel(150.0)
    y = resynthesize(x, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.5                         # a new waveform
    assert np.sqrt(np.mean(y ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2)), rel=0.05)
    assert np.median(pitch_track(y)[pitch_track(y) > 0]) == pytest.approx(150.0, rel=0.02)
    # the envelope follows the resonances: low ones stay low, high ones stay high
    high = _vowel(150.0, formants=((2600, 150), (3400, 200)))
    y_high = resynthesize(high, np.random.default_rng(1))
    assert _band_share(x, 500, 1500) > 0.8 and _band_share(y, 500, 1500) > 0.8
    assert _band_share(high, 2000, 4000) > 0.8 and _band_share(y_high, 2000, 4000) > 0.8


def test_fakes_come_from_real_clips_of_their_own_group():
    rng = np.random.default_rng(0)
    audio = [_vowel(120 + 10 * i, 1.0) for i in range(6)] + [rng.standard_normal(SR).astype(np.float32)]
    pool = Pool(audio, np.array([0, 0, 0, 0, 1, 1, 0]), ["a", "a", "b", "b", "a", "b", "b"],
                [f"c{i}" for i in range(7)], ["pool"] * 7, [{}] * 7)
    fakes = source_filter_fakes(pool, 3, seed=4, quiet=True)
    assert list(fakes.labels) == [1, 1, 1] and set(fakes.origin) == {"sourcefilter"}
    sources = [int(n.split("#")[0][1:]) for n in fakes.names]
    assert all(pool.labels[s] == 0 for s in sources) and len(set(sources)) == 3
    assert fakes.groups == [pool.groups[s] for s in sources]
    again = source_filter_fakes(pool, 3, seed=4, quiet=True)
    assert again.names == fakes.names and all(np.array_equal(a, b) for a, b in zip(again.audio, fakes.audio))
    assert len(source_filter_fakes(pool, 50, seed=4, quiet=True).audio) == 5   # at most every real clip


def test_train_records_source_filter_fakes_and_never_validates_on_them(tmp_path):
    data = _labelled_folder(tmp_path / "data", per_group=8, groups=("a", "b"))
    out = tmp_path / "out"
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    args = p.parse_args(["--data", str(data), "--models", "lstm", "--out", str(out), "--epochs", "1",
                         "--variants", "1", "--no-griffin-lim", "--cache", "", "--quiet", "--report", "",
                         "--source-filter", "4"])
    assert train_command(args) == 0
    assert "added 4 source-filter resynthesised fakes" in (out / "train.log").read_text()
    card = json.loads((out / "lstm.json").read_text())
    assert card["training_data"]["added_fakes_source_filter"] == 4 and card["training_data"]["clips"] == 32
    assert all(v["n_real"] == 8 and v["n_fake"] == 8 for v in card["validation"]["per_group"].values())
