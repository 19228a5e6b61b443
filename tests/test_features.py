"""core/features.py: the seed's two front ends match an independent computation exactly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchaudio

from conftest import speechlike
from core.features import LOGLIN64, LOGMEL64, SEED_A, SEED_B, FrontEnd, compute


def seed_front_end_a(x: np.ndarray) -> torch.Tensor:
    """The seed's front end A, written from seed_models.md: [n_mels=50, 250]."""
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=2048, hop_length=512, n_mels=50)
    m = mel(torch.from_numpy(x).float())
    m = (m - m.mean()) / m.std()          # unbiased std over the whole tensor
    if m.shape[-1] < 250:
        m = torch.cat([m, torch.zeros(m.shape[0], 250 - m.shape[-1])], dim=-1)
    return m[:, :250]


def seed_front_end_b(x: np.ndarray) -> torch.Tensor:
    """The seed's front end B: MelSpectrogram() defaults, no log, no norm, 200 frames: [128, 200]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mel = torchaudio.transforms.MelSpectrogram()
    m = mel(torch.from_numpy(x).float())
    if m.shape[-1] < 200:
        m = torch.nn.functional.pad(m, (0, 200 - m.shape[-1]))
    return m[:, :200]


@pytest.mark.parametrize("seconds", [0.4, 3.0, 7.9, 12.5])
def test_seed_a_equals_independent(seconds):
    x = speechlike(seconds, seed=int(seconds * 10))
    got = SEED_A(torch.from_numpy(x)[None])
    ref = seed_front_end_a(x)
    assert got.shape == (1, 50, 250)
    torch.testing.assert_close(got[0], ref, atol=1e-5, rtol=1e-5)
    if seconds < SEED_A.window_s:  # short clips are zero-padded after the norm
        n = int(np.floor(len(x) / 512)) + 1
        assert torch.all(got[0, :, n:] == 0)


@pytest.mark.parametrize("seconds", [0.3, 2.0, 2.6, 9.0])
def test_seed_b_equals_independent(seconds):
    x = speechlike(seconds, seed=int(seconds * 10) + 1)
    got = SEED_B(torch.from_numpy(x)[None])
    ref = seed_front_end_b(x)
    assert got.shape == (1, 128, 200)
    torch.testing.assert_close(got[0], ref, atol=1e-6, rtol=1e-5)


def test_batch_equals_one_by_one():
    xs = [speechlike(SEED_A.window_s, seed=i) for i in range(4)]
    batch = SEED_A(torch.from_numpy(np.stack(xs)))
    for i, x in enumerate(xs):
        torch.testing.assert_close(batch[i], seed_front_end_a(x), atol=1e-5, rtol=1e-5)


def test_window_geometry():
    # a window of window_samples yields exactly `frames` centred frames (one more sample: one more frame)
    for fe in (SEED_A, SEED_B, LOGMEL64, LOGLIN64):
        x = torch.randn(1, fe.window_samples)
        from core.features import _filterbank

        assert _filterbank(fe)(x).shape[-1] == fe.frames
        assert fe.window_s == pytest.approx(fe.window_samples / 16000)
        assert _filterbank(fe)(torch.randn(1, fe.window_samples + 1)).shape[-1] == fe.frames + 1
    assert SEED_A.window_samples == 127_999 and SEED_B.window_samples == 39_999
    assert SEED_A.window_s == pytest.approx(8.0, abs=1e-4)
    assert SEED_B.window_s == pytest.approx(2.5, abs=1e-4)


def test_front_ends_are_hashable_configs():
    assert hash(SEED_A) != hash(SEED_B)
    with pytest.raises(Exception):
        SEED_A.n_mels = 64  # frozen
    assert {SEED_A: 1}[FrontEnd(**SEED_A.as_dict())] == 1


def test_logmel_is_log_normalised_and_tiles_short_clips():
    x = speechlike(1.0, seed=3)
    f = LOGMEL64(torch.from_numpy(x)[None])[0]
    assert f.shape == (64, 301)
    assert abs(float(f.mean())) < 1e-4 and float(f.std()) == pytest.approx(1.0, abs=1e-3)
    # gain invariance: a per-window z-norm of a log-mel removes a constant gain
    g = LOGMEL64(torch.from_numpy(x * 0.1)[None])[0]
    torch.testing.assert_close(f, g, atol=0.1, rtol=0)  # up to the log floor in empty bands
    # a short clip is tiled (no zero frames)
    assert not torch.any((f == f[0, -1]).all(dim=0))


def test_zero_std_does_not_divide_by_zero():
    z = compute(SEED_A, torch.zeros(1, 16000))
    assert torch.all(torch.isfinite(z))


def test_loglin_equals_an_independent_numpy_computation():
    """LOGLIN64 from first principles: centred Hann-400 frames in a 512 FFT, 64 triangles evenly
    spaced over 0-8 kHz, log, whole-window z-norm (unbiased std)."""
    x = speechlike(LOGLIN64.window_s, seed=7).astype(np.float64)   # one whole window: no tiling
    assert len(x) == LOGLIN64.window_samples
    xp = np.pad(x, 256, mode="reflect")
    win = np.zeros(512)
    win[56:456] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann, centred
    frames = np.stack([xp[i * 160:i * 160 + 512] * win for i in range(301)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2                     # [301, 257]
    freqs, pts = np.linspace(0, 8000, 257), np.linspace(0, 8000, 66)
    fb = np.stack([np.clip(np.minimum((freqs - pts[j]) / (pts[j + 1] - pts[j]),
                                      (pts[j + 2] - freqs) / (pts[j + 2] - pts[j + 1])), 0, None)
                   for j in range(64)])                                 # [64, 257]
    ref = np.log(fb @ power.T + 1e-6)
    ref = (ref - ref.mean()) / ref.std(ddof=1)
    got = LOGLIN64(torch.from_numpy(x).float()[None])[0].numpy()
    assert got.shape == (64, 301)
    np.testing.assert_allclose(got, ref, atol=2e-3)
    # the top octave (4-8 kHz) gets half the bands here, against 15 of 64 in LOGMEL64
    assert int((pts[1:-1] >= 4000).sum()) == 32
