"""How a loaded network runs on this CPU: memory layout and numeric precision.

Two settings, measured on the project's 2-core Xeon (bench/RESULTS.md):

* channels-last (NHWC) weights, always on. oneDNN's convolution and max-pool kernels are
  vectorised over channels; in the default NCHW layout a 3x3 max-pool alone took 40% of a compact
  ResNet's time. Converting the weights once makes every conv net 2-3x faster at batch 32 with
  the same arithmetic (max |dP| 6e-8 on the shipped set). Models without 4-D weights are untouched.
* `precision="bf16"`, opt-in: autocast to bfloat16 where the CPU computes it natively (AMX or
  AVX512-BF16). Another 1.3-2.5x on conv nets (SENet154: 2.4x), but scores move by up to about
  1e-3, so it is a choice the user makes (`--precision bf16`), never the default. On a CPU without
  native bf16 it still gives correct-to-bf16 results, only slower.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache

import torch
from torch import nn

from .errors import ConfigError

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


@lru_cache(maxsize=1)
def bf16_native() -> bool:
    """True when oneDNN can use native bfloat16 instructions on this CPU (AMX / AVX512-BF16)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def channels_last(module: nn.Module) -> nn.Module:
    """Store a module's 4-D weights channels-last (in place); a no-op for models without them."""
    if any(p.dim() == 4 for p in module.parameters()):
        module.to(memory_format=torch.channels_last)
    return module


def numeric_context(precision: str):
    """The context a forward pass runs in: plain fp32, or bf16 autocast."""
    if check_precision(precision) == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
