"""Model cards (the JSON beside each checkpoint, or the seed's built-in ones) made readable,
and where each of the seed's checkpoints can be found right now. No streamlit here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.errors import DetectorError
from core.models.registry import get_set
from core.report import eer_interval
from core.weights import ENV_WEIGHTS_DIR, hub_cache_dir, resolve_checkpoint

# The card fields shown, in this order, with their headings; everything is also in the raw JSON.
CARD_FIELDS = (("description", "Description"), ("architecture", "Architecture"), ("parameters", "Parameters"),
               ("training_data", "Training data"),
               ("validation", "Validation"), ("reported_metrics", "Reported figures (seed)"),
               ("calibration", "Calibration"), ("augmentation", "Augmentation"), ("training", "Training"),
               ("members", "Members"), ("rule", "Rule"), ("notes", "Notes"))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v) if len(v) <= 12 else f"[{len(v)} values]"
    return str(v)


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out


def card_sections(card: dict) -> list[tuple[str, str, Any]]:
    """The card as ("text" | "table", heading, str | DataFrame) sections for display.

    A text field stays text. A mapping becomes: its prose (long strings) as text, its scalar
    figures as one metric/value table, and each mapping of mappings (per-source validation
    figures, clip counts per group) as a table with one row per key.
    """
    out: list[tuple[str, str, Any]] = []
    for key, title in CARD_FIELDS:
        v = card.get(key)
        if v in (None, "", {}, []):
            continue
        if not isinstance(v, dict):
            out.append(("text", title, _fmt(v)))
            continue
        prose = {k: x for k, x in v.items() if isinstance(x, str) and len(x) > 40}
        for k, x in prose.items():
            out.append(("text", f"{title}: {k.replace('_', ' ')}", x))
        scalars = {k: x for k, x in v.items() if k not in prose and not isinstance(x, dict)}
        nested = {k: x for k, x in v.items() if isinstance(x, dict)}
        tables = {k: x for k, x in nested.items() if x and all(isinstance(r, dict) for r in x.values())}
        for k, x in nested.items():
            if k not in tables:
                scalars.update(_flat(x, k))
        if scalars:
            out.append(("table", title, pd.DataFrame(
                {"metric": [k.replace("_", " ") for k in scalars], "value": [_fmt(x) for x in scalars.values()]})))
        for k, x in tables.items():
            df = pd.DataFrame.from_dict(x, orient="index")
            df.index.name = k.replace("_", " ")
            out.append(("table", f"{title}: {k.replace('_', ' ')}", df.reset_index()))
    return out


def card_threshold(card: dict) -> tuple[str, str]:
    thr = card.get("threshold")
    return ("n/a" if thr is None else f"{float(thr):.4f}", str(card.get("threshold_source") or "not stated"))


def seed_checkpoint_status(weights_dir: str | None) -> pd.DataFrame:
    """Where each seed checkpoint would load from now, without downloading anything."""
    s = get_set("seed")
    rows = []
    for spec in s.specs:
        try:
            ck = resolve_checkpoint(s, spec, weights_dir, allow_download=False)
            rows.append({"model": spec.name, "file": spec.checkpoint, "found in": ck.source,
                         "path": str(ck.path)})
        except DetectorError:
            rows.append({"model": spec.name, "file": spec.checkpoint, "found in": "missing", "path": ""})
    return pd.DataFrame(rows)


def seed_help(weights_dir: str | None) -> dict[str, str]:
    s = get_set("seed")
    return {
        "repo": s.hub_repo or "",
        "cache": str(hub_cache_dir()),
        "env_weights": ENV_WEIGHTS_DIR,
        "weights_dir": weights_dir or "",
        "files": ", ".join(sp.checkpoint for sp in s.specs),
    }


def interval_text(figures: dict) -> str:
    """' (95% interval 12-19%)' when the card holds a bootstrap interval of its EER, else ''."""
    iv = eer_interval(figures)
    return f" (95% interval {iv[0]:.0%}-{iv[1]:.0%})" if iv else ""


def unseen_sentence(det) -> str:
    """The measured accuracy on sources the active set never trained on, in one sentence."""
    d = (det.loaded.ensemble_card or {}).get("dev_eval") or {}
    r = d.get("restored") if isinstance(d, dict) else None
    if not r or r.get("eer") is None:
        return ("This set has not been measured here on sources it never trained on; treat every verdict "
                "as unvalidated.")
    text = (f"On {r['clips']} recordings from four sources it never trained on (the extended pool's dev_eval), "
            f"the ensemble's equal error rate is **{r['eer']:.0%}**{interval_text(r)}: at its threshold it called "
            f"{r['real_called_fake']:.0%} of the real clips fake and caught {r['fakes_caught']:.0%} of the fakes")
    if r.get("inconclusive_share") is not None:
        text += f", and {r['inconclusive_share']:.0%} of the clips came out inconclusive"
    return text + " (reports/validation.md)."
