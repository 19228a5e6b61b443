"""Recurrent models over mel frames.

`SeedLSTM` is the seed's `LSTMClassifier`: one LSTM layer (128 mel bins -> 32) over the
frames of front end B, a linear layer on the last time step; its output is a logit of P(real).

`BiLSTM` is the project's compact model: a small conv encoder, then a bidirectional LSTM that
reads each frame's frequency bands; output a logit of P(fake).
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
    """Compact LSTM: a 2-layer conv encoder, then at every frame a bidirectional LSTM reads the
    frequency bands from low to high; the strongest band response per frame is pooled over time
    (max and mean). Output: one logit of P(fake).

    On the pool's leave-one-source-out folds the session-1 BiLSTM (a Conv1d over all mel bins,
    then an LSTM over time) had 49% mean EER; this one has 41%, about what the same 2-D conv
    encoder followed by an LSTM over time gave (42%): the gain is the local conv encoder. The
    LSTM reads bands rather than frames so that, like the other compact models, it pools local
    evidence instead of following the sentence.
    """

    def __init__(self, conv: int = 32, hidden: int = 32):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, conv // 2, 3, padding=1), nn.BatchNorm2d(conv // 2), nn.SELU(), nn.MaxPool2d(2),
            nn.Conv2d(conv // 2, conv, 3, padding=1), nn.BatchNorm2d(conv), nn.SELU(), nn.MaxPool2d(2),
        )
        self.lstm = nn.LSTM(conv, hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(4 * hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.encoder(feats.unsqueeze(1))                      # [B, C, F/4, T/4]
        b, c, f, t = h.shape
        bands = h.permute(0, 3, 2, 1).reshape(b * t, f, c)        # one sequence of bands per frame
        out, _ = self.lstm(bands)                                 # [B*T, F, 2H]
        per_frame = out.amax(dim=1).view(b, t, -1)                # strongest band response per frame
        return self.head(torch.cat([per_frame.amax(dim=1), per_frame.mean(dim=1)], dim=-1)).squeeze(-1)
