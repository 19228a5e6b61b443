"""Figures on sources the models never trained on, from the per-clip score CSVs that
`dev_eval` writes: every model and every candidate ensemble, as restored, through a platform
and through a phone line, per source, at each one's threshold; reliability (ECE); the
inconclusive band. Also what the cards and the ensemble card record of them.

Candidate ensembles are equal-weight means of calibrated model P(fake); their thresholds come
from a sample of the extended pool's `train` split (`train_sample.csv`, on which the shipped
six never trained) with the whisper model's out-of-fold scores there, never from `dev_eval`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..metrics import eer, error_rates, fit_platt, reliability, roc_auc

VARIANT_TITLES = {"restored": "as restored", "platform": "platform (24 kHz mp3, 64 kbit/s)",
                  "phone": "phone (300-3400 Hz, 8 kHz, mu-law)"}


def read(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def join(*tables: list[dict]) -> list[dict]:
    """Rows of several score CSVs of the same clips, merged by path (the first table's order)."""
    by_path = [{r["path"]: r for r in t} for t in tables[1:]]
    out = []
    for r in tables[0]:
        row = dict(r)
        for t in by_path:
            row.update({k: v for k, v in t.get(r["path"], {}).items() if k.startswith("p_")})
        out.append(row)
    return out


def col(rows: list[dict], name: str) -> np.ndarray:
    return np.array([float(r[f"p_{name}"]) if r.get(f"p_{name}") not in ("", None) else np.nan for r in rows])


def labels(rows: list[dict]) -> np.ndarray:
    return np.array([int(r["label"]) for r in rows])


def mean_of(rows: list[dict], names: list[str]) -> np.ndarray:
    return np.nanmean(np.stack([col(rows, n) for n in names]), axis=0)


def figures(y: np.ndarray, s: np.ndarray, threshold: float | None) -> dict:
    ok = np.isfinite(s)
    y, s = y[ok], s[ok]
    e, t = eer(y, s)
    out = {"clips": int(len(y)), "eer": round(float(e), 4), "auc": round(float(roc_auc(y, s)), 4)}
    if threshold is not None:
        r = error_rates(y, s, threshold)
        out.update(threshold=round(float(threshold), 6), real_called_fake=round(r["fpr"], 4),
                   fakes_caught=round(1 - r["fnr"], 4))
    return out


def per_source(rows: list[dict], s: np.ndarray) -> dict:
    y = labels(rows)
    src = np.array([r["source"] for r in rows])
    out = {}
    for g in sorted(set(src)):
        m = src == g
        if len(set(y[m])) == 2:
            out[g] = round(float(eer(y[m], s[m])[0]), 4)
    return out


def _logit(p):
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def platt(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return fit_platt(_logit(p), y)


def apply_platt(p: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    return 1 / (1 + np.exp(-(ab[0] * _logit(p) + ab[1])))


def cross_fitted_ece(rows: list[dict], s: np.ndarray) -> dict:
    """ECE of P(fake) as it is, and after a Platt calibration fitted on the other dev_eval sources
    (leave one source out: the calibration never sees the source it is judged on)."""
    y = labels(rows)
    src = np.array([r["source"] for r in rows])
    cal = np.full(len(s), np.nan)
    for g in sorted(set(src)):
        m = src == g
        if len(set(y[~m])) == 2:
            cal[m] = apply_platt(s[m], platt(s[~m], y[~m]))
    return {"as_trained": round(reliability(y, s)["ece"], 4),
            "platt_fitted_on_other_sources": round(reliability(y[np.isfinite(cal)], cal[np.isfinite(cal)])["ece"], 4)}


def threshold_map(thr: float, old: dict | None, new: tuple[float, float]) -> float:
    """A threshold on old-calibrated scores, re-expressed on new-calibrated ones (same decisions)."""
    z = _logit(thr)
    if old:
        z = (z - old["b"]) / old["a"]
    return float(1 / (1 + np.exp(-(new[0] * z + new[1]))))
