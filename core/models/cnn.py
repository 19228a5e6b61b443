"""The three CNN families (SENet, ResNet, Res2Net), built with timm.

Seed shapes reproduce the seed's wrappers key for key: `model` = the timm backbone and,
for Res2Net, a top-level `fc = Linear(1000, 1)` after the backbone's own 1000-way head.
They take front end A repeated to 3 channels, with no resize and no ImageNet norm.

Compact shapes are small, shallow members of the same families on one input channel: a 3x3
stem, two residual blocks of the family (timm's BasicBlock for resnet, BasicBlock with SE
attention for senet, Bottle2neck with scale 4 for res2net) with 2x2 max-pooling between them,
then the maximum over frequency and the mean and maximum over time. Shallow and local on
purpose: on the pool's leave-one-source-out folds the 4-stage ResNets (receptive field over the
whole spectrogram) were near chance on unseen sources, while local artefact detectors pooled
by their strongest response transferred (reports/validation.md).
"""

from __future__ import annotations

import timm
import torch
from timm.models.res2net import Bottle2neck
from timm.models.resnet import BasicBlock
from torch import nn

SEED_BACKBONES = {"senet": "senet154", "resnet": "resnet18", "res2net": "res2net50_26w_4s"}


class SeedCNN(nn.Module):
    """The seed's `SENetClassifier` / `ResNetClassifier` / `Res2NetClassifier`.

    Output: one logit of P(real) per clip.
    """

    def __init__(self, family: str):
        super().__init__()
        if family == "res2net":
            self.model = timm.create_model(SEED_BACKBONES[family], pretrained=False, num_classes=1000)
            self.fc = nn.Linear(1000, 1)
        else:
            self.model = timm.create_model(SEED_BACKBONES[family], pretrained=False, num_classes=1)
            self.fc = None

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """`feats` is `[B, n_mels, frames]`; repeated to 3 channels as the seed did."""
        x = feats.unsqueeze(1).repeat(1, 3, 1, 1)
        out = self.model(x)
        if self.fc is not None:
            out = self.fc(out)
        return out.squeeze(-1)


COMPACT_CHANNELS = (16, 32, 64)


def _block(family: str, c_in: int, c_out: int) -> nn.Module:
    """One residual block of the family, c_in -> c_out channels at the same resolution."""
    down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
    if family == "resnet":
        return BasicBlock(c_in, c_out, downsample=down)
    if family == "senet":
        return BasicBlock(c_in, c_out, downsample=down, attn_layer="se")
    if family == "res2net":  # Bottle2neck expands its width x4
        return Bottle2neck(c_in, c_out // 4, downsample=down, base_width=64, scale=4,
                           norm_layer=nn.BatchNorm2d, act_layer=nn.ReLU)
    raise ValueError(f"no compact CNN for family {family!r}")


class CompactCNN(nn.Module):
    """A compact, shallow CNN of the family on the project's log-mel. Output: one logit of P(fake)."""

    def __init__(self, family: str, channels: tuple[int, int, int] = COMPACT_CHANNELS, dropout: float = 0.3):
        super().__init__()
        c0, c1, c2 = channels
        self.stem = nn.Sequential(nn.Conv2d(1, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.block1 = _block(family, c0, c1)
        self.pool = nn.MaxPool2d(2)
        self.block2 = _block(family, c1, c2)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * c2, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.block2(self.pool(self.block1(self.stem(feats.unsqueeze(1)))))  # [B, C, F/4, T/4]
        h = h.amax(dim=2)                                  # strongest response over frequency
        z = torch.cat([h.amax(dim=2), h.mean(dim=2)], dim=1)
        return self.head(self.drop(z)).squeeze(-1)
