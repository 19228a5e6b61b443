"""The three CNN families (SENet, ResNet, Res2Net), built with timm.

Seed shapes reproduce the seed's wrappers key for key: `model` = the timm backbone and,
for Res2Net, a top-level `fc = Linear(1000, 1)` after the backbone's own 1000-way head.
They take front end A repeated to 3 channels, with no resize and no ImageNet norm.

Compact shapes are small members of the same families (timm's ResNet class with narrow
stages; SE attention for senet, Bottle2neck blocks for res2net) on one input channel.
"""

from __future__ import annotations

import timm
import torch
from timm.models.res2net import Bottle2neck
from timm.models.resnet import BasicBlock, ResNet
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


COMPACT_CHANNELS = (16, 32, 64, 128)


def compact_cnn(family: str, channels: tuple[int, ...] = COMPACT_CHANNELS) -> ResNet:
    """A small 1-channel member of the family, about 0.1-0.3 M parameters."""
    common = dict(num_classes=1, in_chans=1, channels=channels, stem_width=channels[0], drop_rate=0.2)
    if family == "resnet":
        return ResNet(block=BasicBlock, layers=(1, 1, 1, 1), **common)
    if family == "senet":
        return ResNet(block=BasicBlock, layers=(1, 1, 1, 1), block_args=dict(attn_layer="se"), **common)
    if family == "res2net":
        # Bottle2neck expands x4, so its stage widths are half the others (similar size)
        narrow = tuple(max(8, c // 2) for c in channels)
        common.update(channels=narrow, stem_width=channels[0])
        return ResNet(block=Bottle2neck, layers=(1, 1, 1, 1), base_width=26, cardinality=1,
                      block_args=dict(scale=4), **common)
    raise ValueError(f"no compact CNN for family {family!r}")


class CompactCNN(nn.Module):
    """A compact CNN on the project's log-mel. Output: one logit of P(fake) per clip."""

    def __init__(self, family: str):
        super().__init__()
        self.net = compact_cnn(family)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats.unsqueeze(1)).squeeze(-1)
