"""Training and evaluation of the project's compact detectors from a labelled source.

`python -m core train --data ../shared/data/manifest.csv --out assets/models` does, per family:
  1. decode every clip once (mono 16 kHz) and add extra fakes: Griffin-Lim resynthesis of the
     real clips (labelled fake, kept in the split group of the clip they came from);
  2. build a bank of augmented 3 s views per clip (core/training/augment.py: crops, silence, gain,
     noise, band-limiting, mp3/opus/vorbis round-trips, for both classes), as log-mel features;
  3. leave-one-group-out validation (groups = source repositories for the shared pool): for each
     group, train on the others, score the held-out clips whole-file (3 s windows, 50% hop,
     mean P(fake), exactly as the app does) -> per-group EER, AUC, out-of-fold scores;
  4. fit a Platt calibration and the EER threshold on the pooled out-of-fold scores;
  5. train the final model on every group and write `<name>.safetensors` + `<name>.json` (card).
DARTS searches its cell (PC-DARTS, first-order, alternating weight and architecture steps on two
halves of the training groups) inside every fold and once for the final model.
Steps 1-2 live in core/training/trainset.py; the figures, calibration, ensemble card and report of steps
3-4 in core/training/validation_report.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .datasets import read_labelled
from ..metrics import eer, error_rates, roc_auc
from ..models.averaged import SeedAverage
from ..models.darts import SearchedDarts
from ..models.registry import MODEL_NAMES, get_set
from .oof import clip_scores, group_figures, save_window_logits
from .trainset import Pool, eval_windows, exclude_spec, family_front_end, limit_items, prepare, progress
from .validation_report import card_figures, clean_json, summarise, write_ensemble

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- models


def build_model(name: str, card: dict | None = None) -> torch.nn.Module:
    return get_set("shipped").spec(name).build(card or {})


def _batches(idx: np.ndarray, bs: int, rng: np.random.Generator):
    idx = rng.permutation(idx)
    for i in range(0, len(idx), bs):
        yield idx[i:i + bs]


def _epoch_rows(train_clips: np.ndarray, variants: int, rng: np.random.Generator) -> np.ndarray:
    """One random augmented view per training clip."""
    return train_clips * variants + rng.integers(0, variants, len(train_clips))


def _pos_weight(labels: np.ndarray, train_clips: np.ndarray) -> torch.Tensor:
    """Weight on fake examples so both classes carry equal total weight in the loss."""
    y = labels[train_clips]
    n1, n0 = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    return torch.tensor(n0 / n1)


def search_darts(feats, clip, labels, groups, train_clips, variants, epochs, seed, quiet=False) -> list:
    """PC-DARTS search (first-order): weights on one half of the groups, alpha/beta on the other."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    g = sorted({groups[c] for c in train_clips})
    arch_groups = set(g[1::2]) if len(g) > 1 else set()
    w_clips = np.array([c for c in train_clips if groups[c] not in arch_groups])
    a_clips = np.array([c for c in train_clips if groups[c] in arch_groups]) if arch_groups else w_clips
    net = SearchedDarts()
    pw = _pos_weight(labels, train_clips)
    w_opt = torch.optim.AdamW(net.weight_parameters(), lr=2e-3, weight_decay=1e-4)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=6e-3, betas=(0.5, 0.999), weight_decay=1e-3)
    for ep in range(epochs):
        wr = _epoch_rows(w_clips, variants, rng)
        ar = _epoch_rows(a_clips, variants, rng)
        a_iter = _batches(ar, 32, rng)
        net.train()
        for b in progress(list(_batches(wr, 32, rng)), f"darts search {ep + 1}/{epochs}", quiet=quiet):
            ab = next(a_iter, None)
            if ab is None:
                a_iter = _batches(ar, 32, rng)
                ab = next(a_iter)
            if ep > 0:  # warm the weights up before the architecture moves
                loss_a = F.binary_cross_entropy_with_logits(net(feats[ab].float()),
                                                            torch.from_numpy(labels[clip[ab]]).float(), pos_weight=pw)
                a_opt.zero_grad()
                loss_a.backward()
                a_opt.step()
            loss_w = F.binary_cross_entropy_with_logits(net(feats[b].float()),
                                                        torch.from_numpy(labels[clip[b]]).float(), pos_weight=pw)
            w_opt.zero_grad()
            loss_w.backward()
            torch.nn.utils.clip_grad_norm_(net.weight_parameters(), 5.0)
            w_opt.step()
    return net.derive_genotype()


def train_one(name, feats, clip, labels, train_clips, variants, epochs, seed, card=None, quiet=False,
              log=None, mixup: float = 0.0) -> torch.nn.Module:
    """One network. `mixup` > 0 blends each batch with a shuffled copy of itself, features and labels
    alike, by a Beta(mixup, mixup) weight; it draws from its own generator, so the data order and
    masks stay those of the same seed without mixup."""
    rng = np.random.default_rng(seed)
    mix_rng = np.random.default_rng([seed, 7])
    torch.manual_seed(seed)
    model = build_model(name, card)
    pw = _pos_weight(labels, train_clips)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    steps = epochs * math.ceil(len(_epoch_rows(train_clips, variants, rng)) / 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=max(steps, 1), pct_start=0.15)
    done = 0
    for ep in range(epochs):
        model.train()
        losses = []
        rows = _epoch_rows(train_clips, variants, rng)
        for b in progress(list(_batches(rows, 32, rng)), f"{name} epoch {ep + 1}/{epochs}", quiet=quiet):
            if len(b) < 2:
                continue
            x = feats[b].float()
            if rng.random() < 0.5:  # SpecAugment-style masks, one in time and one in frequency
                t0 = int(rng.integers(0, x.shape[2] - 30))
                f0 = int(rng.integers(0, x.shape[1] - 8))
                x[:, :, t0:t0 + int(rng.integers(0, 30))] = 0
                x[:, f0:f0 + int(rng.integers(0, 8)), :] = 0
            target = torch.from_numpy(labels[clip[b]]).float()
            if mixup > 0:
                lam = float(mix_rng.beta(mixup, mixup))
                perm = torch.from_numpy(mix_rng.permutation(len(b)))
                x = lam * x + (1 - lam) * x[perm]
                target = lam * target + (1 - lam) * target[perm]
            loss = F.binary_cross_entropy_with_logits(model(x), target, pos_weight=pw)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if done < steps:
                sched.step()
                done += 1
            losses.append(loss.item())
        if log:
            log(f"{name} epoch {ep + 1}: loss {np.mean(losses):.4f}")
    return model.eval()


def train_members(name, feats, clip, labels, train_clips, variants, epochs, seed, members: int = 1, card=None,
                  quiet=False, log=None, mixup: float = 0.0) -> torch.nn.Module:
    """`members` networks trained alike from seeds seed, seed + 100, ...; more than one is a SeedAverage."""
    nets = [train_one(name, feats, clip, labels, train_clips, variants, epochs, seed + 100 * j, card, quiet=quiet,
                      log=log, mixup=mixup) for j in range(max(1, members))]
    return nets[0] if len(nets) == 1 else SeedAverage(nets)


@torch.no_grad()
def window_logits(model: torch.nn.Module, windows: list[torch.Tensor]) -> list[np.ndarray]:
    """Per clip, the logit of each of its windows."""
    model.eval()
    out = []
    for i in range(0, len(windows), 16):
        chunk = windows[i:i + 16]
        lens = [len(w) for w in chunk]
        z = model(torch.cat(chunk).float()).numpy()
        k = 0
        for n in lens:
            out.append(z[k:k + n].astype(np.float32))
            k += n
    return out


def score_clips(model: torch.nn.Module, windows: list[torch.Tensor]) -> np.ndarray:
    return clip_scores(window_logits(model, windows))


# ---------------------------------------------------------------- the whole procedure


def validation_folds(groups: np.ndarray, labels: np.ndarray) -> list[list[str]]:
    """Leave-one-group-out: each group with both classes is its own fold; groups holding one class
    only (no EER of their own) are held out together, which saves a training run and still tests
    them on a model that never saw them."""
    both, single = [], []
    for g in sorted(set(groups)):
        y = labels[groups == g]
        (both if 0 < y.sum() < len(y) else single).append(g)
    return [[g] for g in both] + ([single] if single else [])


def run_family(name: str, args, pool: Pool, feats, clip, log) -> dict:
    """Leave-one-group-out validation, calibration, final training and the card for one family."""
    labels = pool.labels
    groups = np.array(pool.groups)
    is_pool = np.array([o == "pool" for o in pool.origin])
    windows = {i: eval_windows(pool.audio[i], family_front_end(name, args)) for i in np.flatnonzero(is_pool)}
    oof = np.full(len(pool.audio), np.nan)
    oof_logits: dict[int, np.ndarray] = {}  # clip -> its windows' logits, so replicate runs can be merged
    per_group = {}
    genotypes = {}
    t_start = time.time()
    folds = validation_folds(groups[is_pool], labels[is_pool]) if args.folds == "loso" else []
    for k, fold in enumerate(folds):
        held = np.isin(groups, fold)
        train_clips = np.flatnonzero(~held)
        test_clips = np.flatnonzero(held & is_pool)
        g = " + ".join(fold)
        seed = args.seed + 1000 * (k + 1)
        card = None
        if name == "darts":
            gt = search_darts(feats, clip, labels, pool.groups, train_clips, args.variants, args.search_epochs,
                              seed, quiet=args.quiet)
            genotypes[g] = gt
            card = {"architecture": {"genotype": gt}}
        model = train_members(name, feats, clip, labels, train_clips, args.variants, args.epochs, seed,
                              args.members, card, quiet=args.quiet, mixup=args.mixup)
        test_windows = [windows[i] for i in test_clips]
        logits = window_logits(model, test_windows)
        oof_logits.update(zip(test_clips.tolist(), logits))
        p = clip_scores(logits)
        oof[test_clips] = p
        members = [score_clips(m, test_windows) for m in model.members] if isinstance(model, SeedAverage) else []
        for gi in fold:
            sel = groups[test_clips] == gi
            y = labels[test_clips][sel]
            both = 0 < y.sum() < len(y)
            per_group[gi] = group_figures(y, p[sel])
            if members and both:  # each member alone, to show what averaging bought
                per_group[gi]["member_eers"] = [eer(y, pm[sel])[0] for pm in members]
            log(f"{name} fold {k + 1}/{len(folds)} held-out {gi}: EER {per_group[gi]['eer']:.3f} "
                + (f"(members alone: {', '.join(f'{e:.3f}' for e in per_group[gi]['member_eers'])}) "
                   if "member_eers" in per_group[gi] else "")
                + f"({per_group[gi]['n_real']} real, {per_group[gi]['n_fake']} fake) [{time.time() - t_start:.0f}s]")
    result = {"per_group": per_group, "oof": oof, "oof_logits": oof_logits, "genotypes": genotypes}
    # final model on everything
    card = None
    genotype = None
    if name == "darts":
        genotype = search_darts(feats, clip, labels, pool.groups, np.arange(len(pool.audio)), args.variants,
                                args.search_epochs, args.seed, quiet=args.quiet)
        card = {"architecture": {"genotype": genotype}}
    model = train_members(name, feats, clip, labels, np.arange(len(pool.audio)), args.variants,
                          args.final_epochs or args.epochs, args.seed, args.members, card, quiet=args.quiet, log=log,
                          mixup=args.mixup)
    result.update(model=model, genotype=genotype, train_seconds=time.time() - t_start)
    return result


def write_card(name: str, out_dir: Path, model: torch.nn.Module, summary: dict, args, pool: Pool,
               genotype, train_seconds: float) -> dict:
    from safetensors.torch import save_file

    from ..weights import sha256_of

    out_dir.mkdir(parents=True, exist_ok=True)
    spec = get_set("shipped").spec(name)
    sd = {k: v.detach().contiguous().half() if (args.fp16 and v.is_floating_point()) else v.detach().contiguous()
          for k, v in model.state_dict().items()}
    path = out_dir / spec.checkpoint
    save_file(sd, str(path))
    is_pool = [o == "pool" for o in pool.origin]
    counts: dict[str, dict] = {}
    for g, l, ok in zip(pool.groups, pool.labels, is_pool):
        if ok:
            c = counts.setdefault(g, {"real": 0, "fake": 0})
            c["fake" if l else "real"] += 1
    card = {
        "name": name, "set": "shipped", "family": spec.family, "description": spec.description,
        "architecture": {"class": type(model).__name__, **({"genotype": genotype} if genotype else {}),
                         **({"members": len(model.members), "member_class": type(model.members[0]).__name__}
                            if isinstance(model, SeedAverage) else {})},
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "front_end": family_front_end(name, args).as_dict(),
        "output": "logit of P(fake); the engine applies the calibration below",
        "training_data": {
            "source": str(args.data), "clips_per_group": counts,
            "clips": int(sum(is_pool)), "added_fakes_griffin_lim": pool.origin.count("griffinlim"),
            "added_fakes_source_filter": pool.origin.count("sourcefilter"),
            "added_fakes_espeak_ng": pool.origin.count("espeak"),
            "excluded": args.exclude or [],
        },
        "augmentation": (f"random 3 s crops (short clips tiled); with probabilities scaled by {args.aug_strength}: "
                         "head/tail silence (.3), band-limit via 8/11.025/12 kHz ("
                         + (f"{args.band_limit}, not scaled" if args.band_limit is not None
                            else ".3") + "), noise 10-45 dB SNR (.3), "
                         "mp3/opus/vorbis round-trip (.35); gain -30..-0.5 dBFS peak (.8); SpecAugment masks (.5); "
                         + (f"mixup of batches, Beta({args.mixup}, {args.mixup}); " if args.mixup else "") +
                         f"both classes alike; {args.variants} views per clip"),
        "training": {"epochs": args.final_epochs or args.epochs, "validation_fold_epochs": args.epochs,
                     "batch_size": 32, "optimizer": "AdamW 2e-3, one-cycle",
                     "loss": "BCE with logits, label 1 = fake, fake examples weighted n_real/n_fake",
                     "seed": args.seed, "seconds": round(train_seconds, 1),
                     **({"member_seeds": [args.seed + 100 * j for j in range(args.members)]}
                        if args.members > 1 else {}),
                     **({"darts_search_epochs": args.search_epochs} if name == "darts" else {})},
        "validation": {
            "protocol": "leave-one-source-out over the pool's source repositories; whole-clip scoring "
                        "(3 s windows, 50% hop, mean P(fake)); EER per held-out source with both classes",
            **card_figures(summary),
        },
        "calibration": summary.get("calibration"),
        "threshold": summary.get("threshold"),
        "threshold_source": "EER threshold on pooled leave-one-source-out validation scores (calibrated)",
        "sha256": sha256_of(path),
        "date": dt.date.today().isoformat(),
    }
    (out_dir / f"{name}.json").write_text(json.dumps(clean_json(card), indent=2) + "\n")
    return card


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="manifest CSV (path,label[,source_repo]), In-the-Wild meta.csv "
                                                 "(file,speaker,label) or a folder with real/ and fake/")
    p.add_argument("--models", default=",".join(MODEL_NAMES), help="families to train (comma-separated)")
    p.add_argument("--out", default=str(REPO / "assets" / "models"), help="where weights and cards go")
    p.add_argument("--epochs", type=int, default=6, help="training epochs (one augmented view per clip each)")
    p.add_argument("--final-epochs", type=int, default=0, help="epochs of the final model (0 = --epochs)")
    p.add_argument("--search-epochs", type=int, default=2, help="DARTS architecture-search epochs")
    p.add_argument("--variants", type=int, default=6, help="augmented views per clip in the feature bank")
    p.add_argument("--aug-strength", type=float, default=0.4,
                   help="scales the probability of each augmentation (1.0: silence/band-limit/noise .3, codec .35)")
    p.add_argument("--band-limit", type=float, default=None, metavar="P",
                   help="probability of the band-limit step (through 8/11.025/12 kHz, both classes alike), "
                        "instead of 0.3 x --aug-strength")
    p.add_argument("--folds", choices=["loso", "none"], default="loso",
                   help="leave-one-group-out validation (groups = source repo/speaker/folder), or none")
    p.add_argument("--no-griffin-lim", dest="griffin_lim", action="store_false",
                   help="do not add Griffin-Lim resynthesised real clips as extra fakes")
    p.add_argument("--source-filter", type=int, default=0, metavar="N",
                   help="add N real clips (a seeded draw, first 6 s) rebuilt from pitch and spectral envelope "
                        "(core/training/source_filter.py) as extra fakes of their own source; never validated on")
    p.add_argument("--espeak", type=int, default=0, metavar="N",
                   help="add N espeak-ng clips (formant/Klatt synthesis, core/training/synthetic_speech.py) as extra "
                        "fakes; they train in every fold and are never validated on (needs espeak-ng)")
    p.add_argument("--exclude", action="append", metavar="COLUMN=VALUE",
                   help="drop manifest rows, e.g. attack_type=codec_resynthesis (repeatable)")
    p.add_argument("--limit", type=int, default=0, help="use a random subset of this many clips (smoke tests)")
    p.add_argument("--seed", type=int, default=0, help="random seed (data order, augmentation, init)")
    p.add_argument("--front-end", choices=["logmel64", "loglin64"], default=None,
                   help="train on this front end instead of the registry's (the card records it)")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                   help="blend each training batch with a shuffled copy of itself (features and labels) by a "
                        "Beta(ALPHA, ALPHA) weight; 0 = off")
    p.add_argument("--members", type=int, default=1,
                   help="networks per family trained from different seeds and averaged (their mean logit)")
    p.add_argument("--fp16", action="store_true", help="store weights as float16")
    p.add_argument("--cache", default=str(REPO / "runs" / "cache"), help="cache for decoded audio + bank ('' = none)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--report", default=str(REPO / "reports" / "validation.md"),
                   help="markdown validation report, written once all six families have out-of-fold scores")


def train_command(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    log_path = out_dir / "train.log"
    out_dir.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        line = f"[{dt.datetime.now():%H:%M:%S}] {msg}"
        print(line, file=sys.stderr, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for n in names:
        get_set("shipped").spec(n)
    front_ends = {n: family_front_end(n, args) for n in names}
    pool, banks = prepare(args, log, tuple(dict.fromkeys(front_ends.values())))
    for name in names:
        res = run_family(name, args, pool, *banks[front_ends[name]], log)
        summary = summarise(name, res, pool)
        np.save(out_dir / f"{name}.oof.npy", res["oof"])
        save_window_logits(out_dir / f"{name}.oof_logits.npz", res["oof_logits"])
        card = write_card(name, out_dir, res["model"], summary, args, pool, res["genotype"], res["train_seconds"])
        v = card["validation"]
        log(f"{name}: mean LOSO EER {v.get('mean_group_eer')}, pooled EER {v.get('pooled_eer')}, "
            f"threshold {card['threshold']}, {res['train_seconds']:.0f}s")
    if args.folds == "loso" and all((out_dir / f"{n}.oof.npy").is_file() for n in MODEL_NAMES):
        ens = write_ensemble(out_dir, pool, Path(args.report) if args.report else None)
        log(f"ensemble: mean LOSO EER {ens['validation']['mean_group_eer']}, threshold {ens['threshold']}")
    return 0


# ---------------------------------------------------------------- merge


def add_merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="output folders of runs that differ only in --seed")
    p.add_argument("--data", required=True, help="the labelled source the runs were trained on")
    p.add_argument("--models", default="gnn", help="families to merge (comma-separated)")
    p.add_argument("--out", required=True, help="where the merged weights and cards go")
    p.add_argument("--exclude", action="append", metavar="COLUMN=VALUE", help="as given to train (repeatable)")
    p.add_argument("--report", default=str(REPO / "reports" / "validation.md"),
                   help="markdown validation report, written once all six families have out-of-fold scores in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def merge_command(args) -> int:
    """Replicate runs of a family -> one seed average with exact out-of-fold figures (core/training/merge_runs.py)."""
    from .merge_runs import merge_runs
    from .trainset import decode_pool

    out_dir = Path(args.out)
    pool = decode_pool(read_labelled(args.data, exclude_spec(args.exclude)), quiet=args.quiet)
    for name in [n.strip() for n in args.models.split(",") if n.strip()]:
        card = merge_runs(name, [Path(r) for r in args.runs], out_dir, pool)
        v = card["validation"]
        print(f"{name}: {card['architecture']['members']} members from seeds {card['training']['seed']}: "
              f"mean LOSO EER {v.get('mean_group_eer')}, pooled EER {v.get('pooled_eer')}, "
              f"AUC {v.get('pooled_auc')}, threshold {card['threshold']}", file=sys.stderr)
    if all((out_dir / f"{n}.oof.npy").is_file() for n in MODEL_NAMES):
        ens = write_ensemble(out_dir, pool, Path(args.report) if args.report else None)
        print(f"ensemble: mean LOSO EER {ens['validation']['mean_group_eer']}, threshold {ens['threshold']}",
              file=sys.stderr)
    return 0


# ---------------------------------------------------------------- evaluate


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="labelled source: manifest CSV, meta.csv, or real/ + fake/ folder")
    p.add_argument("--set", default="auto", help="model set: auto, seed or shipped")
    p.add_argument("--models", default=None, help="comma-separated model names (default: all)")
    p.add_argument("--weights-dir", default=None, help="folder with checkpoints by their file names")
    p.add_argument("--report", default="evaluation.md", help="markdown report to write")
    p.add_argument("--csv", default=None, help="also write per-file scores to this CSV")
    p.add_argument("--exclude", action="append", metavar="COLUMN=VALUE", help="drop manifest rows (repeatable)")
    p.add_argument("--limit", type=int, default=0, help="score a random subset of this many files")
    p.add_argument("--seed", type=int, default=0, help="seed for --limit")


def evaluate_command(args) -> int:
    """Score a labelled source with a model set; per-group and overall EER/AUC -> markdown report."""
    import pandas as pd

    from ..batch import result_to_row
    from ..inference import Detector

    items = limit_items(read_labelled(args.data, exclude_spec(args.exclude)), args.limit, args.seed)
    det = Detector.from_set(args.set, args.models, args.weights_dir)
    names = [m.name for m in det.models]
    rows = []
    for it, res in zip(items, progress(det.score_many([(it.path, it.path) for it in items]), "score",
                                        total=len(items))):
        row = result_to_row(res, names)
        row.update(label=it.label, group=it.group)
        rows.append(row)
    df = pd.DataFrame(rows)
    if args.csv:
        df.to_csv(args.csv, index=False)
    ok = df[df["p_fake_ensemble"] != ""]
    lines = [f"# Evaluation of set `{det.set_name}` on `{args.data}`", "",
             f"{len(df)} files, {len(ok)} scored, {len(df) - len(ok)} errors. Labels: 1 = fake. "
             "Scores: P(fake), higher = more likely fake.", "",
             "| model | EER % | AUC | threshold used | accuracy at it |", "|---|---|---|---|---|"]
    for n in names + ["ensemble"]:
        col = f"p_fake_{n}"
        sub = ok[ok[col] != ""]
        y, p = sub["label"].astype(int).values, sub[col].astype(float).values
        thr = det.loaded.ensemble_threshold if n == "ensemble" else next(m.threshold for m in det.models if m.name == n)
        e, _ = eer(y, p)
        lines.append(f"| {n} | {100 * e:.1f} | {roc_auc(y, p):.3f} | {thr:.3f} | "
                     f"{error_rates(y, p, thr)['accuracy']:.3f} |")
    lines += ["", "Per group (ensemble):", "", "| group | real | fake | EER % | accuracy |", "|---|---|---|---|---|"]
    for g, sub in ok.groupby("group"):
        y, p = sub["label"].astype(int).values, sub["p_fake_ensemble"].astype(float).values
        e, _ = eer(y, p)
        lines.append(f"| {g} | {(y == 0).sum()} | {(y == 1).sum()} | "
                     f"{'n/a' if not math.isfinite(e) else f'{100 * e:.1f}'} | "
                     f"{error_rates(y, p, det.loaded.ensemble_threshold)['accuracy']:.3f} |")
    Path(args.report).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if len(ok) else 1


