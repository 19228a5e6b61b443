"""How a loaded network runs on this CPU: memory layout and numeric precision.

Three settings, measured on the project's 2-core Xeon (bench/RESULTS.md):

* batch-norm folding, always on: every convolution followed by a batch norm becomes one
  convolution with the norm's scale and shift folded into its weights (torch.fx traces the
  model, so a pair is folded only where the graph really chains them; a part fx cannot trace,
  like the GNN's data-dependent top-k pooling, is searched inside instead). Batch norms took a
  fifth to a quarter of the compact CNNs' time; scores change by < 1e-5.
* channels-last (NHWC) weights, always on. oneDNN's convolution and max-pool kernels are
  vectorised over channels; in the default NCHW layout a 3x3 max-pool alone took 40% of the
  session-1 compact ResNet's time. Converting the weights once makes every conv net 2-3x faster at batch 32 with
  the same arithmetic (max |dP| 6e-8 on the shipped set). Models without 4-D weights are untouched.
* `precision="bf16"`, opt-in: autocast to bfloat16 where the CPU computes it natively (AMX or
  AVX512-BF16). Another 1.3-2.5x on conv nets (SENet154: 2.3x), but scores move (bench: max
  |dP| 1.5e-3 on the seed set, 8.5e-3 on the shipped set), so it is a choice the user makes
  (`--precision bf16`), never the default. On a CPU without
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
    """Store a module's 4-D weights channels-last (in place); torch leaves other tensors as they are."""
    return module.to(memory_format=torch.channels_last)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An eval-mode module with conv -> batch-norm pairs folded, in place (no second copy of the
    weights: SENet154 alone is 460 MB); where fx traced it, the result is an fx GraphModule."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module, inplace=True)  # tracing fails before anything is modified
    except Exception:  # untraceable (data-dependent control flow): fold inside its children
        for name, child in module.named_children():
            setattr(module, name, fold_batchnorm(child))
        return module


def for_inference(module: nn.Module) -> nn.Module:
    """What the engine runs: batch norms folded, conv weights channels-last; same scores."""
    return channels_last(fold_batchnorm(module.eval()))


def numeric_context(precision: str):
    """The context a forward pass runs in: plain fp32, or bf16 autocast."""
    if check_precision(precision) == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
