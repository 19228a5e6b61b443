"""Turn a model set into ready-to-run models: build, resolve, load, attach card and threshold."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
import torch
from torch import nn

from .assessment import Band, band_from_card, fallback_band
from .errors import DetectorError, WeightsError
from .execution import for_inference, numeric_context
from .models.registry import ModelSet, ModelSpec, get_set, select_models
from .weights import Checkpoint, load_weights, read_card, resolve_checkpoint


@dataclass
class LoadedModel:
    """One network ready to score, with where its weights came from and how to read it."""

    spec: ModelSpec
    module: nn.Module
    checkpoint: Checkpoint
    card: dict = field(default_factory=dict)
    threshold: float = 0.5
    threshold_source: str = ""
    bf16_failed: bool = False     # set when a bf16 forward failed here; the model then runs in fp32

    @property
    def name(self) -> str:
        return self.spec.name

    @torch.no_grad()
    def p_fake(self, feats: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        """Features `[B, n_mels, frames]` -> calibrated P(fake) `[B]` (higher = more likely fake).

        `precision="bf16"` runs the network under bfloat16 autocast (core/execution.py); the
        output rule and the calibration always run in float32. Where this CPU's oneDNN has no
        bfloat16 kernel for a layer (LSTMs on CPUs without AVX-512), the model runs in float32
        from then on instead of failing."""
        if precision == "bf16" and not self.bf16_failed:
            try:
                with numeric_context(precision):
                    raw = self.module(feats)
            except RuntimeError:
                self.bf16_failed = True
                raw = self.module(feats)
        else:
            raw = self.module(feats)
        p = self.spec.p_fake(raw.float())
        cal = self.card.get("calibration") if self.card else None
        if cal and cal.get("method") == "platt":
            logit = torch.logit(p.clamp(1e-6, 1 - 1e-6))
            p = torch.sigmoid(cal["a"] * logit + cal["b"])
        return p

    def describe(self) -> dict:
        return {"name": self.name, "family": self.spec.family, "front_end": self.spec.front_end.name,
                "checkpoint": str(self.checkpoint.path), "source": self.checkpoint.source,
                "sha256": self.checkpoint.sha256, "threshold": self.threshold,
                "threshold_source": self.threshold_source}


@dataclass
class LoadedSet:
    model_set: ModelSet
    models: list[LoadedModel]
    ensemble_threshold: float
    ensemble_threshold_source: str
    ensemble_card: dict | None = None
    skipped: dict[str, str] = field(default_factory=dict)   # model name -> why it could not be loaded
    band: Band | None = None       # the inconclusive band (core/assessment.py) for this selection
    ensemble_calibration: dict | None = None   # Platt map of the ensemble's P(fake), when the card covers it


def load_model(model_set: ModelSet, spec: ModelSpec, weights_dir=None, allow_download=True,
               revision=None) -> LoadedModel:
    ckpt = resolve_checkpoint(model_set, spec, weights_dir, allow_download, revision)
    card = read_card(ckpt.path) or model_set.cards.get(spec.name) or {}
    try:
        module = spec.build(card)
    except (KeyError, TypeError) as e:
        raise WeightsError(f"{ckpt.path}: its model card lacks what the architecture needs ({e})") from None
    trained_on = (card.get("front_end") or {}).get("name")
    if trained_on and trained_on != spec.front_end.name:
        raise WeightsError(f"{ckpt.path}: trained on front end {trained_on!r}, but the registry feeds "
                           f"{spec.name} with {spec.front_end.name!r}; retrain or fix the registry entry")
    load_weights(module, ckpt.path)
    module = for_inference(module)  # BN folded, pools first, channels-last: same scores, faster (core/execution.py)
    if card.get("threshold") is not None:
        thr, src = float(card["threshold"]), card.get("threshold_source", f"model card {ckpt.path.name}")
    else:
        thr, src = model_set.default_threshold, model_set.threshold_source
    return LoadedModel(spec, module, ckpt, card, thr, src)


def available_sets() -> list[str]:
    from .models.registry import SETS

    return list(SETS)


def seed_available_offline(weights_dir=None) -> bool:
    """True when every seed checkpoint is in a local folder or the hub cache (no download)."""
    s = get_set("seed")
    try:
        for spec in s.specs:
            resolve_checkpoint(s, spec, weights_dir, allow_download=False)
        return True
    except DetectorError:
        return False


def resolve_set_name(name: str | None, weights_dir=None) -> str:
    """`auto` (the default): the seed set when its checkpoints are already on disk, else the shipped set."""
    if name in (None, "", "auto"):
        return "seed" if seed_available_offline(weights_dir) else "shipped"
    get_set(name)
    return name


def _weighted_models(ens_card: dict | None) -> list[str]:
    return sorted(n for n, w in ((ens_card or {}).get("weights") or {}).items() if w and w > 0)


def _card_covers(ens_card: dict, model_set: ModelSet, specs: list[ModelSpec]) -> bool:
    """The ensemble card's threshold holds for the whole set, or for any selection that keeps every
    model with a nonzero weight: the renormalised weights, hence the scores, are then the same."""
    weighted = _weighted_models(ens_card)
    return len(specs) == len(model_set.specs) or (bool(weighted) and set(weighted) <= {s.name for s in specs})


def load_set(name: str | None = "auto", models: str | list[str] | None = None,
             weights_dir: str | os.PathLike | None = None, allow_download: bool = True,
             revision: str | None = None) -> LoadedSet:
    model_set = get_set(resolve_set_name(name, weights_dir))
    specs = select_models(model_set, models)
    loaded, failures = [], {}
    for spec in specs:   # one damaged or missing checkpoint costs that model, not the whole set
        try:
            loaded.append(load_model(model_set, spec, weights_dir, allow_download, revision))
        except DetectorError as e:
            failures[spec.name] = e
    if not loaded:
        if len(failures) == 1:
            raise next(iter(failures.values()))
        raise WeightsError("no model could be loaded: " + "; ".join(f"{n}: {e}" for n, e in failures.items()))
    skipped = {n: str(e) for n, e in failures.items()}
    specs = [m.spec for m in loaded]
    # the ensemble card lives beside the checkpoints it was validated with
    folders = {m.checkpoint.path.parent for m in loaded}
    ens_card = None
    if len(folders) == 1 and (card_path := next(iter(folders)) / "ensemble.json").is_file():
        try:
            ens_card = json.loads(card_path.read_text())
        except (OSError, ValueError) as e:
            raise WeightsError(f"{card_path}: unreadable ensemble card ({e})") from None
    if ens_card and ens_card.get("threshold") is not None and _card_covers(ens_card, model_set, specs):
        thr, src = float(ens_card["threshold"]), ens_card.get("threshold_source", "ensemble card")
        band = band_from_card(ens_card, thr)
        calibration = ens_card.get("calibration")
    else:
        band, calibration = None, None
        weighted = _weighted_models(ens_card)
        thr, src = model_set.default_threshold, (
            model_set.threshold_source if model_set.name == "seed"
            else f"default 0.5 (the ensemble card's threshold needs {', '.join(weighted)} selected and loaded)" if weighted
            else "default 0.5 (no ensemble card for this selection)")
    return LoadedSet(model_set, loaded, thr, src, ens_card, skipped, band or fallback_band(thr), calibration)
