"""Train the `whisper` detector's back end: a frozen Whisper encoder's per-layer frame
statistics from fixed-length crops, and an L2-regularised logistic regression over them.

Why this shape: the encoder is what generalises (it was pretrained on 680k hours of speech);
the back end is kept linear and small so that it can be fitted on a 2-core machine from the
decoded cache (`decoded_pool`) in minutes, validated leave-sources-out, and cannot memorise
the training sources' channels the way a deep head can.

Shortcuts: every training example is a crop of exactly one window (short clips tiled, the
engine's rule), so duration and leading/trailing silence are not visible to it. Each crop is
passed through the same random channel chain for both classes (`augment`), and examples are
weighted so that every (source, label) cell weighs the same, whatever its clip count: the two
sources that dominate the fake side do not make it a detector of their vocoders.

    python -m core.training.whisper_backend extract CACHE [CACHE ...] --out feats.npz
    python -m core.training.whisper_backend fit feats.npz --out assets/models
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..metrics import eer, roc_auc
from ..models.whisper import WHISPER_LOGMEL80, WhisperDetector, pooled_layer_stats, shared_encoder
from .augment import augment, random_crop
from .channel import chain as channel_chain
from .decoded_pool import read_index

LAYERS = (1, 2, 3, 4)
C_GRID = (0.003, 0.01, 0.03, 0.1)     # inverse L2 strengths tried leave-sources-out


@torch.no_grad()
def crop_features(crops: np.ndarray, batch: int = 16) -> np.ndarray:
    """`[N, window]` audio -> `[N, features]` pooled layer statistics (float32)."""
    enc = shared_encoder()
    out = []
    for i in range(0, len(crops), batch):
        mel = WHISPER_LOGMEL80(torch.from_numpy(crops[i:i + batch]))
        out.append(pooled_layer_stats(enc.layer_outputs(mel), LAYERS).numpy())
    return np.concatenate(out).astype(np.float32)


def training_crops(caches: list[str], crops_per_clip: int = 2, seed: int = 0, split: str = "train",
                   progress: bool = True, chain: str = "augment", skip_clean: bool = False):
    """Yield (crop, label, group, clip key) for every `split` clip of the caches, in a fixed order:
    `crops_per_clip` crops of exactly one window each (short clips tiled), the first clean, the
    others through the augmentation chain (`augment`: crops, silence, band limits, noise, codecs,
    gain; `channel`: that, then one to three channel transforms of `channel.chain`). The shortcut
    audit reads the very same crops. `skip_clean` leaves the clean crops out."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    n = WHISPER_LOGMEL80.window_samples
    clips = [(c, it) for c in caches for it in read_index(c, split)]
    for cache, it in tqdm(clips, desc="crops", unit="clip", disable=not progress):
        x = it.audio(cache)
        if len(x) < 1600:
            continue
        for k in range(crops_per_clip):
            crop = random_crop(x, n, rng)
            if k > 0:
                crop = augment(crop, n, rng)
                if chain == "channel":
                    crop = channel_chain(crop, rng)
            elif skip_clean:
                continue
            yield np.asarray(crop, np.float32)[:n], it.label, f"{Path(cache).name}:{it.group}", it.key


def extract(caches: list[str], out: str, crops_per_clip: int = 2, seed: int = 0, split: str = "train",
            chain: str = "augment", skip_clean: bool = False) -> None:
    """`training_crops` -> pooled encoder features, labels, groups and clip keys in one npz."""
    feats, pending, meta = [], [], []
    for crop, label, group, key in training_crops(caches, crops_per_clip, seed, split, chain=chain,
                                                  skip_clean=skip_clean):
        pending.append(crop)
        meta.append((label, group, key))
        if len(pending) >= 64:
            feats.append(crop_features(np.stack(pending)))
            pending = []
    if pending:
        feats.append(crop_features(np.stack(pending)))
    labels, groups, keys = (np.array(v) for v in zip(*meta))
    np.savez(out, x=np.concatenate(feats), y=labels.astype(np.int8), group=groups, key=keys)


def cell_weights(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each (group, label) cell weighs the same in total; the classes weigh the same overall."""
    w = np.zeros(len(y))
    for lab in (0, 1):
        cells = {g for g, l in zip(groups, y) if l == lab}
        for g in cells:
            m = (groups == g) & (y == lab)
            w[m] = 1.0 / m.sum() / len(cells)
    return w / w.mean()


def _fit(x, y, w, c):
    from sklearn.linear_model import LogisticRegression

    mu, sd = x.mean(0), x.std(0) + 1e-6
    lr = LogisticRegression(C=c, max_iter=2000)
    lr.fit((x - mu) / sd, y, sample_weight=w)
    return mu, sd, lr


def grouped_folds(groups: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """Sources dealt into k folds (a fold is a set of whole sources)."""
    uniq = np.array(sorted(set(groups)))
    np.random.default_rng(seed).shuffle(uniq)
    return [np.isin(groups, uniq[i::k]) for i in range(k)]


def fit(features: str, out_dir: str, k: int = 5) -> dict:
    d = np.load(features)
    x, y, groups, keys = d["x"], d["y"].astype(int), d["group"], d["key"]
    w = cell_weights(y, groups)
    folds = grouped_folds(groups, k)
    cv = {}
    oof_by_c = {}
    for c in C_GRID:
        oof = np.zeros(len(y))
        for held in folds:
            mu, sd, lr = _fit(x[~held], y[~held], w[~held], c)
            oof[held] = lr.decision_function((x[held] - mu) / sd)
        clip = _clip_scores(oof, keys)
        lab = _clip_labels(y, keys)
        cv[c] = {"eer": eer(lab, clip)[0], "auc": roc_auc(lab, clip)}
        oof_by_c[c] = oof
        print(f"C={c}: leave-sources-out clip EER {cv[c]['eer']:.3f}, AUC {cv[c]['auc']:.3f}", file=sys.stderr)
    best = min(C_GRID, key=lambda c: cv[c]["eer"])
    mu, sd, lr = _fit(x, y, w, best)
    model = WhisperDetector(LAYERS, encoder=None)
    with torch.no_grad():
        model.feature_mean.copy_(torch.from_numpy(mu))
        model.feature_std.copy_(torch.from_numpy(sd))
        model.head.weight.copy_(torch.from_numpy(lr.coef_.astype(np.float32)))
        model.head.bias.copy_(torch.from_numpy(lr.intercept_.astype(np.float32)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k_: v.contiguous() for k_, v in model.state_dict().items()}, str(out / "whisper.safetensors"))
    oof = oof_by_c[best]
    np.savez(out / "whisper.oof.npz", logit=oof, y=y, group=groups, key=keys)
    return {"C": best, "cv": {str(c): v for c, v in cv.items()}, "folds": k, "examples": int(len(y)),
            "clips": int(len(set(keys))), "sources": int(len(set(groups)))}


def _clip_scores(window_logits: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Mean P(fake) over a clip's crops, in the order of the clips' first appearance."""
    order = list(dict.fromkeys(keys))
    p = 1 / (1 + np.exp(-window_logits))
    return np.array([p[keys == k].mean() for k in order])


def _clip_labels(y: np.ndarray, keys: np.ndarray) -> np.ndarray:
    order = list(dict.fromkeys(keys))
    return np.array([y[keys == k][0] for k in order])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.whisper_backend")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract")
    e.add_argument("caches", nargs="+")
    e.add_argument("--out", required=True)
    e.add_argument("--crops", type=int, default=2)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--chain", choices=["augment", "channel"], default="augment")
    e.add_argument("--skip-clean", action="store_true", help="only the augmented crops")
    f = sub.add_parser("fit")
    f.add_argument("features")
    f.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.cmd == "extract":
        extract(a.caches, a.out, a.crops, a.seed, chain=a.chain, skip_clean=a.skip_clean)
    else:
        print(json.dumps(fit(a.features, a.out), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
