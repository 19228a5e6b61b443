"""Training augmentation: the band-limit step's probability can be set on its own."""

from __future__ import annotations

import numpy as np

from core.training.augment import augment

SR = 16_000


def _share_above(x: np.ndarray, hz: float) -> float:
    p = np.abs(np.fft.rfft(x)) ** 2
    return float(p[int(hz / (SR / 2) * (len(p) - 1)):].sum() / p.sum())


def test_band_limit_probability_overrides_the_strength():
    """White noise keeps about a quarter of its energy above 6 kHz unless it was band-limited
    (through 8, 11.025 or 12 kHz, which all cut it above 6 kHz). p = 1 band-limits every view,
    p = 0 none, and the default (0.3 x strength) some but not all."""
    x = np.random.default_rng(0).standard_normal(SR * 4).astype(np.float32) * 0.1

    def limited(p, strength=1.0, k=40):
        rng = np.random.default_rng(1)
        return [_share_above(augment(x, SR * 3, rng, strength, band_limit_p=p), 6500) < 0.01 for _ in range(k)]

    assert all(limited(1.0, strength=0.0))
    assert not any(limited(0.0, strength=1.0))
    default = limited(None, strength=1.0)
    assert 0 < sum(default) < len(default)
