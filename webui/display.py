"""What the Analyze page draws of the audio itself: a min/max waveform envelope and a mel
spectrogram in dB, computed in one streaming pass so a two-hour file never sits in memory.

Both are reduced to at most `max_columns` time columns (enough for a screen), whatever the
duration. No streamlit here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

from core.audio import TARGET_SR, AudioFacts
from core.decoding import open_audio

SPEC_N_FFT = 1024
SPEC_HOP = 160          # 10 ms (short files; longer ones get a longer hop)
SPEC_N_MELS = 96
DB_RANGE = 80.0         # the colour scale spans the loudest 80 dB


@dataclass
class AudioView:
    duration_s: float
    env_t: np.ndarray       # bucket centres (s)
    env_min: np.ndarray
    env_max: np.ndarray
    spec_t: np.ndarray      # column centres (s)
    spec_f: np.ndarray      # mel band centres (Hz)
    spec_db: np.ndarray     # [n_mels, columns], dB (10 log10 power), floored at max - DB_RANGE
    facts: AudioFacts


def mel_centres_hz(n_mels: int, f_min: float = 0.0, f_max: float = TARGET_SR / 2) -> np.ndarray:
    """Centre frequency of each HTK mel band (what torchaudio's filterbank uses)."""
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mels = np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2)[1:-1]
    return 700.0 * (10 ** (mels / 2595.0) - 1.0)


def _pool(x: np.ndarray, k: int, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Pool the last axis in groups of k; returns (pooled, leftover)."""
    n = (x.shape[-1] // k) * k
    head, rest = x[..., :n], x[..., n:]
    if n == 0:
        return x[..., :0], rest
    g = head.reshape(*head.shape[:-1], n // k, k)
    return {"min": g.min(-1), "max": g.max(-1), "mean": g.mean(-1)}[how], rest


def audio_view(source, name: str | None = None, max_columns: int = 1500) -> AudioView:
    """Decode `source` (path, bytes or stream) once and reduce it for display.

    Raises core.errors.AudioError for a file the engine cannot read.
    """
    with open_audio(source, name) as reader:   # decoded in a limited child, as for scoring
        hint = reader.facts.duration_s or 600.0
        # resolution chosen from the header's duration (re-pooled at the end in any case): a long
        # file gets a longer STFT hop (at most the FFT size, so no sample is skipped)
        hop = int(min(SPEC_N_FFT, max(SPEC_HOP, hint * TARGET_SR / (4 * max_columns))))
        mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=TARGET_SR, n_fft=SPEC_N_FFT, hop_length=hop, n_mels=SPEC_N_MELS,
            f_min=0.0, f_max=TARGET_SR / 2, center=False, power=2.0)
        env_k = max(16, int(math.ceil(hint * TARGET_SR / max_columns)))
        spec_k = max(1, int(math.ceil(hint * TARGET_SR / hop / max_columns)))
        env_min, env_max, spec_cols = [], [], []
        env_rest = np.zeros(0, np.float32)
        spec_carry = np.zeros(0, np.float32)       # samples not yet covered by a full STFT frame
        spec_rest = np.zeros((SPEC_N_MELS, 0), np.float32)
        n = 0
        for block in reader.blocks():
            n += len(block)
            x = np.concatenate([env_rest, block])
            lo, env_rest = _pool(x, env_k, "min")
            hi, _ = _pool(x, env_k, "max")
            env_min.append(lo)
            env_max.append(hi)
            y = np.concatenate([spec_carry, block])
            frames = (len(y) - SPEC_N_FFT) // hop + 1 if len(y) >= SPEC_N_FFT else 0
            if frames > 0:
                with torch.no_grad():
                    p = mel(torch.from_numpy(y[: (frames - 1) * hop + SPEC_N_FFT])).numpy()
                spec_carry = y[frames * hop:]
                pooled, spec_rest = _pool(np.concatenate([spec_rest, p], axis=1), spec_k, "mean")
                spec_cols.append(pooled)
            else:
                spec_carry = y
        facts = reader.facts
    if len(env_rest):
        env_min.append(env_rest.min(keepdims=True))
        env_max.append(env_rest.max(keepdims=True))
    if spec_rest.shape[1]:
        spec_cols.append(spec_rest.mean(axis=1, keepdims=True))
    emin = np.concatenate(env_min) if env_min else np.zeros(0, np.float32)
    emax = np.concatenate(env_max) if env_max else np.zeros(0, np.float32)
    k2 = max(1, int(math.ceil(len(emin) / max_columns)))
    if k2 > 1:  # the header under-stated the duration
        pad = (-len(emin)) % k2
        emin = np.pad(emin, (0, pad), mode="edge").reshape(-1, k2).min(1)
        emax = np.pad(emax, (0, pad), mode="edge").reshape(-1, k2).max(1)
    env_step = env_k * k2 / TARGET_SR
    env_t = (np.arange(len(emin)) + 0.5) * env_step
    power = np.concatenate(spec_cols, axis=1) if spec_cols else np.zeros((SPEC_N_MELS, 0), np.float32)
    k3 = max(1, int(math.ceil(power.shape[1] / max_columns)))
    if k3 > 1:
        pad = (-power.shape[1]) % k3
        power = np.pad(power, ((0, 0), (0, pad)), mode="edge").reshape(SPEC_N_MELS, -1, k3).mean(2)
    col_s = spec_k * k3 * hop / TARGET_SR
    spec_t = (np.arange(power.shape[1]) + 0.5) * col_s + SPEC_N_FFT / 2 / TARGET_SR
    db = 10.0 * np.log10(np.maximum(power, 1e-12))
    if db.size:
        db = np.maximum(db, db.max() - DB_RANGE)
    return AudioView(n / TARGET_SR, env_t, emin, emax, spec_t, mel_centres_hz(SPEC_N_MELS),
                     db.astype(np.float32), facts)
