"""What the detectors learn from: the labelled pool decoded once, and banks of augmented views.

Decoding (mono 16 kHz) happens once per run and is cached with the LOGMEL64 bank under
`--cache`; a bank for another front end is built from the same seed, so every front end sees
the same augmented audio. Griffin-Lim or source-filter resynthesis of real clips and espeak-ng
speech can add labelled fakes; they only ever train, never validate.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import TARGET_SR, load_audio
from .datasets import Item, read_labelled
from ..errors import ConfigError, DetectorError
from ..features import FRONT_ENDS, LOGMEL64, FrontEnd
from ..inference import window_starts
from ..models.registry import get_set


def progress(iterable, desc: str, total: int | None = None, quiet: bool = False):
    if quiet:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)


@dataclass
class Pool:
    """Decoded clips with labels and split groups; `origin` marks added fakes."""

    audio: list[np.ndarray]
    labels: np.ndarray
    groups: list[str]
    names: list[str]
    origin: list[str]          # "pool" | "griffinlim" | "sourcefilter" | "espeak"
    meta: list[dict]


def decode_pool(items: list[Item], quiet: bool = False) -> Pool:
    audio, labels, groups, names, meta = [], [], [], [], []
    for it in progress(items, "decode", quiet=quiet):
        try:
            a = load_audio(it.path)
        except DetectorError as e:
            print(f"skipping {it.path}: {e}", file=sys.stderr)
            continue
        if float(np.abs(a.samples).max()) == 0.0:
            continue
        audio.append(a.samples)
        labels.append(it.label)
        groups.append(it.group)
        names.append(it.path)
        meta.append({**it.meta, "original_rate": a.facts.original_rate})
    return Pool(audio, np.array(labels), groups, names, ["pool"] * len(audio), meta)


def _long_enough_reals(pool: Pool) -> list[int]:
    return [i for i in range(len(pool.audio)) if pool.labels[i] == 0 and len(pool.audio[i]) >= TARGET_SR // 2]


def _resynthesised(pool: Pool, indices, rebuild, origin: str, generator: str, max_s: float, quiet: bool) -> Pool:
    """Fakes rebuilt from the first max_s seconds of the given real clips, each in its clip's group."""
    out = Pool([], np.ones(len(indices), int), [], [], [], [])
    for i in progress(indices, generator, quiet=quiet):
        out.audio.append(rebuild(pool.audio[i][: int(max_s * TARGET_SR)]))
        out.groups.append(pool.groups[i])
        out.names.append(f"{pool.names[i]}#{origin}")
        out.origin.append(origin)
        out.meta.append({"attack_type": "vocoder_resynthesis", "generator": generator})
    return out


def griffin_lim_fakes(pool: Pool, rng: np.random.Generator, max_s: float = 6.0, quiet: bool = False) -> Pool:
    """Vocoder-style fakes: real clips through STFT magnitude -> Griffin-Lim (32 iterations)."""
    import torchaudio

    gl = torchaudio.transforms.GriffinLim(n_fft=1024, hop_length=256, n_iter=32, power=1.0)
    spec = torchaudio.transforms.Spectrogram(n_fft=1024, hop_length=256, power=1.0)

    def rebuild(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return gl(spec(torch.from_numpy(x))).numpy().astype(np.float32)

    return _resynthesised(pool, _long_enough_reals(pool), rebuild, "griffinlim", "griffin-lim", max_s, quiet)


def source_filter_fakes(pool: Pool, n: int, seed: int, max_s: float = 6.0, quiet: bool = False) -> Pool:
    """n real clips (a seeded draw) rebuilt by core/training/source_filter.py as fakes of their own group,
    so a held-out source never trains on its own clips' resyntheses."""
    from .source_filter import resynthesize

    real = _long_enough_reals(pool)
    rng = np.random.default_rng([seed, 11])
    chosen = [real[k] for k in sorted(rng.choice(len(real), min(n, len(real)), replace=False))] if n > 0 else []
    return _resynthesised(pool, chosen, lambda x: resynthesize(x, rng), "sourcefilter", "source-filter",
                          max_s, quiet)


def espeak_fakes(n: int, seed: int, quiet: bool = False) -> Pool:
    """n espeak-ng clips (core/training/synthetic_speech.py) as fakes of their own group, which no fold holds out."""
    from .synthetic_speech import training_clips

    clips = list(progress(training_clips(n, seed), "espeak-ng", total=n, quiet=quiet))
    return Pool([a for a, _ in clips], np.ones(len(clips), int), ["espeak-ng"] * len(clips),
                [f"espeak-ng#{i}" for i in range(len(clips))], ["espeak"] * len(clips), [m for _, m in clips])


def merge(a: Pool, b: Pool) -> Pool:
    return Pool(a.audio + b.audio, np.concatenate([a.labels, b.labels]), a.groups + b.groups,
                a.names + b.names, a.origin + b.origin, a.meta + b.meta)


def build_bank(pool: Pool, fe: FrontEnd, variants: int, seed: int, quiet: bool = False, strength: float = 1.0,
               band_limit_p: float | None = None):
    """`variants` augmented views per clip as float16 features of `fe`:
    (feats [N, n_mels, frames], clip index [N])."""
    from .augment import augment

    rng = np.random.default_rng(seed)
    n = fe.window_samples
    feats = torch.empty(len(pool.audio) * variants, fe.n_mels, fe.frames, dtype=torch.float16)
    clip = np.repeat(np.arange(len(pool.audio)), variants)
    k = 0
    for i in progress(range(len(pool.audio)), "augment", quiet=quiet):
        views = np.stack([augment(pool.audio[i], n, rng, strength, band_limit_p) for _ in range(variants)])
        feats[k:k + variants] = fe(torch.from_numpy(views)).half()
        k += variants
    return feats, clip


def eval_windows(x: np.ndarray, fe: FrontEnd, hop_fraction: float = 0.5) -> torch.Tensor:
    """Whole-clip windows exactly as the Detector cuts them (3 s, 50% hop, last flush with the end)."""
    w = fe.window_samples
    spans = window_starts(len(x), w, max(1, int(w * hop_fraction)))
    return torch.cat([fe(torch.from_numpy(x[s:e].copy()).unsqueeze(0)) for s, e in spans])


def exclude_spec(values: list[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for v in values or []:
        if "=" not in v:
            raise ConfigError(f"--exclude wants COLUMN=VALUE, got {v!r}")
        k, val = v.split("=", 1)
        out.setdefault(k, set()).add(val)
    return out


def limit_items(items: list, limit: int, seed: int) -> list:
    """A reproducible random subset of `limit` items, in their original order (0 = all of them)."""
    if not limit:
        return items
    rng = np.random.default_rng(seed)
    return [items[i] for i in sorted(rng.choice(len(items), min(limit, len(items)), replace=False))]


def prepare(args, log, front_ends=(LOGMEL64,)) -> tuple[Pool, dict]:
    """The decoded pool and, per front end, its bank of augmented views (cached under --cache).
    Every bank is built from the same seed, so all front ends see the same augmented audio."""
    cache = Path(args.cache) if args.cache else None
    band_p = args.band_limit
    key = (f"{Path(args.data).resolve()}|{args.variants}|{args.seed}|{args.griffin_lim}|{sorted(args.exclude or [])}"
           f"|{args.aug_strength}|{args.limit}" + (f"|espeak{args.espeak}" if args.espeak else "")
           + (f"|band{band_p}" if band_p is not None else "")
           + (f"|sourcefilter{args.source_filter}" if args.source_filter else ""))
    tag = hashlib.sha256(key.encode()).hexdigest()[:12]
    banks: dict[FrontEnd, tuple] = {}
    if cache and (cache / f"pool_{tag}.pt").is_file():
        blob = torch.load(cache / f"pool_{tag}.pt", weights_only=False)  # our own cache file, written below
        log(f"loaded cached pool and bank {cache / f'pool_{tag}.pt'}")
        pool, banks[LOGMEL64] = blob["pool"], (blob["feats"], blob["clip"])
    else:
        items = limit_items(read_labelled(args.data, exclude_spec(args.exclude)), args.limit, args.seed)
        pool = decode_pool(items, quiet=args.quiet)
        log(f"decoded {len(pool.audio)} clips ({int(pool.labels.sum())} fake, {int((1 - pool.labels).sum())} real), "
            f"{sum(len(a) for a in pool.audio) / TARGET_SR / 60:.1f} min")
        if args.griffin_lim:
            extra = griffin_lim_fakes(pool, np.random.default_rng(args.seed), quiet=args.quiet)
            log(f"added {len(extra.audio)} Griffin-Lim resynthesised fakes")
            pool = merge(pool, extra)
        if args.source_filter:
            extra = source_filter_fakes(pool, args.source_filter, args.seed, quiet=args.quiet)
            log(f"added {len(extra.audio)} source-filter resynthesised fakes")
            pool = merge(pool, extra)
        if args.espeak:
            extra = espeak_fakes(args.espeak, args.seed, quiet=args.quiet)
            log(f"added {len(extra.audio)} espeak-ng fakes")
            pool = merge(pool, extra)
        if cache or LOGMEL64 in front_ends:  # the cache file keeps the pool with its log-mel bank
            banks[LOGMEL64] = build_bank(pool, LOGMEL64, args.variants, args.seed, quiet=args.quiet,
                                         strength=args.aug_strength, band_limit_p=band_p)
        if cache:
            cache.mkdir(parents=True, exist_ok=True)
            torch.save({"pool": pool, "feats": banks[LOGMEL64][0], "clip": banks[LOGMEL64][1]},
                       cache / f"pool_{tag}.pt")
    for fe in front_ends:
        if fe in banks:
            continue
        path = cache / f"bank_{tag}_{fe.name}.pt" if cache else None
        if path and path.is_file():
            banks[fe] = torch.load(path, weights_only=False)
            log(f"loaded cached bank {path}")
            continue
        banks[fe] = build_bank(pool, fe, args.variants, args.seed, quiet=args.quiet, strength=args.aug_strength,
                               band_limit_p=band_p)
        if path:
            torch.save(banks[fe], path)
    return pool, banks


def family_front_end(name: str, args) -> FrontEnd:
    """The registry's front end for the family, unless --front-end names another (to try one out:
    the registry must then name it too before the weights can load)."""
    chosen = getattr(args, "front_end", None)
    return FRONT_ENDS[chosen] if chosen else get_set("shipped").spec(name).front_end


