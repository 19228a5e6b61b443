"""Out-of-fold scores: what a validation fold keeps of each held-out clip, and reads back.

Training keeps each clip's window logits as well as its clip score, so that replicate runs can
later be merged (core/training/merge_runs.py) and validated exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..metrics import eer, error_rates, roc_auc


def clip_scores(logits: list[np.ndarray]) -> np.ndarray:
    """Per-clip P(fake) = mean of window P(fake), as the Detector computes it (before calibration)."""
    return np.array([float((1.0 / (1.0 + np.exp(-z.astype(np.float64)))).mean()) for z in logits])


def group_figures(y: np.ndarray, p: np.ndarray) -> dict:
    """One held-out group's figures, as a validation fold records them."""
    both = 0 < y.sum() < len(y)
    return {"n_real": int((y == 0).sum()), "n_fake": int(y.sum()),
            "eer": eer(y, p)[0] if both else float("nan"),
            "auc": roc_auc(y, p) if both else float("nan"),
            "acc_at_0.5": error_rates(y, p, 0.5)["accuracy"]}


def save_window_logits(path: Path, logits: dict[int, np.ndarray]) -> None:
    """Out-of-fold window logits: clip indices, their window counts, and the logits end to end."""
    clips = np.array(sorted(logits), dtype=np.int64)
    np.savez_compressed(path, clips=clips, counts=np.array([len(logits[c]) for c in clips], dtype=np.int64),
                        logits=np.concatenate([logits[c] for c in clips]) if len(clips) else np.zeros(0, np.float32))


def read_window_logits(path: Path) -> dict[int, np.ndarray]:
    if not path.is_file():
        raise ConfigError(f"{path} is missing: the run predates saved window logits, so it cannot be merged "
                          "exactly (retrain it)")
    z = np.load(path)
    parts = np.split(z["logits"], np.cumsum(z["counts"])[:-1]) if len(z["counts"]) else []
    return dict(zip(z["clips"].tolist(), parts))
