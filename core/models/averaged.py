"""Several networks of one family, trained alike from different random seeds, read as one model.

Why: on the pool's leave-one-source-out folds one seed of the same compact network can land
several EER points away from another (reports/validation.md); the mean of their logits is steadier
on sources none of them saw. Parameters and time grow with the number of members, which the
compact families can afford (20-75 k parameters each).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class SeedAverage(nn.Module):
    """`members` networks with the same input; output = the mean of their logits."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(feats) for m in self.members]).mean(dim=0)


def with_members(card: dict | None, make: Callable[[], nn.Module]) -> nn.Module:
    """One network, or a SeedAverage of `card["architecture"]["members"]` of them."""
    k = int(((card or {}).get("architecture") or {}).get("members", 1))
    return make() if k <= 1 else SeedAverage([make() for _ in range(k)])
