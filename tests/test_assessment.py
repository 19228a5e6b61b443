"""core/assessment.py: the three-way assessment and the inconclusive band, on constructed scores."""

from __future__ import annotations

import numpy as np
import pytest

from core.assessment import (CAUTION_MARGIN, INCONCLUSIVE, LIKELY_FAKE, LIKELY_REAL, Band, assess, band_from_card,
                             cautions_of, fallback_band, fit_band)
from core.audio import AudioFacts

BAND = Band(0.3, 0.7, "test band")


@pytest.mark.parametrize("p,label", [(0.05, LIKELY_REAL), (0.29, LIKELY_REAL), (0.3, INCONCLUSIVE),
                                     (0.5, INCONCLUSIVE), (0.69, INCONCLUSIVE), (0.7, LIKELY_FAKE),
                                     (0.99, LIKELY_FAKE)])
def test_the_band_decides_both_directions(p, label):
    a = assess(p, 0.5, "card", BAND)
    assert a.label == label
    assert bool(a.reasons) == (label == INCONCLUSIVE)
    assert a.as_dict()["band"] == [0.3, 0.7] and a.as_dict()["band_source"] == "test band"


def test_strong_disagreement_is_inconclusive_whatever_the_mean():
    a = assess(0.9, 0.5, "card", BAND, {"gnn": 0.98, "resnet": 0.2})
    assert a.label == INCONCLUSIVE and "disagree" in a.reasons[0] and "gnn say fake" in a.reasons[0]
    mild = assess(0.9, 0.5, "card", BAND, {"gnn": 0.98, "resnet": 0.6})   # both say fake
    assert mild.label == LIKELY_FAKE
    close = assess(0.1, 0.5, "card", BAND, {"gnn": 0.45, "resnet": 0.55})  # split, but a small spread
    assert close.label == LIKELY_REAL
    own = assess(0.1, 0.5, "card", BAND, {"gnn": 0.05, "resnet": 0.6}, {"gnn": 0.5, "resnet": 0.7})
    assert own.label == LIKELY_REAL, "each model is judged at its own threshold"


def test_cautions_push_a_borderline_score_to_inconclusive_only():
    c = ["Short clip"]
    assert assess(0.75, 0.5, "card", BAND).label == LIKELY_FAKE
    a = assess(0.75, 0.5, "card", BAND, cautions=c)
    assert a.label == INCONCLUSIVE and "conditions" in a.reasons[0] and a.cautions == c
    assert assess(0.7 + CAUTION_MARGIN + 0.01, 0.5, "card", BAND, cautions=c).label == LIKELY_FAKE
    assert assess(0.25, 0.5, "card", BAND, cautions=c).label == INCONCLUSIVE
    assert assess(0.3 - CAUTION_MARGIN - 0.01, 0.5, "card", BAND, cautions=c).label == LIKELY_REAL


def test_fit_band_holds_its_target_on_either_side():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(400), np.ones(400)].astype(int)
    s = np.r_[rng.beta(2, 3, 400), rng.beta(3, 2, 400)]     # overlapping classes: 69% right at 0.5
    b = fit_band(y, s, 0.5, target=0.9)
    assert b["low"] <= 0.5 <= b["high"] and b["high"] - b["low"] > 0
    assert (y[s >= b["high"]]).mean() >= 0.9 and (1 - y[s < b["low"]]).mean() >= 0.9
    assert b["right_when_fake"] >= 0.9 and b["right_when_real"] >= 0.9
    assert 0 < b["inconclusive_share"] < 1
    tight = fit_band(y, s, 0.5, target=0.99)
    assert tight["high"] >= b["high"] and tight["low"] <= b["low"], "a stricter target widens the band"


def test_fit_band_never_decides_a_side_it_cannot_back():
    y = np.r_[np.zeros(50), np.ones(50)].astype(int)
    s = np.r_[np.linspace(0.6, 0.9, 50), np.linspace(0.6, 0.9, 50)]   # fakes rank like reals
    b = fit_band(y, s, 0.5)
    assert b["high"] == 1.0, "no score range is 90% fake: never 'likely fake'"
    assert b["low"] <= 0.5


def test_cards_and_fallback():
    assert band_from_card({"inconclusive_band": {"low": 0.2, "high": 0.8, "source": "dev_eval"}}, 0.5) == \
        Band(0.2, 0.8, "dev_eval")
    fb = band_from_card({}, 0.45)
    assert fb == fallback_band(0.45) and fb.low == pytest.approx(0.3) and "no band fitted" in fb.source


def test_cautions_from_facts():
    f = AudioFacts("x.mp3", "mp3", "MPEG_LAYER_III", 8000, 1, duration_s=1.2, silence_ratio=0.7)
    c = " ".join(cautions_of(f))
    assert "Short clip" in c and "Narrow-band" in c and "Lossy" in c and "silence" in c
    clean = AudioFacts("x.wav", "wav", "PCM_16", 16000, 1, duration_s=5.0, bandwidth_hz=7800)
    assert cautions_of(clean) == []


def test_a_band_without_a_real_side_never_says_likely_real():
    band = Band(0.0, 0.8, "dev_eval")
    for p in (0.0, 0.01, 0.5, 0.79):
        a = assess(p, 0.7, "card", band)
        assert a.label == INCONCLUSIVE and "cannot back a 'likely real' call" in a.reasons[0]
    assert assess(0.85, 0.7, "card", band).label == LIKELY_FAKE


def test_a_balanced_band_ignores_the_validation_sets_class_mix():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(100), np.ones(900)].astype(int)          # 90% fakes
    s = np.r_[rng.beta(2, 3, 100), rng.beta(3, 2, 900)]
    raw, bal = fit_band(y, s, 0.5, balanced=False), fit_band(y, s, 0.5, balanced=True)
    assert raw["high"] <= bal["high"], "with 90% fakes, 'likely fake' is easy to be right about unbalanced"
    assert raw["low"] <= bal["low"]
