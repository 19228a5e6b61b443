"""Recurrent models over mel frames.

`SeedLSTM` is the seed's `LSTMClassifier`: one LSTM layer (128 mel bins -> 32) over the
frames of front end B, a linear layer on the last time step; its output is a logit of P(real).

`BiLSTM` is the project's compact model: a light conv front that halves time, then a
two-layer bidirectional LSTM and attentive pooling over time; output a logit of P(fake).
"""

from __future__ import annotations

import torch
from torch import nn


class SeedLSTM(nn.Module):
    def __init__(self, d_in: int = 128, hidden: int = 32):
        super().__init__()
        self.lstm = nn.LSTM(d_in, hidden, num_layers=1, batch_first=True)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(feats.transpose(1, 2))
        return self.fc(h[:, -1, :]).squeeze(-1)


class BiLSTM(nn.Module):
    def __init__(self, n_mels: int = 64, conv: int = 64, hidden: int = 96):
        super().__init__()
        self.front = nn.Sequential(
            nn.Conv1d(n_mels, conv, 5, stride=2, padding=2), nn.BatchNorm1d(conv), nn.GELU(),
        )
        self.lstm = nn.LSTM(conv, hidden, num_layers=2, batch_first=True, bidirectional=True, dropout=0.2)
        self.att = nn.Linear(2 * hidden, 1)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(4 * hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.front(feats).transpose(1, 2)  # [B, T/2, conv]
        h, _ = self.lstm(x)
        w = torch.softmax(self.att(h), dim=1)
        pooled = torch.cat([(w * h).sum(1), h.max(1).values], dim=-1)
        return self.head(pooled).squeeze(-1)
