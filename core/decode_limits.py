"""How much a decoder child may take: wall-clock time, CPU time and memory, read from the environment.

Why: uploads are untrusted and the decoders (libsndfile, FFmpeg) are C libraries with a
history of memory-safety bugs. A child that loops or balloons must cost one file, so each
file's decode is bounded in three ways, and every bound can be raised by the operator:

  DEEPFAKE_DECODE_TIMEOUT_S   wall-clock seconds the scorer waits on one file's decoding (600)
  DEEPFAKE_DECODE_CPU_S       CPU seconds one file may use in the child (defaults to the timeout)
  DEEPFAKE_DECODE_MEMORY_MB   address space a child may grow by beyond its size after start-up (2048)
  DEEPFAKE_DECODE_WORKERS     decoder children kept warm (2); busy ones are topped up, at most 4x
  DEEPFAKE_DECODE_ISOLATION   0 decodes in the scoring process itself (trusted files only)
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

from .errors import ConfigError

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_MB = 2048
DEFAULT_WORKERS = 2


def _env_number(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not value >= minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


@dataclass(frozen=True)
class DecodeLimits:
    """The bounds on one file's decoding (see the module docstring for the variables)."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    cpu_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    workers: int = DEFAULT_WORKERS

    @classmethod
    def from_env(cls) -> "DecodeLimits":
        timeout = _env_number("DEEPFAKE_DECODE_TIMEOUT_S", DEFAULT_TIMEOUT_S, 0.01)
        return cls(timeout_s=timeout,
                   cpu_s=_env_number("DEEPFAKE_DECODE_CPU_S", timeout, 1.0),
                   memory_mb=int(_env_number("DEEPFAKE_DECODE_MEMORY_MB", DEFAULT_MEMORY_MB, 64)),
                   workers=int(_env_number("DEEPFAKE_DECODE_WORKERS", DEFAULT_WORKERS, 1)))


def isolation_enabled() -> bool:
    """False only when the operator set DEEPFAKE_DECODE_ISOLATION=0 (or false/no/off)."""
    return os.environ.get("DEEPFAKE_DECODE_ISOLATION", "1").strip().lower() not in {"0", "false", "no", "off"}


# ----------------------------------------------------------------------------- in the child


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def cap_memory(headroom_mb: int) -> int:
    """Limit the address space to what the child maps now plus `headroom_mb`; returns the cap.

    Called once the decoders are imported, so the cap is about decoding, not torch's size."""
    try:
        base = _address_space_bytes()
    except (OSError, ValueError):  # no /proc: fall back to a fixed ceiling
        base = 4 << 30
    cap = base + (headroom_mb << 20)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return cap


def forbid_core_dumps() -> None:
    """A crash must not leave a core dump: it would hold the upload's bytes on disk.

    (File writes are not capped with RLIMIT_FSIZE: stderr is often a log file.)"""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def cap_cpu_for_next_file(cpu_s: float) -> None:
    """Let the next file use `cpu_s` CPU seconds on top of what this reused child has used so far.

    The kernel sends SIGXCPU (which ends the child) once the soft limit is passed."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(spent + cpu_s) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
