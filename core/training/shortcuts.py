"""Shortcut audit: how well does a trivial classifier tell real from fake using only what is
not the voice? If it can, a detector can too, and its scores on other data mean little.

Two views of the same training clips, validated with the same source-grouped folds and the same
example weights as the `whisper` back end (`whisper_backend.grouped_folds`, `cell_weights`):

* `restored`: the facts of each file as restored (duration, original sample rate, codec and
  container, silence share, peak level, bandwidth): what the data offers;
* `fed`: what of that is left in the crops the models are trained on (loudness, peak, silence
  share and bandwidth of each 16 kHz crop; the duration and the format are gone by
  construction): what the models can still exploit.

An EER near 50% (the issue's aim: at least 40%) means the cue is not there.

    python -m core.training.shortcuts CACHE [CACHE ...]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from ..audio import AudioFacts, _FactsAccumulator
from ..metrics import eer, roc_auc
from .decoded_pool import read_index
from .whisper_backend import _clip_labels, cell_weights, clip_means, grouped_folds, training_crops

CODECS = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "MPEG_LAYER_III", "FLAC", "VORBIS", "OPUS", "ULAW")


def restored_features(meta: dict) -> list[float]:
    codec = str(meta.get("codec", "")).upper()
    return [math.log(max(float(meta["duration_s"]), 1e-3)), math.log(max(float(meta["original_rate"]), 1.0)),
            *[float(codec == c) for c in CODECS], float(codec not in CODECS),
            float(meta["silence_ratio"]), max(float(meta["peak_dbfs"]), -120.0) / 20.0,
            float(meta["bandwidth_hz"]) / 8000.0]


def crop_features(x: np.ndarray) -> list[float]:
    """Loudness, peak, silence share and bandwidth of one 16 kHz crop."""
    acc = _FactsAccumulator()
    acc.add_mono16k(x)
    acc.peak = float(np.abs(x).max()) if len(x) else 0.0
    f = acc.finish(AudioFacts("crop", "", "", 16000, 1))
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    return [20 * math.log10(max(rms, 1e-10)) / 20.0, max(f.peak_dbfs, -120.0) / 20.0, f.silence_ratio,
            f.bandwidth_hz / 8000.0]


def grouped_eer(x: np.ndarray, y: np.ndarray, groups: np.ndarray, keys: np.ndarray, k: int = 5) -> dict:
    """Out-of-fold logistic regression scores, averaged per clip -> clip-level EER and AUC."""
    from sklearn.linear_model import LogisticRegression

    w = cell_weights(y, groups)
    oof = np.zeros(len(y))
    for held in grouped_folds(groups, k):
        mu, sd = x[~held].mean(0), x[~held].std(0) + 1e-6
        lr = LogisticRegression(C=1.0, max_iter=2000).fit((x[~held] - mu) / sd, y[~held], sample_weight=w[~held])
        oof[held] = lr.decision_function((x[held] - mu) / sd)
    clip_s, clip_y = clip_means(oof, keys), _clip_labels(y, keys)
    e, _ = eer(clip_y, clip_s)
    return {"eer": float(e), "auc": float(roc_auc(clip_y, clip_s)), "clips": len(clip_y)}


def audit(caches: list[str], crops_per_clip: int = 2, seed: int = 0) -> dict:
    clips = [(Path(c).name, it) for c in caches for it in read_index(c, "train")]
    xr = np.array([restored_features(it.meta) for _, it in clips])
    yr = np.array([it.label for _, it in clips])
    gr = np.array([f"{c}:{it.group}" for c, it in clips])
    kr = np.array([it.key for _, it in clips])
    out = {"restored": grouped_eer(xr, yr, gr, kr)}
    feats, ys, gs, ks = [], [], [], []
    for crop, label, group, key in training_crops(caches, crops_per_clip, seed):
        feats.append(crop_features(crop))
        ys.append(label)
        gs.append(group)
        ks.append(key)
    out["fed"] = grouped_eer(np.array(feats), np.array(ys), np.array(gs), np.array(ks))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.shortcuts", description=__doc__.split("\n\n")[0])
    p.add_argument("caches", nargs="+", help="decoded-pool caches (core.training.decoded_pool)")
    a = p.parse_args(argv)
    res = audit(a.caches)
    print("| view | what the classifier sees | clips | EER | AUC |", file=sys.stdout)
    print("|---|---|---|---|---|")
    what = {"restored": "duration, rate, codec, container, silence, peak, bandwidth of each file",
            "fed": "loudness, peak, silence, bandwidth of each training crop"}
    for view, r in res.items():
        print(f"| {view} | {what[view]} | {r['clips']} | {r['eer']:.1%} | {r['auc']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
