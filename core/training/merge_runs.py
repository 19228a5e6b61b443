"""Replicate training runs of one family merged into one seed average, validated exactly.

Why: the training seed alone can move a family's leave-one-source-out EER by several points
(README, sessions 8-9). Training one configuration with several `--seed`s and shipping their merge
ships the configuration rather than one lucky or unlucky draw of it. Each run keeps its out-of-fold window
logits (`<name>.oof_logits.npz`); a SeedAverage outputs the mean logit of its members, so the
member-weighted mean of the runs' window logits is exactly what the merged model's fold models
would have scored. Its validation figures, calibration and threshold are therefore measured, not
estimated.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .oof import clip_scores, group_figures, read_window_logits, save_window_logits
from .trainset import Pool


def _members(card: dict) -> int:
    return int((card.get("architecture") or {}).get("members", 1))


def _check_alike(name: str, cards: list[dict], runs: list[Path]) -> None:
    """Runs must differ only in their seed: same family, front end, schedule, data and folds."""
    def key(c: dict) -> dict:
        t = {k: v for k, v in c["training"].items() if k not in ("seed", "seconds", "member_seeds")}
        return {"front_end": c["front_end"], "training": t, "augmentation": c["augmentation"],
                "data": c["training_data"], "folds": sorted(c["validation"]["per_group"]),
                "class": (c["architecture"].get("member_class") or c["architecture"]["class"])}
    ref = key(cards[0])
    for c, r in zip(cards[1:], runs[1:]):
        diff = [k for k, v in key(c).items() if v != ref[k]]
        if diff:
            raise ConfigError(f"{r / name}.json differs from {runs[0] / name}.json in {', '.join(diff)}: "
                              "only runs that differ in --seed can be merged")
    seeds = [c["training"]["seed"] for c in cards]
    if len(set(seeds)) < len(seeds):
        raise ConfigError(f"runs share a seed ({seeds}): merging them would count one draw twice")


def merged_state_dict(states: list[dict], members: list[int]) -> dict:
    """Renumber each run's networks as members of one SeedAverage."""
    out, offset = {}, 0
    for sd, k in zip(states, members):
        for key, v in sd.items():
            if k > 1:
                j, rest = key.split(".", 2)[1:]
                out[f"members.{offset + int(j)}.{rest}"] = v
            else:
                out[f"members.{offset}.{key}"] = v
        offset += k
    return out


def merge_runs(name: str, runs: list[Path], out_dir: Path, pool: Pool) -> dict:
    """Write `<name>.safetensors`, its card, `.oof.npy` and `.oof_logits.npz` for the merge into out_dir."""
    from safetensors.torch import load_file, save_file

    from ..models.registry import get_set
    from .validation_report import card_figures, clean_json, summarise
    from ..weights import sha256_of

    if len(runs) < 2:
        raise ConfigError("merge needs at least two runs")
    if any(Path(r).resolve() == Path(out_dir).resolve() for r in runs):
        raise ConfigError(f"--out {out_dir} is one of the runs: the merge would overwrite it")
    cards = [json.loads((r / f"{name}.json").read_text()) for r in runs]
    _check_alike(name, cards, runs)
    members = [_members(c) for c in cards]
    logits = [read_window_logits(r / f"{name}.oof_logits.npz") for r in runs]
    clips = sorted(logits[0])
    if any(sorted(z) != clips for z in logits[1:]):
        raise ConfigError("the runs scored different out-of-fold clips: were they trained on the same data?")
    if clips and (max(clips) >= len(pool.labels) or cards[0]["training_data"]["clips"] != sum(
            o == "pool" for o in pool.origin)):
        raise ConfigError("the decoded data does not match the runs' training data (clip counts differ)")
    total = sum(members)
    merged = {c: sum(k * z[c].astype(np.float64) for k, z in zip(members, logits)) / total for c in clips}
    oof = np.full(len(pool.labels), np.nan)
    idx = np.array(clips, dtype=np.int64)
    oof[idx] = clip_scores([merged[c] for c in clips])

    groups = np.array(pool.groups)
    per_group = {}
    for g in cards[0]["validation"]["per_group"]:
        sel = idx[groups[idx] == g]
        per_group[g] = group_figures(pool.labels[sel], oof[sel])
        runs_eer = [c["validation"]["per_group"][g].get("eer") for c in cards]
        if all(e is not None for e in runs_eer):
            per_group[g]["run_eers"] = runs_eer
    summary = summarise(name, {"per_group": per_group, "oof": oof}, pool)

    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = get_set("shipped").spec(name).checkpoint
    state = merged_state_dict([load_file(str(r / checkpoint)) for r in runs], members)
    path = out_dir / checkpoint
    save_file(state, str(path))
    np.save(out_dir / f"{name}.oof.npy", oof)
    save_window_logits(out_dir / f"{name}.oof_logits.npz", {c: merged[c].astype(np.float32) for c in clips})

    card = json.loads(json.dumps(cards[0]))
    arch = cards[0]["architecture"]
    card["architecture"].update({"class": "SeedAverage", "members": total,
                                 "member_class": arch.get("member_class", arch["class"])})
    card["parameters"] = int(sum(c["parameters"] for c in cards))
    card["training"].update(
        seed=[c["training"]["seed"] for c in cards],
        seconds=round(sum(c["training"]["seconds"] for c in cards), 1),
        member_seeds=[s for c in cards for s in c["training"].get("member_seeds", [c["training"]["seed"]])])
    card["merged_from"] = [{"run": str(r), "seed": c["training"]["seed"], "members": k,
                            "mean_group_eer": c["validation"].get("mean_group_eer"),
                            "pooled_eer": c["validation"].get("pooled_eer"),
                            "pooled_auc": c["validation"].get("pooled_auc")}
                           for r, c, k in zip(runs, cards, members)]
    card["validation"] = {
        "protocol": cards[0]["validation"]["protocol"] + "; merged runs: out-of-fold scores from the "
                    "member-weighted mean of the runs' window logits (exactly the merged fold models)",
        **card_figures(summary)}
    card["calibration"] = summary.get("calibration")
    card["threshold"] = summary.get("threshold")
    card["sha256"] = sha256_of(path)
    card["date"] = dt.date.today().isoformat()
    (out_dir / f"{name}.json").write_text(json.dumps(clean_json(card), indent=2) + "\n")
    return card
