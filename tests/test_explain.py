"""core/explain.py: the occlusion map finds the band a model looks at, for any mel-like front end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import speechlike, tone
from core.audio import load_audio
from core.errors import ConfigError
from core.explain import band_centres_hz, occlusion_map, read_span
from core.features import LOGLIN64, LOGMEL64, SEED_A, SEED_B
from core.loading import LoadedModel
from core.models.registry import ModelSpec
from core.models.whisper import WHISPER_LOGMEL80
from core.weights import Checkpoint

FRONT_ENDS = [SEED_A, SEED_B, LOGMEL64, LOGLIN64, WHISPER_LOGMEL80]


class OneBand(nn.Module):
    """A 'detector' whose logit grows with the mean of rows [lo, hi) of its input: it sees one band
    only (asinh keeps it off the sigmoid's flat ends for power features and normalised ones alike)."""

    def __init__(self, lo: int, hi: int):
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.asinh(feats[:, self.lo:self.hi, :].mean(dim=(1, 2))) - 1.0


def probe(fe, lo: int, hi: int) -> LoadedModel:
    spec = ModelSpec("probe", "one-band probe", lambda card: OneBand(lo, hi), fe, "probe.pth", "logit_fake")
    return LoadedModel(spec, spec.build({}), Checkpoint(Path("probe.pth"), "test", "0" * 64))


@pytest.mark.parametrize("fe", FRONT_ENDS, ids=lambda fe: fe.name)
def test_the_map_peaks_in_the_one_band_the_model_looks_at(fe):
    rows = np.array_split(np.arange(fe.n_mels), 8)
    band = 5
    lo, hi = int(rows[band][0]), int(rows[band][-1]) + 1
    freq = float(band_centres_hz(fe)[(lo + hi) // 2])
    seconds = min(fe.window_s, 3.0)
    x = 0.3 * tone(freq, seconds) + 0.3 * speechlike(seconds, seed=1) * 0.05   # energy in that band
    occ = occlusion_map(probe(fe, lo, hi), x)
    assert occ.drop.shape == (8, len(occ.time_s)) and 1 <= len(occ.time_s) <= 10
    per_band = np.abs(occ.drop).max(axis=1)
    assert int(np.argmax(per_band)) == band
    others = np.delete(per_band, band)
    assert others.max() < 1e-5 < per_band[band], per_band
    assert np.all(occ.drop[band] > 0), "hiding the band's energy lowers P(fake)"
    # the axes: band centres rise within the front end's range, cells lie inside the window
    assert np.all(np.diff(occ.freq_hz) > 0) and occ.freq_hz[-1] <= (fe.f_max or 8000)
    assert occ.freq_lo_hz[band] <= freq <= occ.freq_hi_hz[band]
    assert 0 <= occ.time_s[0] < occ.time_s[-1] <= seconds
    assert 0 < occ.p_fake < 1


def test_cells_cover_the_audio_not_the_padding():
    """A 1 s clip in an 8 s seed window: the time cells split that second, not the zero padding."""
    x = speechlike(1.0, seed=2)
    occ = occlusion_map(probe(SEED_A, 0, 50), x, cells=10)
    assert occ.time_s[-1] <= 1.0 and occ.cell_s < 0.15


def test_batching_does_not_change_the_map():
    x = speechlike(2.0, seed=3)
    m = probe(LOGMEL64, 10, 30)
    a, b = occlusion_map(m, x, batch_size=1), occlusion_map(m, x, batch_size=80)
    assert np.allclose(a.drop, b.drop, atol=1e-6)


def test_band_centres_follow_the_filterbank():
    lin = band_centres_hz(LOGLIN64)
    assert np.allclose(np.diff(lin), 8000 / 65)                   # evenly spaced in Hz
    mel = band_centres_hz(SEED_B)
    assert np.all(np.diff(mel) > 0) and np.diff(mel)[-1] > 5 * np.diff(mel)[0] and mel[-1] < 8000
    slaney = band_centres_hz(WHISPER_LOGMEL80)
    assert np.allclose(np.diff(slaney[:10]), np.diff(slaney[:10])[0])   # linear below 1 kHz


def test_a_too_short_window_is_refused():
    with pytest.raises(ConfigError, match="too short"):
        occlusion_map(probe(SEED_A, 0, 5), np.zeros(100, np.float32))


def test_read_span_keeps_only_the_window(make):
    path = make.write("s.wav", speechlike(5.0, 22_050, seed=4), 22_050)
    whole = load_audio(path).samples
    part = read_span(path, 1.5, 3.0)
    assert len(part) == 24_000 and np.allclose(part, whole[24_000:48_000], atol=1e-6)
    assert len(read_span(path, 4.5, 9.0)) == len(whole) - 72_000
