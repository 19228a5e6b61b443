"""The analyst's three-way assessment: likely fake / inconclusive / likely real.

A binary verdict shows 0.004 and 0.345 in the same green box. The assessment says
"inconclusive" whenever the evidence is weak, by three rules, each of which names itself in
`reasons`:

1. **Band.** The ensemble's P(fake) lies inside the inconclusive band `[low, high)`. The band is
   fitted on sources the models never trained on (the ensemble card's `inconclusive_band`,
   fitted by `fit_band` on the extended pool's `dev_eval`): outside it, the assessment was right
   at least `target` (90%) of the time there. A set without a fitted band gets a fixed band of
   `FALLBACK_HALF_WIDTH` around its threshold, and says so.
2. **Disagreement.** The models that carry the ensemble's weight split: some call the file
   fake, some real, and their P(fake) spans at least `DISAGREEMENT_SPREAD`.
3. **Cautions.** A condition the models are known to handle badly (too short, narrow-band,
   lossy, mostly silence, damaged) widens the band by `CAUTION_MARGIN` on each side, so a
   borderline score becomes inconclusive; the cautions travel with the assessment.

The binary verdict (P(fake) >= threshold) is kept beside it for compatibility.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

LIKELY_FAKE, INCONCLUSIVE, LIKELY_REAL = "likely fake", "inconclusive", "likely real"
FALLBACK_HALF_WIDTH = 0.15
DISAGREEMENT_SPREAD = 0.5
CAUTION_MARGIN = 0.10
SHORT_S = 2.0


@dataclass(frozen=True)
class Band:
    low: float
    high: float
    source: str

    def as_list(self) -> list[float]:
        return [round(self.low, 6), round(self.high, 6)]


@dataclass
class Assessment:
    label: str
    p_fake: float
    band: Band
    threshold: float
    threshold_source: str
    reasons: list[str] = field(default_factory=list)     # why it is inconclusive (empty otherwise)
    cautions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["band"] = self.band.as_list()
        d["band_source"] = self.band.source
        return d


def fallback_band(threshold: float) -> Band:
    return Band(max(0.0, threshold - FALLBACK_HALF_WIDTH), min(1.0, threshold + FALLBACK_HALF_WIDTH),
                f"no band fitted on unseen sources for this selection: a fixed +/-{FALLBACK_HALF_WIDTH:.2f} "
                "around the threshold")


def band_from_card(card: dict | None, threshold: float) -> Band:
    b = (card or {}).get("inconclusive_band")
    if not b:
        return fallback_band(threshold)
    return Band(float(b["low"]), float(b["high"]), str(b.get("source", "ensemble card")))


def cautions_of(facts) -> list[str]:
    """The file's conditions that the detectors are known to handle badly (see the module docstring)."""
    if facts is None:
        return []
    out = []
    if facts.duration_s < SHORT_S:
        out.append(f"Short clip ({facts.duration_s:.1f} s): under {SHORT_S:.0f} s there is little evidence.")
    if facts.original_rate < 16_000 or 0 < facts.bandwidth_hz < 6000:
        out.append("Narrow-band audio (telephone-like): the detectors often call real narrow-band speech fake.")
    if facts.lossy:
        out.append(f"Lossy compression ({facts.codec}): compression removes detail the detectors use.")
    if facts.silence_ratio > 0.5:
        out.append(f"Mostly silence or no speech ({facts.silence_ratio:.0%} of frames silent).")
    if facts.truncated:
        out.append("The file is cut off or damaged.")
    return out


def assess(p_fake: float, threshold: float, threshold_source: str, band: Band,
           model_scores: dict[str, float] | None = None, model_thresholds: dict[str, float] | None = None,
           cautions: list[str] | None = None) -> Assessment:
    """Three-way assessment of an ensemble P(fake); `model_scores` are the weighted models' P(fake)."""
    cautions = list(cautions or [])
    reasons = []
    low, high = band.low, band.high
    if cautions:
        low, high = max(0.0, low - CAUTION_MARGIN), min(1.0, high + CAUTION_MARGIN)
    if low <= p_fake < high:
        if band.low <= 0.0 and p_fake < band.high:
            reasons.append(f"P(fake) {p_fake:.3f} is below {band.high:.2f}, and these models cannot back a "
                           "'likely real' call: on sources they never trained on, no range of their scores held "
                           "real recordings often enough (a low score means no fake was found, not that the "
                           "voice is real)")
        elif band.low <= p_fake < band.high:
            reasons.append(f"P(fake) {p_fake:.3f} lies in the inconclusive band [{band.low:.2f}, {band.high:.2f})")
        else:
            reasons.append(f"P(fake) {p_fake:.3f} is near the band [{band.low:.2f}, {band.high:.2f}) and the file "
                           "has conditions the models handle badly")
    if model_scores and len(model_scores) >= 2:
        thr = model_thresholds or {}
        says = {n: p >= thr.get(n, threshold) for n, p in model_scores.items()}
        spread = max(model_scores.values()) - min(model_scores.values())
        if len(set(says.values())) == 2 and spread >= DISAGREEMENT_SPREAD:
            fake = ", ".join(n for n, v in says.items() if v)
            real = ", ".join(n for n, v in says.items() if not v)
            reasons.append(f"the models disagree strongly ({fake} say fake, {real} say real; "
                           f"P(fake) spans {spread:.2f})")
    if reasons:
        label = INCONCLUSIVE
    else:
        label = LIKELY_FAKE if p_fake >= max(high, threshold) else LIKELY_REAL if p_fake < min(low, threshold) \
            else INCONCLUSIVE
        if label == INCONCLUSIVE:
            reasons.append("P(fake) falls between the threshold and the band")
    return Assessment(label, float(p_fake), band, float(threshold), threshold_source, reasons, cautions)


def fit_band(labels, scores, threshold: float, target: float = 0.9, min_clips: int = 10,
             balanced: bool = True) -> dict:
    """The narrowest band around `threshold` outside which the call is right at least `target` of
    the time: `high` is the lowest score at or above the threshold from which at least `target`
    of the clips are fake, `low` the highest score at or below it under which at least `target`
    are real (each side needs `min_clips` clips, else that side never decides: 1.0 or 0.0).

    `balanced` counts the two classes at equal total weight, i.e. "right at least `target` of
    the time when real and fake recordings are equally common": a validation set's own mix
    (dev_eval is 30% real) says nothing about an analyst's case load. Returns the band with its
    measured figures (the `right_when_*` shares are computed the same way)."""
    y = np.asarray(labels, int)
    s = np.asarray(scores, float)
    ok = np.isfinite(s)
    y, s = y[ok], s[ok]
    w = np.ones(len(y))
    if balanced and 0 < y.sum() < len(y):
        w = np.where(y == 1, 0.5 / y.sum(), 0.5 / (len(y) - y.sum()))

    def share(m: np.ndarray, cls: int) -> float:
        return float(w[m & (y == cls)].sum() / w[m].sum())

    cands = np.unique(np.concatenate([s, [threshold]]))
    high = 1.0
    for h in cands[cands >= threshold]:
        m = s >= h
        if m.sum() >= min_clips and share(m, 1) >= target:
            high = float(h)
            break
    low = 0.0
    for lo in cands[cands <= threshold][::-1]:
        m = s < lo
        if m.sum() >= min_clips and share(m, 0) >= target:
            low = float(lo)
            break
    fake_side, real_side, inside = s >= high, s < low, (s >= low) & (s < high)
    return {
        "low": low, "high": high, "target": target, "clips": int(len(y)), "balanced": balanced,
        "decided_share": float(1 - inside.mean()),
        "right_when_fake": share(fake_side, 1) if fake_side.any() else None,
        "right_when_real": share(real_side, 0) if real_side.any() else None,
        "fakes_called_likely_fake": float(fake_side[y == 1].mean()) if (y == 1).any() else None,
        "reals_called_likely_real": float(real_side[y == 0].mean()) if (y == 0).any() else None,
        "inconclusive_share": float(inside.mean()),
    }
