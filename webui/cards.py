"""Model cards (the JSON beside each checkpoint, or the seed's built-in ones) made readable,
and where each of the seed's checkpoints can be found right now. No streamlit here.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from core.errors import DetectorError
from core.models.registry import get_set
from core.weights import ENV_WEIGHTS_DIR, hub_cache_dir, resolve_checkpoint

# Keys shown in their own place; anything else in a card still appears in the raw JSON.
_TEXT_KEYS = (("training_data", "Training data"), ("validation_data", "Validation data"),
              ("data", "Data"), ("split", "Split"), ("notes", "Notes"))
_METRIC_HINTS = ("metric", "validation", "eval", "result", "reported", "test")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix or "value": d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flat(v, key))
        elif isinstance(v, (list, tuple)) and len(v) > 8:
            out[key] = f"[{len(v)} values]"
        else:
            out[key] = v
    return out


def card_text(card: dict) -> list[tuple[str, str]]:
    """(heading, text) pairs for the card's prose fields."""
    out = []
    for key, title in _TEXT_KEYS:
        v = card.get(key)
        if v in (None, "", {}, []):
            continue
        out.append((title, v if isinstance(v, str) else json.dumps(v, indent=None, default=str)))
    return out


def card_metrics(card: dict) -> pd.DataFrame:
    """Validation / reported figures of a card as a two-column table (metric, value)."""
    rows = []
    for k, v in card.items():
        if isinstance(v, dict) and any(h in k.lower() for h in _METRIC_HINTS):
            for mk, mv in _flat(v).items():
                rows.append({"metric": f"{k}: {mk}", "value": _fmt(mv)})
    return pd.DataFrame(rows, columns=["metric", "value"])


def card_threshold(card: dict) -> tuple[str, str]:
    thr = card.get("threshold")
    return ("n/a" if thr is None else f"{float(thr):.4f}", str(card.get("threshold_source") or "not stated"))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


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
