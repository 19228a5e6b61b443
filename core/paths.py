"""Folder access for the server-side batch page: nothing outside the configured root.

The operator sets the root with `$DEEPFAKE_DATA_ROOT` (or `data_root` in
`.streamlit/secrets.toml`, read by the page and passed in). A relative path typed by a user
is resolved against the root with symlinks followed; an absolute path is accepted when it lies
under the root. `..` and paths or symlinks that lead outside the root are refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from .batch import scan_audio
from .errors import ConfigError

ENV_DATA_ROOT = "DEEPFAKE_DATA_ROOT"


def data_root(configured: str | os.PathLike | None = None) -> Path | None:
    """The configured root (argument first, then the environment), or None when unset."""
    root = configured or os.environ.get(ENV_DATA_ROOT)
    if not root:
        return None
    p = Path(root).expanduser().resolve()
    if not p.is_dir():
        raise ConfigError(f"the configured data root {p} is not a folder")
    return p


def resolve_under_root(root: str | os.PathLike, rel: str | os.PathLike = "") -> Path:
    """Resolve `rel` inside `root`; refuse anything that lands outside it."""
    root_p = Path(root).resolve()
    rel_s = os.fspath(rel).strip()
    if "\x00" in rel_s:
        raise ConfigError(f"{rel_s!r}: a path cannot contain a NUL character")
    if rel_s.startswith("\\") or (len(rel_s) > 1 and rel_s[1] == ":"):
        raise ConfigError(f"{rel_s!r}: not a path on this server; give a folder under the data root {root_p}")
    if ".." in Path(rel_s).parts:
        raise ConfigError(f"{rel_s!r}: '..' is not allowed; paths must stay inside {root_p}")
    absolute = rel_s.startswith(("/", "~"))
    try:
        target = (Path(rel_s).expanduser() if absolute else root_p / rel_s).resolve()
        if target != root_p and root_p not in target.parents:
            if absolute:
                raise ConfigError(f"{rel_s!r} is outside the data root {root_p}; only folders under it "
                                  "can be scored")
            raise ConfigError(f"{rel_s!r} leads outside the data root {root_p} (through a symlink)")
        exists = target.exists()
    except (OSError, RuntimeError) as e:  # a symlink loop (RuntimeError before Python 3.13), a name too long
        raise ConfigError(f"{rel_s!r}: cannot be opened under {root_p} "
                          f"({getattr(e, 'strerror', None) or str(e)[:100]})") from None
    if not exists:
        raise ConfigError(f"{rel_s!r}: no such file or folder under {root_p}")
    return target


def list_audio_under_root(root: str | os.PathLike, rel: str | os.PathLike = "") -> list[Path]:
    """Audio files under `root/rel`, recursively, skipping any symlink that leads outside the root
    (or that cannot be resolved, such as a symlink loop)."""
    root_p = Path(root).resolve()
    start = resolve_under_root(root_p, rel)
    return keep_under_root(root_p, scan_audio([start]))


def keep_under_root(root: str | os.PathLike, paths) -> list[Path]:
    """The paths that (still) resolve inside `root`. Links can change after a folder was listed
    (or a listing was cached): check again right before reading."""
    root_p = Path(root).resolve()
    out = []
    for f in paths:
        try:
            real = Path(f).resolve()
        except (OSError, RuntimeError):  # a looping symlink cannot be checked (nor read): left out
            continue
        if real == root_p or root_p in real.parents:
            out.append(Path(f))
    return out
