"""EER, ROC/AUC, agreement and calibration on constructed scores (labels 1 = fake, scores = P(fake))."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from core.metrics import (cohen_kappa, confusion, eer, error_rates, fit_platt, fleiss_kappa, percent_agreement,
                          roc_auc, roc_curve)


def test_eer_perfect_and_flipped_direction():
    y = np.array([0] * 50 + [1] * 50)
    p = np.r_[np.linspace(0.0, 0.4, 50), np.linspace(0.6, 1.0, 50)]
    e, thr = eer(y, p)
    assert e == 0.0 and 0.4 < thr <= 0.6
    # the same scores read the wrong way round must not pass
    e_flip, _ = eer(y, 1 - p)
    assert e_flip == 1.0
    assert roc_auc(y, 1 - p) == 0.0


def test_eer_on_overlapping_scores_matches_brute_force():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(400, int), np.ones(300, int)]
    p = np.r_[rng.normal(0.4, 0.15, 400), rng.normal(0.6, 0.15, 300)]
    e, thr = eer(y, p)
    # brute force: the threshold where FPR and FNR are closest
    ts = np.unique(p)
    gaps = [(abs((p[y == 0] >= t).mean() - (p[y == 1] < t).mean()), t) for t in ts]
    _, t_best = min(gaps)
    fpr, fnr = (p[y == 0] >= t_best).mean(), (p[y == 1] < t_best).mean()
    assert abs(e - (fpr + fnr) / 2) < 0.01
    assert 0.15 < e < 0.35
    r = error_rates(y, p, thr)
    assert abs(r["fpr"] - e) < 0.01 and abs(r["fnr"] - e) < 0.01
    assert eer(y, 1 - p)[0] > 0.65  # flipped direction: far worse, never "fixed" silently


def test_roc_and_auc_agree_with_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) * 0.5 + 0.4 * y, 2)  # ties included
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    fpr, tpr, thr = roc_curve(y, p)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(thr[1:]) < 0)


def test_eer_needs_both_classes():
    e, t = eer([1, 1, 1], [0.2, 0.5, 0.9])
    assert np.isnan(e) and np.isnan(t)
    assert np.isnan(roc_auc([0, 0], [0.1, 0.2]))


def test_label_and_length_checks():
    with pytest.raises(ValueError):
        eer([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError):
        eer([0, 1, 1], [0.1, 0.2])


def test_kappa_matches_sklearn_and_agreement():
    rng = np.random.default_rng(2)
    a = rng.choice(["fake", "real"], 200)
    b = np.where(rng.random(200) < 0.8, a, rng.choice(["fake", "real"], 200))
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert percent_agreement(a, b) == pytest.approx((a == b).mean())
    assert cohen_kappa(a, a) == 1.0


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) style example from Wikipedia: 10 subjects, 14 raters, 5 categories -> kappa 0.210
    counts = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                       [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    verdicts = np.array([np.repeat(np.arange(5), row) for row in counts])
    assert fleiss_kappa(verdicts) == pytest.approx(0.210, abs=0.001)
    same = np.array([["fake"] * 6, ["real"] * 6, ["fake"] * 6])
    assert fleiss_kappa(same) == pytest.approx(1.0)


def test_confusion_counts():
    m = confusion([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    assert m.tolist() == [[1, 1], [1, 2]]


def test_platt_recovers_a_known_calibration():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, 4000)
    true_a, true_b = 0.5, -0.7
    y = (rng.random(4000) < 1 / (1 + np.exp(-(true_a * logits + true_b)))).astype(int)
    a, b = fit_platt(logits, y)
    assert a == pytest.approx(true_a, abs=0.08) and b == pytest.approx(true_b, abs=0.12)


def test_platt_never_reverses_a_model():
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 1, 500)
    y = (logits < 0).astype(int)  # a model that runs the wrong way round
    a, b = fit_platt(logits, y)
    assert a > 0
    p = 1 / (1 + np.exp(-(a * logits + b)))
    assert np.all(np.diff(p[np.argsort(logits)]) >= 0)  # order kept, nothing flipped
