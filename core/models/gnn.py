"""Graph networks over the spectrogram.

`SeedGCN` is the seed's GNN: nodes are the 250 time frames of front end A, node features
the 50 mel bins, edges a 5-nearest-neighbour graph (Euclidean, the node itself counted as
one of its 5, messages flowing from a node to the neighbours it chose), two GCN layers
with symmetric normalisation and self-loops added where missing, then the mean over nodes.
It is written in plain torch (dense adjacency per clip) so torch_geometric is not needed at
run time; the tests check it against torch_geometric's GCNConv and scikit-learn's graph.
Exact ties in distance (identical frames, e.g. zero padding) may pick different neighbours
than scikit-learn does.

`GraphAttentionNet` is the project's compact GNN, in the spirit of AASIST: a small conv
encoder, then graph attention over a temporal graph (nodes = time segments) and over a
spectral graph (nodes = frequency bands), each pooled to its strongest nodes and read out.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DenseGCNLayer(nn.Module):
    """GCNConv with PyG's key names (`lin.weight`, `bias`), over a dense [B, N, N] adjacency."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.lin = nn.Linear(d_in, d_out, bias=False)
        self.bias = nn.Parameter(torch.zeros(d_out))

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """`adj[b, i, j] = 1` for an edge i -> j (message from i, aggregated at j)."""
        deg = adj.sum(dim=1)  # in-degree of each target node
        dinv = deg.clamp(min=1e-12).rsqrt() * (deg > 0)
        norm = dinv.unsqueeze(2) * adj * dinv.unsqueeze(1)  # [B, src, dst]
        return norm.transpose(1, 2) @ self.lin(x) + self.bias


def knn_adjacency(x: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Dense kNN graph, node included as its own neighbour, self-loops added where missing."""
    xd = x.double()
    dist = torch.cdist(xd, xd)
    n = x.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    dist = dist.masked_fill(eye, -1.0)  # the node itself is always its nearest neighbour
    idx = dist.topk(min(k, n), dim=-1, largest=False).indices  # [B, N, k]
    adj = torch.zeros(x.shape[0], n, n, dtype=x.dtype, device=x.device)
    adj.scatter_(2, idx, 1.0)
    return torch.maximum(adj, eye.to(x.dtype))


class SeedGCN(nn.Module):
    """The seed's `GNNClassifier`. Output: one logit of P(real) per clip."""

    def __init__(self, n_mels: int = 50, hidden: int = 32, k: int = 5):
        super().__init__()
        self.k = k
        self.conv1 = DenseGCNLayer(n_mels, hidden)
        self.conv2 = DenseGCNLayer(hidden, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = feats.transpose(1, 2)  # [B, frames, mels]: nodes are frames
        adj = knn_adjacency(x, self.k)
        h = F.relu(self.conv1(x, adj))
        return self.conv2(h, adj).mean(dim=1).squeeze(-1)


class GraphAttention(nn.Module):
    """Attention over a fully connected graph, AASIST-style: pairwise products -> weights."""

    def __init__(self, d_in: int, d_out: int, temperature: float = 2.0):
        super().__init__()
        self.att_proj = nn.Linear(d_in, d_out)
        self.att_weight = nn.Parameter(torch.randn(d_out, 1) * 0.1)
        self.with_att = nn.Linear(d_in, d_out)
        self.without_att = nn.Linear(d_in, d_out)
        self.norm = nn.BatchNorm1d(d_out)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, d]
        pair = torch.tanh(self.att_proj(x.unsqueeze(2) * x.unsqueeze(1)))  # [B, N, N, d_out]
        att = torch.softmax((pair @ self.att_weight).squeeze(-1) / self.temperature, dim=-1)
        out = self.with_att(att @ x) + self.without_att(x)
        return F.selu(self.norm(out.transpose(1, 2)).transpose(1, 2))


class GraphPool(nn.Module):
    """Keep the top fraction of nodes by a learned score (gated by it)."""

    def __init__(self, d: int, keep: float = 0.5):
        super().__init__()
        self.score = nn.Linear(d, 1)
        self.keep = keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.score(x))  # [B, N, 1]
        k = max(1, int(x.shape[1] * self.keep))
        idx = s.squeeze(-1).topk(k, dim=1).indices
        gathered = (x * s).gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return gathered


class GraphAttentionNet(nn.Module):
    """Compact GNN on the project's log-mel. Output: one logit of P(fake) per clip."""

    def __init__(self, channels: int = 32, d: int = 48, t_nodes: int = 38, f_nodes: int = 16):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, channels // 2, 3, padding=1), nn.BatchNorm2d(channels // 2), nn.SELU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels // 2, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.SELU(),
            nn.MaxPool2d(2),
        )
        self.t_nodes, self.f_nodes = t_nodes, f_nodes
        self.t_proj = nn.Linear(channels, d)
        self.f_proj = nn.Linear(channels, d)
        self.t_gat1, self.t_gat2 = GraphAttention(d, d), GraphAttention(d, d)
        self.f_gat1, self.f_gat2 = GraphAttention(d, d), GraphAttention(d, d)
        self.t_pool, self.f_pool = GraphPool(d), GraphPool(d)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(4 * d, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.encoder(feats.unsqueeze(1))  # [B, C, F', T']
        t = F.adaptive_max_pool2d(h, (1, self.t_nodes)).squeeze(2).transpose(1, 2)  # [B, Tn, C]
        f = F.adaptive_max_pool2d(h, (self.f_nodes, 1)).squeeze(3).transpose(1, 2)  # [B, Fn, C]
        t = self.t_pool(self.t_gat2(self.t_gat1(self.t_proj(t))))
        f = self.f_pool(self.f_gat2(self.f_gat1(self.f_proj(f))))
        z = torch.cat([t.max(1).values, t.mean(1), f.max(1).values, f.mean(1)], dim=-1)
        return self.head(self.drop(z)).squeeze(-1)
