"""Train the `whisper` detector's attentive back end (`models/whisper_attentive.py`) from the
pooled frames that `whisper_backend extract --frames` stored: the same crops, cell weights and
source-grouped folds as the linear back end, so the two differ only in what sits on the encoder.

The number of epochs is the one free choice; it is made on the folds' out-of-fold clip EER
(every epoch of every fold is scored on its held-out sources), never on `dev_eval`. The final
model trains on everything for that many epochs.

    python -m core.training.whisper_attentive fit runs/a1_frames.npz --out runs/A1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..metrics import eer, roc_auc
from ..models.whisper import DEFAULT_BUNDLE
from ..models.whisper_attentive import AttentiveWhisperDetector
from .whisper_backend import (_clip_labels, _clip_scores, cell_weights, grouped_folds, layers_of,
                              save_model_oof_and_card)

MAX_EPOCHS = 12
BATCH = 128
LR, WEIGHT_DECAY = 1e-3, 1e-2


def frame_stats(x: np.ndarray, rows: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per-value mean and standard deviation over every frame of the chosen crops (float64 sums,
    in chunks: the frames are float16 and do not fit in memory as float32 all at once)."""
    s = np.zeros(x.shape[-1])
    s2 = np.zeros(x.shape[-1])
    n = 0
    for i in range(0, len(rows), chunk):
        f = x[rows[i:i + chunk]].astype(np.float64).reshape(-1, x.shape[-1])
        s += f.sum(0)
        s2 += (f * f).sum(0)
        n += len(f)
    mean = s / n
    return mean, np.sqrt(np.maximum(s2 / n - mean * mean, 0)) + 1e-6


def new_model(x: np.ndarray, rows: np.ndarray, encoder_name: str, seed: int) -> AttentiveWhisperDetector:
    torch.manual_seed(seed)
    layers = layers_of(encoder_name)
    d = x.shape[-1] // len(layers)
    m = AttentiveWhisperDetector(layers, d=d, encoder_name=encoder_name)
    mean, std = frame_stats(x, rows)
    with torch.no_grad():
        m.frame_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        m.frame_std.copy_(torch.from_numpy(std.astype(np.float32)))
    return m


@torch.no_grad()
def logits(model: AttentiveWhisperDetector, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    model.eval()
    out = [model.from_frames(torch.from_numpy(x[rows[i:i + 512]].astype(np.float32))).numpy()
           for i in range(0, len(rows), 512)]
    return np.concatenate(out) if out else np.zeros(0)


def train(x: np.ndarray, y: np.ndarray, w: np.ndarray, rows: np.ndarray, epochs: int, encoder_name: str,
          seed: int = 0, after_epoch=None) -> AttentiveWhisperDetector:
    """Weighted BCE, AdamW; `after_epoch(epoch, model)` is called after each epoch (1-based)."""
    model = new_model(x, rows, encoder_name, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    rng = np.random.default_rng(seed)
    yt, wt = torch.from_numpy(y.astype(np.float32)), torch.from_numpy(w.astype(np.float32))
    for epoch in range(1, epochs + 1):
        model.train()
        order = rows[rng.permutation(len(rows))]
        for i in range(0, len(order), BATCH):
            b = np.sort(order[i:i + BATCH])
            out = model.from_frames(torch.from_numpy(x[b].astype(np.float32)))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out, yt[b], weight=wt[b], reduction="sum")
            opt.zero_grad()
            (loss / wt[b].sum()).backward()
            opt.step()
        if after_epoch:
            after_epoch(epoch, model)
    return model.eval()


def fit(frames: str, out_dir: str, k: int = 5, max_epochs: int = MAX_EPOCHS, name: str = "whisper",
        seed: int = 0, progress: bool = True) -> dict:
    from tqdm import tqdm

    raw = np.load(frames)
    x = raw["x"]
    y, groups, keys = raw["y"].astype(int), raw["group"], raw["key"]
    encoder_name = str(raw["encoder"]) if "encoder" in raw else DEFAULT_BUNDLE
    w = cell_weights(y, groups)
    folds = grouped_folds(groups, k)
    oof = np.zeros((max_epochs, len(y)))
    bar = tqdm(total=k * max_epochs, desc="folds x epochs", unit="epoch", disable=not progress)
    for f, held in enumerate(folds):
        train_rows, held_rows = np.flatnonzero(~held), np.flatnonzero(held)

        def score_held(epoch, model, held_rows=held_rows):
            oof[epoch - 1, held_rows] = logits(model, x, held_rows)
            bar.update()

        train(x, y, w, train_rows, max_epochs, encoder_name, seed + f, after_epoch=score_held)
    bar.close()
    lab = _clip_labels(y, keys)
    cv = {}
    for e in range(1, max_epochs + 1):
        clip = _clip_scores(oof[e - 1], keys)
        cv[e] = {"eer": eer(lab, clip)[0], "auc": roc_auc(lab, clip)}
        print(f"epochs={e}: leave-sources-out clip EER {cv[e]['eer']:.3f}, AUC {cv[e]['auc']:.3f}", file=sys.stderr)
    best = min(cv, key=lambda e: (cv[e]["eer"], e))
    model = train(x, y, w, np.arange(len(y)), best, encoder_name, seed + k)

    n_params = sum(p.numel() for p in model.parameters())
    summary = {"epochs": best, "cv": {str(e_): v for e_, v in cv.items()}, "folds": k, "encoder": encoder_name,
               "layers": list(model.layers), "optimiser": f"AdamW lr {LR}, weight decay {WEIGHT_DECAY}, batch {BATCH}",
               "parameters": int(n_params)}
    dim = model.head.in_features // 2
    save_model_oof_and_card(Path(out_dir), model, oof[best - 1], y, groups, keys, summary, {"frames": str(frames)},
                            name, back_end=(f"attentive statistics pooling over the layers' frames (pooled by "
                                            f"{model.pool}, standardised, projected to {dim}), {n_params} parameters"),
                            architecture={"back_end": "attentive", "pool": model.pool, "dim": dim})
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.whisper_attentive")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("frames", help="an npz from `whisper_backend extract --frames`")
    f.add_argument("--out", required=True)
    f.add_argument("--folds", type=int, default=5)
    f.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    f.add_argument("--name", default="whisper")
    f.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    print(json.dumps(fit(a.frames, a.out, a.folds, a.max_epochs, a.name, progress=not a.no_progress), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
