"""Channel augmentation: what rooms, phones and platforms do to a recording, applied to real
and fake clips alike so that a channel stops being evidence of either.

Real recordings reach analysts through rooms, microphones, phone lines and upload pipelines;
in the training pools, the channel often tracks the label instead (studio fakes, interview
reals). Each transform here takes and returns mono float32 at 16 kHz of the same length:

* `convolutive`: a random smooth equaliser (RawBoost's convolutive noise: a microphone or a
  loudspeaker's colouring), as a linear-phase FIR filter;
* `impulsive`: sparse clicks and crackle at random samples (RawBoost's impulsive noise);
* `reverb`: a synthetic room impulse response (direct path, then exponentially decaying noise
  with a random RT60 of 0.15-0.9 s);
* `background`: coloured noise (white to brown) at a random SNR of 5-30 dB;
* `phone`: 300-3400 Hz band, 8 kHz, G.711 mu-law, back to 16 kHz;
* `lossy`: an mp3 or opus round-trip at a low bit rate (`augment.codec_roundtrip`).

`chain` applies one to three of them in random order.
"""

from __future__ import annotations

import numpy as np

from ..audio import TARGET_SR
from .augment import CODECS, codec_roundtrip, soundfile_roundtrip


def _fft_filter(x: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Filter by a zero-phase magnitude response sampled on the rfft grid of a padded frame."""
    n = 1 << int(np.ceil(np.log2(len(x) + 1)))
    spec = np.fft.rfft(x, n)
    grid = np.linspace(0, 1, len(spec))
    g = np.interp(grid, np.linspace(0, 1, len(gains)), gains)
    return np.fft.irfft(spec * g, n)[: len(x)].astype(np.float32)


def convolutive(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    bands = int(rng.integers(4, 12))
    db = rng.uniform(-12, 6, bands)
    db = np.convolve(db, np.ones(2) / 2, mode="same")          # smooth: an equaliser, not a comb
    y = _fft_filter(x, 10 ** (db / 20))
    return _match_rms(y, x)


def impulsive(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y = x.copy()
    k = max(1, int(len(x) * rng.uniform(1e-4, 2e-3)))
    at = rng.integers(0, len(x), k)
    peak = float(np.abs(x).max()) or 0.1
    y[at] += (rng.uniform(0.2, 1.0, k) * peak * rng.choice([-1, 1], k)).astype(np.float32)
    return np.clip(y, -1, 1).astype(np.float32)


def reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.15, 0.9)
    n = int(min(rt60, 0.8) * TARGET_SR)
    t = np.arange(n) / TARGET_SR
    rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)       # -60 dB at rt60
    rir[: int(0.002 * TARGET_SR)] = 0
    rir[0] = 1.0 / max(rng.uniform(0.3, 1.0), 1e-3)             # the direct path, at a random distance ratio
    m = len(x) + n - 1
    size = 1 << int(np.ceil(np.log2(m)))
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(rir, size), size)[: len(x)]
    return _match_rms(y.astype(np.float32), x)


def background(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    colour = rng.uniform(0, 2)                                   # 0 white, 1 pink, 2 brown
    spec = np.fft.rfft(rng.standard_normal(len(x)))
    f = np.maximum(np.arange(len(spec)), 1)
    noise = np.fft.irfft(spec / f ** (colour / 2), len(x))
    snr = rng.uniform(5, 30)
    p_sig = float(np.mean(x.astype(np.float64) ** 2)) or 1e-8
    noise *= np.sqrt(p_sig / 10 ** (snr / 10) / (np.mean(noise ** 2) + 1e-12))
    return np.clip(x + noise, -1, 1).astype(np.float32)


def mu_law(x: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """G.711-style 8-bit mu-law quantisation (encode, round to 256 levels, decode)."""
    y = np.sign(x) * np.log1p(mu * np.abs(np.clip(x, -1, 1))) / np.log1p(mu)
    q = np.round((y + 1) / 2 * 255) / 255 * 2 - 1
    return (np.sign(q) * ((1 + mu) ** np.abs(q) - 1) / mu).astype(np.float32)


def phone(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / TARGET_SR)
    lo, hi = rng.uniform(200, 400), rng.uniform(3000, 3600)
    spec[(f < lo) | (f > hi)] = 0
    y = np.fft.irfft(spec, len(x))
    peak = np.abs(y).max() + 1e-9
    narrow = mu_law(y[::2] / peak) * peak                       # 8 kHz (the band is below 4 kHz), mu-law
    spec8 = np.fft.rfft(narrow)
    spec16 = np.zeros(len(x) // 2 + 1, complex)
    spec16[: len(spec8)] = spec8 * (len(x) / len(narrow))       # band-limited back to 16 kHz
    up = np.fft.irfft(spec16, len(x))
    return _match_rms(up.astype(np.float32), x)


def lossy(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An mp3 or opus round-trip at a low bit rate: compression level 0.3-0.9 (at 16 kHz mono,
    mp3 at 0.5 is about 28 kbit/s)."""
    kind = CODECS["mp3"] if rng.random() < 0.5 else CODECS["opus"]
    try:
        return soundfile_roundtrip(x, *kind, compression_level=rng.uniform(0.3, 0.9))
    except Exception:   # an encoder missing from this libsndfile build: the default round-trip
        try:
            return codec_roundtrip(x, rng)
        except Exception:
            return x


TRANSFORMS = {"convolutive": convolutive, "impulsive": impulsive, "reverb": reverb, "background": background,
              "phone": phone, "lossy": lossy}


def chain(x: np.ndarray, rng: np.random.Generator, max_steps: int = 3) -> np.ndarray:
    names = rng.permutation(list(TRANSFORMS))[: int(rng.integers(1, max_steps + 1))]
    y = np.asarray(x, np.float32)
    for name in names:
        y = TRANSFORMS[str(name)](y, rng)
    return np.nan_to_num(y).astype(np.float32)


def _match_rms(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    r_ref = float(np.sqrt(np.mean(ref.astype(np.float64) ** 2)))
    r_y = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
    if r_y <= 0:
        return y
    return np.clip(y * (r_ref / r_y), -1, 1).astype(np.float32)
