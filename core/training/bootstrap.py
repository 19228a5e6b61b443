"""How much of a `dev_eval` EER difference between two detectors is noise.

`dev_eval` has 338 clips and some of its sources hold only 5 or 10 real ones, so a point of EER
is a handful of clips. `paired_eer_difference` resamples the clips (with replacement, within each
(source, label) cell, so every resample keeps the set's make-up), scores both detectors on the
same resample and returns the spread of EER(candidate) - EER(reference). An interval that holds 0
means the set cannot tell the two apart.
"""

from __future__ import annotations

import numpy as np

from ..metrics import eer


def strata(sources, labels) -> list[np.ndarray]:
    """Indices of each (source, label) cell."""
    cells: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(sources, labels)):
        cells.setdefault(key, []).append(i)
    return [np.array(v) for _, v in sorted(cells.items())]


def paired_eer_difference(labels, reference, candidate, sources, n: int = 2000, seed: int = 0,
                          level: float = 0.95) -> dict:
    """EER(candidate) - EER(reference) on the clips as given, and its bootstrap interval."""
    y = np.asarray(labels, int)
    a, b = np.asarray(reference, float), np.asarray(candidate, float)
    if not (len(y) == len(a) == len(b) == len(sources)):
        raise ValueError("labels, both score columns and sources must hold the same clips")
    cells = strata(sources, y)
    rng = np.random.default_rng(seed)
    diffs = np.empty(n)
    for k in range(n):
        idx = np.concatenate([c[rng.integers(len(c), size=len(c))] for c in cells])
        diffs[k] = eer(y[idx], b[idx])[0] - eer(y[idx], a[idx])[0]
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return {"difference": float(eer(y, b)[0] - eer(y, a)[0]), "low": float(lo), "high": float(hi),
            "share_better": float((diffs < 0).mean()), "resamples": n, "level": level}
