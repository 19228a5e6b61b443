"""Scores against labels, and models against each other.

Conventions: `labels` are 1 = fake, 0 = real; `scores` are P(fake), higher = more likely fake.
A detector whose scores run the wrong way gets a high EER here (it is not silently flipped).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=int).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return y, s


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): predicting fake when score >= threshold, thresholds decreasing."""
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[distinct]
    fp = np.cumsum(1 - y_sorted)[distinct]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    thr = np.r_[np.inf, s_sorted[distinct]]
    return fpr, tpr, thr


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y, s = _check(labels, scores)
    if y.min() == y.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, s)
    return float(np.trapezoid(tpr, fpr))


def eer(labels, scores) -> tuple[float, float]:
    """Equal error rate and the score threshold where it occurs (fake when score >= threshold).

    The EER is read where the false-positive rate (real called fake) meets the miss rate
    (fake called real), interpolated between the two closest thresholds. NaN for one class.
    """
    y, s = _check(labels, scores)
    if y.min() == y.max():
        return float("nan"), float("nan")
    fpr, tpr, thr = roc_curve(y, s)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # rises from -1 to +1 as the threshold falls
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0 or i == 0:
        t = thr[i] if np.isfinite(thr[i]) else s.max()
        return float(fpr[i]), float(t)
    # interpolate between i-1 (diff < 0) and i (diff >= 0)
    w = -diff[i - 1] / (diff[i] - diff[i - 1])
    rate = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    t_hi = thr[i - 1] if np.isfinite(thr[i - 1]) else thr[i]
    return float(rate), float(t_hi + w * (thr[i] - t_hi))


def error_rates(labels, scores, threshold: float) -> dict:
    """FPR (real called fake), FNR (fake called real) and accuracy at a threshold."""
    y, s = _check(labels, scores)
    pred = (s >= threshold).astype(int)
    real, fake = y == 0, y == 1
    return {
        "fpr": float(pred[real].mean()) if real.any() else float("nan"),
        "fnr": float((1 - pred[fake]).mean()) if fake.any() else float("nan"),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
    }


def confusion(labels, preds) -> np.ndarray:
    """2x2 counts: rows = true (real, fake), columns = predicted (real, fake)."""
    y = np.asarray(labels, dtype=int).ravel()
    p = np.asarray(preds, dtype=int).ravel()
    m = np.zeros((2, 2), dtype=int)
    np.add.at(m, (y, p), 1)
    return m


def percent_agreement(a: Sequence, b: Sequence) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float((a == b).mean()) if len(a) else float("nan")


def cohen_kappa(a: Sequence, b: Sequence) -> float:
    """Agreement between two raters beyond chance; 1 when they always agree on a constant label."""
    a, b = np.asarray(a), np.asarray(b)
    if not len(a):
        return float("nan")
    cats = np.union1d(a, b)
    po = (a == b).mean()
    pe = sum((a == c).mean() * (b == c).mean() for c in cats)
    if pe >= 1.0:
        return 1.0 if po == 1.0 else 0.0
    return float((po - pe) / (1 - pe))


def fleiss_kappa(verdicts) -> float:
    """Fleiss' kappa for a files x raters array of categorical verdicts (every file rated by all)."""
    v = np.asarray(verdicts)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] < 2:
        return float("nan")
    n_files, n_raters = v.shape
    cats = np.unique(v)
    counts = np.stack([(v == c).sum(axis=1) for c in cats], axis=1).astype(float)  # files x cats
    p_j = counts.sum(axis=0) / (n_files * n_raters)
    p_i = ((counts**2).sum(axis=1) - n_raters) / (n_raters * (n_raters - 1))
    p_bar, pe = p_i.mean(), (p_j**2).sum()
    if pe >= 1.0:
        return 1.0 if p_bar == 1.0 else 0.0
    return float((p_bar - pe) / (1 - pe))


def balanced_weights(labels) -> np.ndarray:
    """Per-example weights that give both classes the same total (mean 1): figures "at even odds"."""
    y = np.asarray(labels, dtype=int).ravel()
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    if not n1 or not n0:
        return np.ones(len(y))
    return np.where(y == 1, len(y) / (2 * n1), len(y) / (2 * n0))


def fit_platt(logits, labels, iters: int = 500, min_slope: float = 1e-3, sample_weight=None) -> tuple[float, float]:
    """Fit P(fake) = sigmoid(a * logit + b) by Newton's method on the log loss (labels 1 = fake).

    The slope is kept at or above `min_slope`: calibration may flatten a model that carries no
    signal (its P(fake) then sits near the base rate) but never reverses its direction.
    `sample_weight` weighs the examples (`balanced_weights`: calibrated to even odds, whatever
    the class mix of the data it is fitted on).
    """
    x = np.asarray(logits, dtype=float).ravel()
    y = np.asarray(labels, dtype=float).ravel()
    sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float).ravel()
    # Platt's smoothed targets avoid infinite weights on separable data
    n_pos, n_neg = y.sum(), len(y) - y.sum()
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def newton(a: float, b: float, fit_a: bool) -> tuple[float, float]:
        for _ in range(iters):
            p = 1 / (1 + np.exp(-np.clip(a * x + b, -50, 50)))
            w = sw * p * (1 - p) + 1e-12
            r = sw * (p - t)
            if fit_a:
                g = np.array([(r * x).sum(), r.sum()])
                h = np.array([[(w * x * x).sum(), (w * x).sum()], [(w * x).sum(), w.sum()]]) + 1e-9 * np.eye(2)
                step = np.linalg.solve(h, g)
            else:
                step = np.array([0.0, r.sum() / w.sum()])
            a, b = a - step[0], b - step[1]
            if np.abs(step).max() < 1e-9:
                break
        return a, b

    a, b = newton(1.0, 0.0, True)
    if not np.isfinite(a) or a < min_slope:
        a, b = newton(min_slope, 0.0, False)
    return float(a), float(b)


def reliability(labels, p, bins: int = 10, balanced: bool = False) -> dict:
    """Reliability diagram figures of P(fake): per equal-width bin of P, the clips, the mean P and
    the share that is fake; and the expected calibration error (the weighted mean gap). With
    `balanced`, both classes weigh the same (the share that is fake at even odds)."""
    y, s = _check(labels, p)
    wt = balanced_weights(y) if balanced else np.ones(len(y))
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if not m.any():
            continue
        conf, frac = float(np.average(s[m], weights=wt[m])), float(np.average(y[m], weights=wt[m]))
        rows.append({"bin": [float(edges[b]), float(edges[b + 1])], "clips": int(m.sum()),
                     "mean_p_fake": round(conf, 4), "fake_share": round(frac, 4)})
        ece += wt[m].sum() / wt.sum() * abs(conf - frac)
    return {"ece": float(ece), "bins": rows, "balanced": balanced}
