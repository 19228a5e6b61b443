"""PC-DARTS with LSTM layers.

`SeedDarts` is the seed's `PC_DARTS_Model` key for key: three modules each holding an
`lstm` (128 -> 128) that return the last time step, then `fc`, and a sigmoid inside
`forward`, so its output is already P(real). In the seed, layers 1 and 2 received a 2-D
`[B, 128]` tensor, which PyTorch runs as one unbatched sequence of length B: a clip's score
depended on its batch neighbours. Here each clip is its own length-1 sequence, which is what
the seed computes for a batch of one, for every clip of any batch.

`SearchedDarts` is the project's DARTS that really searches: a small cell of mixed
operations (softmax architecture weights `alpha`, partial channel connections with K=4,
edge normalisation `beta`, as in PC-DARTS) over the log-mel, then an LSTM layer that reads
each frame's frequency bands.
`derive_genotype()` turns the search into a discrete cell; `DartsLSTM(genotype)` is the
network built from that genotype and trained from scratch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# ---------------------------------------------------------------- seed shape


class _SeedLayer(nn.Module):
    def __init__(self, d_in: int, d_hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(d_in, d_hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0][:, -1, :]


class SeedDarts(nn.Module):
    """The seed's PC-DARTS. Output: P(real) (already a probability)."""

    def __init__(self, d: int = 128, n_layers: int = 3):
        super().__init__()
        self.layers = nn.ModuleList([_SeedLayer(d, d) for _ in range(n_layers)])
        self.fc = nn.Linear(d, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = feats.transpose(1, 2)  # [B, frames, mels]
        x = self.layers[0](x)
        for layer in self.layers[1:]:
            x = layer(x.unsqueeze(1))  # each clip: a sequence of length 1, as with batch size 1
        return torch.sigmoid(self.fc(x)).squeeze(-1)


# ---------------------------------------------------------------- the searched DARTS

OPS = ("none", "skip_connect", "avg_pool_3x3", "max_pool_3x3", "sep_conv_3x3", "dil_conv_3x3")
N_NODES = 3  # intermediate nodes per cell


def _op(name: str, c: int) -> nn.Module:
    if name == "none":
        return _Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, 1, 1)
    if name == "sep_conv_3x3":
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False),
                             nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c, affine=False))
    if name == "dil_conv_3x3":
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, 1, 2, dilation=2, groups=c, bias=False),
                             nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c, affine=False))
    raise ValueError(name)


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.0


def _shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class MixedOp(nn.Module):
    """PC-DARTS edge: 1/K of the channels go through the softmax-weighted ops, the rest bypass."""

    def __init__(self, c: int, k: int = 4):
        super().__init__()
        self.k = k
        self.ops = nn.ModuleList([_op(name, c // k) for name in OPS])

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        part = x.shape[1] // self.k
        xa, xb = x[:, :part], x[:, part:]
        ya = sum(w * op(xa) for w, op in zip(weights, self.ops))
        return _shuffle(torch.cat([ya, xb], dim=1), self.k)


def _edges() -> list[tuple[int, int]]:
    """(node, input) pairs: node i takes the cell input (0) and every earlier node."""
    return [(i, j) for i in range(N_NODES) for j in range(i + 1)]


class _SearchCell(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.edges = nn.ModuleList([MixedOp(c) for _ in _edges()])
        self.out = nn.Sequential(nn.Conv2d(c * N_NODES, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor, alpha: torch.Tensor, beta: list[torch.Tensor]) -> torch.Tensor:
        states, e = [x], 0
        for i in range(N_NODES):
            b = torch.softmax(beta[i], dim=0)
            s = 0
            for j in range(i + 1):
                s = s + b[j] * self.edges[e](states[j], torch.softmax(alpha[e], dim=0))
                e += 1
            states.append(s)
        return F.relu(self.out(torch.cat(states[1:], dim=1)) + x)


class _FixedCell(nn.Module):
    def __init__(self, c: int, genotype: list[list]):
        super().__init__()
        self.genotype = genotype
        self.ops = nn.ModuleList([nn.ModuleList([_op(op, c) for op, _ in node]) for node in genotype])
        self.out = nn.Sequential(nn.Conv2d(c * N_NODES, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for node, ops in zip(self.genotype, self.ops):
            states.append(sum(op(states[j]) for op, (_, j) in zip(ops, node)))
        return F.relu(self.out(torch.cat(states[1:], dim=1)) + x)


class _Trunk(nn.Module):
    """Stem -> cell -> reduce -> cell -> at every frame an LSTM across the frequency bands -> logit.

    The cells are supplied (searched or fixed). The bidirectional LSTM reads each frame's bands
    from low to high; the strongest band response per frame is pooled over time (max and mean).
    With a 2-layer LSTM over time after the cells (session 1) the mean leave-one-source-out EER
    was 43%; reading bands per frame it is 35% (reports/validation.md).
    """

    def __init__(self, c: int, cells: list[nn.Module], lstm_hidden: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.cell1, self.cell2 = cells
        self.reduce = nn.Sequential(nn.Conv2d(c, 2 * c, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU())
        self.lstm = nn.LSTM(2 * c, lstm_hidden // 2, num_layers=1, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * lstm_hidden, 1)

    def encode(self, feats: torch.Tensor, run_cell1, run_cell2) -> torch.Tensor:
        x = run_cell1(self.stem(feats.unsqueeze(1)))
        h = run_cell2(self.reduce(x))                    # [B, 2c, F/4, T/4]
        b, c, f, t = h.shape
        out, _ = self.lstm(h.permute(0, 3, 2, 1).reshape(b * t, f, c))  # one band sequence per frame
        per_frame = out.amax(dim=1).view(b, t, -1)
        return self.head(torch.cat([per_frame.amax(dim=1), per_frame.mean(dim=1)], dim=-1)).squeeze(-1)


class SearchedDarts(nn.Module):
    """The search network: mixed operations with architecture weights alpha and beta."""

    def __init__(self, c: int = 16, lstm_hidden: int = 64):
        super().__init__()
        self.trunk = _Trunk(c, [_SearchCell(c), _SearchCell(2 * c)], lstm_hidden)
        n_edges = len(_edges())
        self.alpha = nn.Parameter(1e-3 * torch.randn(n_edges, len(OPS)))
        self.beta = nn.ParameterList([nn.Parameter(1e-3 * torch.randn(i + 1)) for i in range(N_NODES)])

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alpha, *self.beta]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        beta = list(self.beta)
        return self.trunk.encode(feats, lambda x: self.trunk.cell1(x, self.alpha, beta),
                                 lambda x: self.trunk.cell2(x, self.alpha, beta))

    def derive_genotype(self, inputs_per_node: int = 2) -> list[list]:
        """Each node keeps its strongest `inputs_per_node` inputs (beta x best non-zero op)."""
        alpha = torch.softmax(self.alpha.detach(), dim=-1)
        genotype, e = [], 0
        for i in range(N_NODES):
            b = torch.softmax(self.beta[i].detach(), dim=0)
            cands = []
            for j in range(i + 1):
                w = alpha[e].clone()
                w[OPS.index("none")] = -1
                best = int(w.argmax())
                cands.append((float(b[j] * alpha[e, best]), OPS[best], j))
                e += 1
            cands.sort(reverse=True)
            genotype.append([[op, j] for _, op, j in cands[:inputs_per_node]])
        return genotype


class DartsLSTM(nn.Module):
    """The discrete network from a searched genotype. Output: one logit of P(fake)."""

    def __init__(self, genotype: list[list], c: int = 16, lstm_hidden: int = 64):
        super().__init__()
        self.genotype = genotype
        self.trunk = _Trunk(c, [_FixedCell(c, genotype), _FixedCell(2 * c, genotype)], lstm_hidden)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.trunk.encode(feats, self.trunk.cell1, self.trunk.cell2)
