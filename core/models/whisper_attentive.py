"""The `whisper` detector with a trained pooling back end: attentive statistics pooling over
the frozen encoder's frames, instead of one mean and standard deviation per window.

Why: a linear model over a window's averages cannot tell a 4 s window with one synthetic
syllable from a uniformly slightly-off one; attention lets the frames that look generated
weigh more. Kept small (a 64-value projection, about 100k parameters) so that it trains on
2 cores from stored frames and has little room to memorise the training sources' channels.
Selected by a card whose `architecture.back_end` is "attentive" (see the registry).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .whisper import DEFAULT_BUNDLE, FrozenEncoderHead, WhisperEncoder


class AttentiveWhisperDetector(FrozenEncoderHead):
    """Log-mel `[B, 80, frames]` -> one logit of P(fake) per window.

    Frames: the chosen layers' outputs side by side, averaged over `pool` adjacent encoder
    frames (20 ms each), standardised with the training set's per-value statistics; then a
    linear map to `dim`, a tanh attention over time, and the attention-weighted mean and
    standard deviation into one linear logit."""

    def __init__(self, layers: tuple[int, ...] = (1, 2, 3, 4), encoder: WhisperEncoder | None = None,
                 d: int | None = None, encoder_name: str = DEFAULT_BUNDLE, pool: int = 4, dim: int = 64,
                 dropout: float = 0.2):
        super().__init__(layers, encoder, d, encoder_name)
        self.pool = int(pool)
        n = self.d * len(self.layers)
        self.register_buffer("frame_mean", torch.zeros(n))
        self.register_buffer("frame_std", torch.ones(n))
        self.proj = nn.Linear(n, dim)
        self.attention = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * dim, 1)

    def frames(self, mel: torch.Tensor) -> torch.Tensor:
        """`[B, 80, frames]` -> `[B, T / pool, d * layers]`, unstandardised (what the lab stores)."""
        with torch.no_grad():
            outs = self.encoder.layer_outputs(mel)
            x = torch.cat([outs[i - 1] for i in self.layers], dim=-1)          # [B, T, n]
            return F.avg_pool1d(x.transpose(1, 2), self.pool, self.pool, ceil_mode=True).transpose(1, 2)

    def from_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Pooled frames `[B, T', n]` -> logits `[B]` (the trained part)."""
        h = self.proj((frames - self.frame_mean) / self.frame_std)
        a = torch.softmax(self.attention(h), dim=1)                            # [B, T', 1]
        mean = (a * h).sum(dim=1)
        std = ((a * h * h).sum(dim=1) - mean * mean).clamp_min(1e-6).sqrt()
        return self.head(self.dropout(torch.cat([mean, std], dim=-1))).squeeze(-1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.from_frames(self.frames(mel))
