"""How a loaded network runs on this CPU: memory layout and numeric precision.

Four settings, measured on the project's 2-core Xeon (bench/RESULTS.md):

* batch-norm folding, always on: every convolution followed by a batch norm becomes one
  convolution with the norm's scale and shift folded into its weights (torch.fx traces the
  model, so a pair is folded only where the graph really chains them; a part fx cannot trace,
  like the GNN's data-dependent top-k pooling, is searched inside instead). Batch norms took a
  fifth to a quarter of the compact CNNs' time; scores change by < 1e-5.
* max-pooling before the activation, always on: where an activation that never decreases
  (ReLU, SELU, ...) feeds a max-pool, the pool runs first, since max(f(a), f(b)) == f(max(a, b)).
  The activation then touches a quarter of the values (a 2x2 pool); scores are bit-identical.
  Every shipped family and the seed's CNN stems have this pattern: 6-27% of a compact model's
  time at batch 32.
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
from torch import fx, nn
from torch.nn import functional as F

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
    weights: SENet154 alone is 460 MB); where fx traced it, the result is an fx GraphModule
    whose max-pools also run before their activations (`pool_before_activation`)."""
    from torch.fx.experimental.optimization import fuse

    try:
        traced = fuse(module, inplace=True)  # tracing fails before anything is modified
    except Exception:  # untraceable (data-dependent control flow): fold inside its children
        for name, child in module.named_children():
            setattr(module, name, fold_batchnorm(child))
        return module
    pool_before_activation(traced)
    return traced


# Element-wise activations that never decrease, so max-pooling commutes with them.
_MONOTONIC_MODULES = (nn.ReLU, nn.ReLU6, nn.SELU, nn.Sigmoid, nn.Tanh, nn.Hardtanh)
_MONOTONIC_FUNCTIONS = (F.relu, torch.relu, F.selu, torch.selu, torch.sigmoid, torch.tanh)
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


def _is_monotonic(node: fx.Node, modules: dict) -> bool:
    if node.op == "call_module":
        m = modules.get(node.target)
        if isinstance(m, (nn.ELU, nn.LeakyReLU)):
            return getattr(m, "alpha", getattr(m, "negative_slope", -1.0)) >= 0
        return isinstance(m, _MONOTONIC_MODULES) and (not isinstance(m, nn.Hardtanh) or m.min_val <= m.max_val)
    return node.op == "call_function" and node.target in _MONOTONIC_FUNCTIONS and len(node.args) == 1


def _is_max_pool(node: fx.Node, modules: dict) -> bool:
    m = modules.get(node.target) if node.op == "call_module" else None
    return isinstance(m, _MAX_POOLS) and not m.return_indices


def pool_before_activation(gm: fx.GraphModule) -> int:
    """Rewrite `pool(act(x))` as `act(pool(x))` where that cannot change a value: the activation
    never decreases, nothing else reads `act(x)`, and nothing else reads `x` (an in-place
    activation would otherwise have changed `x` for those readers). Repeats until nothing moves
    (a pool can pass several activations in a row). Returns how many moves it made."""
    modules = dict(gm.named_modules())
    moved = 0
    while True:
        step = sum(_move_before(pool, modules) for pool in list(gm.graph.nodes) if _is_max_pool(pool, modules))
        if not step:
            break
        moved += step
    if moved:
        gm.graph.lint()
        gm.recompile()
    return moved


def _move_before(pool: fx.Node, modules: dict) -> bool:
    if len(pool.args) != 1 or pool.kwargs:
        return False
    act = pool.args[0]
    if not isinstance(act, fx.Node) or not _is_monotonic(act, modules) or len(act.users) != 1:
        return False
    x = act.args[0]
    if not isinstance(x, fx.Node) or len(x.users) != 1:
        return False
    pool.replace_input_with(act, x)
    pool.replace_all_uses_with(act)
    act.replace_input_with(x, pool)
    pool.append(act)  # the activation now comes after the pool in the graph's order
    return True


def for_inference(module: nn.Module) -> nn.Module:
    """What the engine runs: batch norms folded, pools before activations, conv weights
    channels-last; same scores."""
    return channels_last(fold_batchnorm(module.eval()))


def numeric_context(precision: str):
    """The context a forward pass runs in: plain fp32, or bf16 autocast."""
    if check_precision(precision) == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
