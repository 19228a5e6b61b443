"""Source-filter resynthesis of real speech, as labelled fakes of the real clips' own speakers.

A parametric vocoder in the spirit of WORLD/STRAIGHT (the vocoders of statistical TTS): each
5 ms frame keeps only its pitch, a voicing decision and a cepstrally smoothed spectral envelope;
speech is rebuilt from a pulse train (voiced) or noise (unvoiced) shaped by that envelope. The
words, speaker and recording stay; what changes is exactly what a vocoder discards (the fine
phase and harmonic detail), so a detector gets real/fake pairs that differ only there.
`train --source-filter N` adds them; session 10 tried 150 on the gnn and it cost about 7 points
on the first held-out source in both of two paired runs, so the shipped set does not use it (README).
"""

from __future__ import annotations

import numpy as np
import torch

from ..audio import TARGET_SR as SR

HOP = 80              # 5 ms frames
N_FFT = 1024
PITCH_WINDOW = 640    # 40 ms: two periods of 50 Hz
F0_MIN, F0_MAX = 60.0, 400.0
LIFTER = 30           # cepstral coefficients kept: below the period of a 400 Hz voice (40 samples)


def _frames(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    """Centred frames [n_frames, size], as torch.stft(center=True) would cut them."""
    pad = np.pad(x, (size // 2, size // 2))
    n = 1 + len(x) // hop
    return pad[np.arange(size)[None, :] + hop * np.arange(n)[:, None]]   # the last frame ends at len(pad)


def pitch_track(x: np.ndarray, sr: int = SR, hop: int = HOP, threshold: float = 0.45) -> np.ndarray:
    """F0 in Hz per frame (0 = unvoiced) from the normalised autocorrelation peak in 60-400 Hz."""
    fr = _frames(x.astype(np.float64), PITCH_WINDOW, hop)
    fr = fr - fr.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(fr * np.hanning(PITCH_WINDOW), n=2 * PITCH_WINDOW, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :PITCH_WINDOW]
    energy = ac[:, 0]
    lo, hi = int(sr / F0_MAX), int(sr / F0_MIN)
    # the window's own autocorrelation tapers every lag: divide it out so peaks compare fairly
    taper = np.correlate(np.hanning(PITCH_WINDOW), np.hanning(PITCH_WINDOW), "full")[PITCH_WINDOW - 1:]
    norm = ac[:, lo:hi + 1] / np.maximum(energy[:, None], 1e-12) * (taper[0] / taper[lo:hi + 1])
    # the shortest lag near the best peak: a periodic signal correlates as well at 2, 3... periods
    first = (norm >= 0.85 * norm.max(axis=1, keepdims=True)).argmax(axis=1)
    ahead = np.minimum(first[:, None] + np.arange(8)[None, :], norm.shape[1] - 1)
    rows = np.arange(len(norm))
    best = ahead[rows, norm[rows[:, None], ahead].argmax(axis=1)]
    peak = norm[rows, best]
    lag = (best + lo).astype(np.float64)
    inner = (best > 0) & (best < norm.shape[1] - 1)
    i = np.where(inner)[0]
    a, b, c = norm[i, best[i] - 1], norm[i, best[i]], norm[i, best[i] + 1]
    denom = a - 2 * b + c
    lag[i] += np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    loud = energy > energy.max() * 1e-4
    return np.where((peak > threshold) & loud, sr / lag, 0.0)


def excitation(f0: np.ndarray, n: int, rng: np.random.Generator, hop: int = HOP,
               sr: int = SR, breath: float = 0.05) -> np.ndarray:
    """Pulses at the tracked pitch where voiced, white noise elsewhere; both flat at unit power."""
    t = np.arange(n) / hop
    f = np.interp(t, np.arange(len(f0)), f0)
    voiced = f > 0
    phase = np.cumsum(np.where(voiced, f, 0.0) / sr)
    pulses = np.zeros(n)
    at = np.nonzero(np.diff(np.floor(phase), prepend=0.0) > 0)[0]
    pulses[at] = np.sqrt(sr / np.maximum(f[at], F0_MIN))
    noise = rng.standard_normal(n)
    return np.where(voiced, pulses + breath * noise, noise)


def spectral_envelope(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Log magnitude [bins, frames] smoothed by keeping LIFTER cepstral coefficients."""
    spec = torch.stft(x, N_FFT, HOP, window=window, return_complex=True)
    cep = torch.fft.irfft(torch.log(spec.abs().clamp_min(1e-6)), n=N_FFT, dim=0)
    keep = torch.zeros(N_FFT, 1, dtype=cep.dtype)
    keep[:LIFTER] = 1.0
    keep[N_FFT - LIFTER + 1:] = 1.0
    return torch.fft.rfft(cep * keep, dim=0).real


def resynthesize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`x` (mono 16 kHz) rebuilt from its pitch and envelope, at the same length and RMS."""
    x = np.asarray(x, dtype=np.float64)
    window = torch.hann_window(N_FFT, dtype=torch.float64)
    log_env = spectral_envelope(torch.from_numpy(x), window)
    exc = torch.from_numpy(excitation(pitch_track(x), len(x), rng))
    spec = torch.stft(exc, N_FFT, HOP, window=window, return_complex=True)
    y = torch.istft(spec * torch.exp(log_env), N_FFT, HOP, window=window, length=len(x)).numpy()
    rms_in, rms_out = np.sqrt(np.mean(x ** 2)), np.sqrt(np.mean(y ** 2))
    y = y * (rms_in / rms_out if rms_out > 0 else 0.0)
    peak = np.abs(y).max()
    return (y / peak * 0.99 if peak > 0.99 else y).astype(np.float32)
