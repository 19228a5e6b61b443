"""Where a checkpoint comes from, and loading it safely.

Resolution order for each model of a set (first hit wins):
  1. an explicit folder (`weights_dir=` / `--weights-dir` / `$DEEPFAKE_WEIGHTS_DIR`) holding
     the files by their checkpoint names;
  2. the Hugging Face cache (huggingface_hub's layout; honours `HF_HOME`, `HF_HUB_CACHE`);
  3. a hub download of the set's repository (skipped when `HF_HUB_OFFLINE=1` or
     `allow_download=False`), optionally pinned to a `revision`;
  4. the project's shipped folder `assets/models/`.

Checkpoints are untrusted input: `torch.load(weights_only=True)` (no code can run) or
safetensors. A file whose keys or shapes do not fit the architecture is refused with the
first offending keys named.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import WeightsError
from .models.registry import ModelSet, ModelSpec

ENV_WEIGHTS_DIR = "DEEPFAKE_WEIGHTS_DIR"
ENV_HUB_REVISION = "DEEPFAKE_HUB_REVISION"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    source: str   # "local folder" | "hub cache" | "hub download" | "shipped"
    sha256: str


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder, read from the environment now (not at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home) / "hub"


def candidate_names(spec: ModelSpec) -> tuple[str, ...]:
    return (spec.checkpoint, *spec.alt_checkpoints)


def resolve_checkpoint(model_set: ModelSet, spec: ModelSpec, weights_dir: str | os.PathLike | None = None,
                       allow_download: bool = True, revision: str | None = None) -> Checkpoint:
    """Find the checkpoint file of one model, trying the four places in order."""
    tried: list[str] = []
    folder = weights_dir or os.environ.get(ENV_WEIGHTS_DIR)
    if folder:
        for n in candidate_names(spec):
            p = Path(folder) / n
            if p.is_file():
                return Checkpoint(p, "local folder", sha256_of(p))
        tried.append(f"folder {folder}")
    revision = revision or os.environ.get(ENV_HUB_REVISION) or None
    if model_set.hub_repo:
        from huggingface_hub import try_to_load_from_cache

        for n in candidate_names(spec):
            hit = try_to_load_from_cache(model_set.hub_repo, n, cache_dir=hub_cache_dir(), revision=revision)
            if isinstance(hit, str) and os.path.isfile(hit):
                return Checkpoint(Path(hit), "hub cache", sha256_of(hit))
        tried.append(f"hub cache {hub_cache_dir()}" + (f" at revision {revision}" if revision else ""))
        if not allow_download or _offline():
            tried.append("download (disabled: offline)")
        elif time.monotonic() < _hub_unreachable_until:
            tried.append(f"download (skipped: the hub was unreachable moments ago; retried after "
                         f"{HUB_RETRY_AFTER_S:.0f} s)")
        else:
            got = _download(model_set.hub_repo, spec, revision)
            if got:
                return Checkpoint(got, "hub download", sha256_of(got))
            tried.append(f"download from {model_set.hub_repo} (failed)")
    if model_set.shipped_dir:
        for n in candidate_names(spec):
            p = Path(model_set.shipped_dir) / n
            if p.is_file():
                return Checkpoint(p, "shipped", sha256_of(p))
        tried.append(f"shipped folder {model_set.shipped_dir}")
    raise WeightsError(f"no checkpoint {spec.checkpoint} for model {spec.name!r} of set {model_set.name!r}; "
                       f"looked in: {'; '.join(tried)}")


HUB_RETRY_AFTER_S = 120.0
_hub_unreachable_until = 0.0   # time.monotonic() before which downloads are not tried again


def _download(repo: str, spec: ModelSpec, revision: str | None) -> Path | None:
    """The checkpoint from the hub, trying each of its names; None when none can be had.

    A network failure (not a missing file) stops the attempts for HUB_RETRY_AFTER_S, so an
    offline machine waits out the connection timeouts once per load, not once per model and name."""
    global _hub_unreachable_until
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    for n in candidate_names(spec):
        try:
            return Path(hf_hub_download(repo, n, revision=revision, cache_dir=hub_cache_dir(), etag_timeout=5))
        except LocalEntryNotFoundError:   # raised when the hub cannot be reached
            break
        except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
            continue                      # not under this name: try the next
        except Exception:                 # connection, TLS, proxy, server errors
            break
    else:
        return None
    _hub_unreachable_until = time.monotonic() + HUB_RETRY_AFTER_S
    return None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read tensors without running code: safetensors, or torch.load with weights_only=True."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message starts with advice to disable weights_only; keep only what the pickle asked for
        asked = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "nsupported" in ln), "")
        raise WeightsError(f"{path}: refused: the checkpoint is not a plain state_dict and loading it could "
                           f"run code{f' ({asked[:160]})' if asked else ''}; use a checkpoint of plain tensors "
                           "(a state_dict or .safetensors) from a source you trust") from None
    except Exception as e:
        raise WeightsError(f"{path}: cannot read the checkpoint ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:160] if str(e) else ''}); the file is truncated, damaged "
                           "or not a PyTorch/safetensors checkpoint: download or copy it again") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: not a state_dict (a mapping of names to tensors) but a {type(sd).__name__}")
    odd = [str(k) for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise WeightsError(f"{path}: not a state_dict (a mapping of names to tensors): "
                           f"{len(odd)} entries are not tensors (first: {', '.join(odd[:5])})")
    return sd


def check_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Refuse a state_dict whose keys or shapes differ from the model's, naming the first few."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
              if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    # float16/bfloat16 weights are fine (cast on load); integers or bools where floats belong are not
    dtypes = [f"{k} {sd[k].dtype} != {v.dtype}" for k, v in expected.items()
              if k in sd and (sd[k].dtype.is_floating_point != v.dtype.is_floating_point
                              or sd[k].dtype.is_complex or (sd[k].dtype == torch.bool) != (v.dtype == torch.bool))]
    nonfinite = [k for k, v in sd.items() if k in expected and v.dtype.is_floating_point
                 and not bool(torch.isfinite(v).all())]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {', '.join(missing[:5])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:5])})")
    if shapes:
        problems.append(f"{len(shapes)} wrong shapes (first: {'; '.join(shapes[:5])})")
    if dtypes:
        problems.append(f"{len(dtypes)} wrong dtypes (first: {'; '.join(dtypes[:5])})")
    if problems:
        raise WeightsError(f"{path}: does not fit the architecture: {'; '.join(problems)}")
    if nonfinite:
        raise WeightsError(f"{path}: refused: {len(nonfinite)} tensors hold NaN/inf values (first: "
                           f"{', '.join(nonfinite[:5])}); the checkpoint is damaged or its training diverged")


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    sd = read_state_dict(path)
    check_state_dict(model, sd, path)
    expected = model.state_dict()
    sd = {k: v.to(expected[k].dtype) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True)
    return model.eval()


def read_card(checkpoint: Path) -> dict | None:
    """The model card beside a checkpoint (`name.json` next to `name.safetensors`), if any."""
    card = checkpoint.with_suffix(".json")
    if not card.is_file():
        return None
    try:
        return json.loads(card.read_text())
    except (OSError, ValueError) as e:
        raise WeightsError(f"{card}: unreadable model card ({e})") from None
