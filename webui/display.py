"""What the Analyze page draws of the audio itself: a min/max waveform envelope (of the 16 kHz
audio the models hear) and a mel spectrogram of the file at its own sample rate, up to its
Nyquist frequency, computed in one streaming decode so a two-hour file never sits in memory.

The spectrogram is in dB relative to the file's loudest cell with a fixed floor, so silence
and empty bands are drawn as silence (the floor colour) whatever the file's level; the models
see only 0-8 kHz, which the plot marks. Both views are reduced to at most `max_columns` time
columns (enough for a screen), whatever the duration. No streamlit here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

from core.audio import TARGET_SR, AudioFacts
from core.decoding import open_audio

DB_FLOOR = -80.0          # dB below the file's peak drawn as silence (the colour scale's bottom)
MODEL_BAND_HZ = TARGET_SR / 2   # what the models see: the audio is resampled to 16 kHz
SPEC_WINDOW_S = 0.064     # STFT window, about 64 ms at any rate
SPEC_MIN_HOP_S = 0.010    # 10 ms columns for short files; a long file gets a longer hop
STFT_CHUNK_FRAMES = 512   # STFT frames computed at once: bounds memory at high rates


@dataclass
class AudioView:
    duration_s: float
    env_t: np.ndarray       # bucket centres (s)
    env_min: np.ndarray
    env_max: np.ndarray
    spec_t: np.ndarray      # column centres (s)
    spec_f: np.ndarray      # mel band centres (Hz), up to spec_rate / 2
    spec_db: np.ndarray     # [n_mels, columns], dB relative to the loudest cell, floored at DB_FLOOR
    facts: AudioFacts
    spec_rate: int = TARGET_SR   # the rate the spectrogram was computed at (the file's own)

    @property
    def nyquist_hz(self) -> float:
        return self.spec_rate / 2


def mel_centres_hz(n_mels: int, f_min: float = 0.0, f_max: float = TARGET_SR / 2) -> np.ndarray:
    """Centre frequency of each HTK mel band (what torchaudio's filterbank uses)."""
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mels = np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2)[1:-1]
    return 700.0 * (10 ** (mels / 2595.0) - 1.0)


def spectrogram_geometry(rate: int, hint_s: float, max_columns: int) -> tuple[int, int, int]:
    """(n_fft, hop, n_mels) for a file at `rate`: a ~64 ms window (a power of two), a hop that
    grows with the duration (never past the window, so no sample is skipped), and fewer mel
    bands at low rates so no band falls between two FFT bins."""
    n_fft = int(2 ** round(math.log2(max(64.0, SPEC_WINDOW_S * rate))))
    hop = int(min(n_fft, max(SPEC_MIN_HOP_S * rate, hint_s * rate / (4 * max_columns))))
    n_mels = 128 if rate >= 22_050 else 96 if rate >= 16_000 else 64
    return n_fft, max(1, hop), n_mels


def _pool(x: np.ndarray, k: int, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Pool the last axis in groups of k; returns (pooled, leftover)."""
    n = (x.shape[-1] // k) * k
    head, rest = x[..., :n], x[..., n:]
    if n == 0:
        return x[..., :0], rest
    g = head.reshape(*head.shape[:-1], n // k, k)
    return {"min": g.min(-1), "max": g.max(-1), "mean": g.mean(-1)}[how], rest


def _repool(x: np.ndarray, max_columns: int, how: str) -> tuple[np.ndarray, int]:
    """Pool the last axis again when the header under-stated the duration; returns (x, factor)."""
    k = max(1, int(math.ceil(x.shape[-1] / max_columns)))
    if k == 1:
        return x, 1
    pad = (-x.shape[-1]) % k
    x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)], mode="edge")
    return {"min": np.min, "max": np.max, "mean": np.mean}[how](x.reshape(*x.shape[:-1], -1, k), axis=-1), k


class _Envelope:
    """Min/max of the 16 kHz stream in buckets of `k` samples."""

    def __init__(self, hint_s: float, max_columns: int):
        self.k = max(16, int(math.ceil(hint_s * TARGET_SR / max_columns)))
        self.rest = np.zeros(0, np.float32)
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []

    def push(self, block: np.ndarray) -> None:
        x = np.concatenate([self.rest, block])
        lo, self.rest = _pool(x, self.k, "min")
        hi, _ = _pool(x, self.k, "max")
        self.lo.append(lo)
        self.hi.append(hi)

    def finish(self, max_columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(self.rest):
            self.lo.append(self.rest.min(keepdims=True))
            self.hi.append(self.rest.max(keepdims=True))
        lo = np.concatenate(self.lo) if self.lo else np.zeros(0, np.float32)
        hi = np.concatenate(self.hi) if self.hi else np.zeros(0, np.float32)
        lo, k2 = _repool(lo, max_columns, "min")
        hi, _ = _repool(hi, max_columns, "max")
        return (np.arange(len(lo)) + 0.5) * self.k * k2 / TARGET_SR, lo, hi


class _Spectrogram:
    """Mel power of a stream of mono blocks at `rate`, pooled to about `max_columns` columns.

    Memory stays bounded: at most one block plus STFT_CHUNK_FRAMES frames are held unpooled."""

    def __init__(self, rate: int, hint_s: float, max_columns: int):
        self.rate = rate
        self.n_fft, self.hop, self.n_mels = spectrogram_geometry(rate, hint_s, max_columns)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="At least one mel filterbank")
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=rate, n_fft=self.n_fft, hop_length=self.hop, n_mels=self.n_mels,
                f_min=0.0, f_max=rate / 2, center=False, power=2.0)
        self.k = max(1, int(math.ceil(hint_s * rate / self.hop / max_columns)))
        self.carry = np.zeros(0, np.float32)          # samples not yet covered by a full frame
        self.rest = np.zeros((self.n_mels, 0), np.float32)
        self.cols: list[np.ndarray] = []

    def push(self, block: np.ndarray) -> None:
        y = np.concatenate([self.carry, np.asarray(block, np.float32)])
        frames = (len(y) - self.n_fft) // self.hop + 1 if len(y) >= self.n_fft else 0
        for f0 in range(0, frames, STFT_CHUNK_FRAMES):
            n = min(STFT_CHUNK_FRAMES, frames - f0)
            seg = y[f0 * self.hop: f0 * self.hop + (n - 1) * self.hop + self.n_fft]
            with torch.no_grad():
                p = self.mel(torch.from_numpy(np.ascontiguousarray(seg))).numpy()
            pooled, self.rest = _pool(np.concatenate([self.rest, p], axis=1), self.k, "mean")
            self.cols.append(pooled)
        self.carry = y[frames * self.hop:]

    def finish(self, max_columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(column times s, band centres Hz, dB relative to the loudest cell, floored)."""
        if self.rest.shape[1]:
            self.cols.append(self.rest.mean(axis=1, keepdims=True))
        power = np.concatenate(self.cols, axis=1) if self.cols else np.zeros((self.n_mels, 0), np.float32)
        power, k2 = _repool(power, max_columns, "mean")
        col_s = self.k * k2 * self.hop / self.rate
        t = (np.arange(power.shape[1]) + 0.5) * col_s + self.n_fft / 2 / self.rate
        return t, mel_centres_hz(self.n_mels, 0.0, self.rate / 2), relative_db(power)


def relative_db(power: np.ndarray) -> np.ndarray:
    """10 log10(power / the loudest cell), floored at DB_FLOOR: digital silence and empty bands
    sit at the floor, and a quiet file is not stretched to fill the colour scale."""
    peak = float(power.max()) if power.size else 0.0
    if peak <= 0:
        return np.full(power.shape, DB_FLOOR, np.float32)
    db = 10.0 * np.log10(np.maximum(power / peak, 1e-30))
    return np.maximum(db, DB_FLOOR).astype(np.float32)


def audio_view(source, name: str | None = None, max_columns: int = 1500) -> AudioView:
    """Decode `source` (path, bytes or stream) once and reduce it for display: the waveform from
    the 16 kHz stream, the spectrogram from the same decode at the file's own rate.

    Raises core.errors.AudioError for a file the engine cannot read.
    """
    with open_audio(source, name) as reader:   # decoded in a limited child, as for scoring
        hint = reader.facts.duration_s or 600.0
        env = _Envelope(hint, max_columns)
        spec = _Spectrogram(reader.original_rate, hint, max_columns)
        n = 0
        for block in reader.blocks(native=spec.push):
            n += len(block)
            env.push(block)
        facts = reader.facts
    env_t, emin, emax = env.finish(max_columns)
    spec_t, spec_f, db = spec.finish(max_columns)
    return AudioView(n / TARGET_SR, env_t, emin, emax, spec_t, spec_f, db, facts, spec.rate)
