"""Training-time augmentation that attacks the pool's known shortcuts (see the data README).

Every transform is applied to real and fake clips alike, so none of them can mark a class:
random crops of a fixed length (clip length stops being a cue), random leading/trailing
silence, gain, additive noise, band-limiting (8 kHz-style telephone bandwidth stops meaning
"real"), and lossy round-trips through mp3 and opus (the codec stops deciding the verdict).
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from ..audio import TARGET_SR


def random_crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random `n`-sample crop; a shorter clip is tiled first (as the log-mel front end does)."""
    if len(x) < n:
        x = np.tile(x, -(-n // max(len(x), 1)))
    start = int(rng.integers(0, len(x) - n + 1))
    return x[start:start + n]


def add_silence(x: np.ndarray, rng: np.random.Generator, max_s: float = 0.6) -> np.ndarray:
    """Replace a random head and/or tail stretch by near-silence (keeps the length)."""
    x = x.copy()
    floor = 10 ** (rng.uniform(-90, -55) / 20)
    for side in ("head", "tail"):
        if rng.random() < 0.5:
            k = int(rng.uniform(0.05, max_s) * TARGET_SR)
            k = min(k, len(x) // 3)
            quiet = (rng.standard_normal(k) * floor).astype(np.float32)
            if side == "head":
                x[:k] = quiet
            else:
                x[len(x) - k:] = quiet
    return x


def gain(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    peak = float(np.abs(x).max()) or 1.0
    target_db = rng.uniform(-30, -0.5)
    return (x * (10 ** (target_db / 20) / peak)).astype(np.float32)


def add_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    snr = rng.uniform(10, 45)
    p_sig = float((x.astype(np.float64) ** 2).mean()) or 1e-8
    noise = rng.standard_normal(len(x))
    if rng.random() < 0.5:  # pink-ish: integrate white noise a little
        noise = np.convolve(noise, np.ones(8) / 8, mode="same")
    noise *= np.sqrt(p_sig / (10 ** (snr / 10)) / (noise.var() + 1e-12))
    return (x + noise).astype(np.float32)


def band_limit(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down- and up-sample through a lower rate (telephone / 8-11 kHz / 22 kHz style)."""
    low = int(rng.choice([8000, 11025, 12000]))
    y = AF.resample(torch.from_numpy(x), TARGET_SR, low)
    return AF.resample(y, low, TARGET_SR).numpy()[: len(x)].astype(np.float32)


def soundfile_roundtrip(x: np.ndarray, fmt: str, subtype: str, compression_level: float | None = None) -> np.ndarray:
    """Encode `x` in memory with libsndfile (via soundfile) and decode it back at 16 kHz, mono,
    at the same length. Raises what libsndfile raises (an encoder missing from its build)."""
    buf = io.BytesIO()
    peak = float(np.abs(x).max())
    y = x / peak * 0.95 if peak > 0.95 else x
    extra = {} if compression_level is None else {"compression_level": float(compression_level)}
    sf.write(buf, y, TARGET_SR, format=fmt, subtype=subtype, **extra)
    buf.seek(0)
    z, rate = sf.read(buf, dtype="float32")
    if z.ndim > 1:
        z = z.mean(axis=1)
    if rate != TARGET_SR:
        z = AF.resample(torch.from_numpy(z), rate, TARGET_SR).numpy()
    if len(z) < len(x):
        z = np.pad(z, (0, len(x) - len(z)))
    return z[: len(x)].astype(np.float32)


CODECS = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS"), "vorbis": ("OGG", "VORBIS")}


def codec_roundtrip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An mp3, opus or vorbis round-trip at libsndfile's default quality."""
    return soundfile_roundtrip(x, *CODECS[str(rng.choice(list(CODECS)))])


def augment(x: np.ndarray, n: int, rng: np.random.Generator, strength: float = 1.0,
            band_limit_p: float | None = None) -> np.ndarray:
    """One random training view of a clip: crop, then each transform with some probability.
    `band_limit_p` overrides the band-limit's (0.3 x strength): real narrow-band speech (the pool's
    8 kHz digits) is what the detectors most often call fake."""
    y = random_crop(x, n, rng)
    if rng.random() < 0.3 * strength:
        y = add_silence(y, rng)
    if rng.random() < (0.3 * strength if band_limit_p is None else band_limit_p):
        y = band_limit(y, rng)
    if rng.random() < 0.3 * strength:
        y = add_noise(y, rng)
    if rng.random() < 0.35 * strength:
        try:
            y = codec_roundtrip(y, rng)
        except Exception:  # an encoder missing from this libsndfile build: skip the round-trip
            pass
    if rng.random() < 0.8:
        y = gain(y, rng)
    return np.nan_to_num(y).astype(np.float32)
