"""The decoder child: `python -m core.decode_worker` decodes files sent by the scorer, one at a time.

Why a separate process: libsndfile and FFmpeg parse untrusted bytes in C; a crash, a hang
or a runaway allocation here ends this child, not the server or the batch. The child:

  * leaves the network first where the kernel allows it (a new user + network namespace:
    no interface but a downed loopback), so a subverted decoder has nowhere to send data;
  * imports the decoders (torchcodec too, when it loads), then caps its address space,
    forbids core dumps and caps each file's CPU time (see core.decode_limits);
  * talks only over its own copies of stdin/stdout (core.decode_protocol); fd 1 is pointed at
    stderr so a library that prints cannot corrupt the stream;
  * exits when the scorer closes its pipe (the scorer quit or died).

Test hook: DEEPFAKE_DECODE_TEST_HOOK names a module imported after start-up, so tests can
make the decoder crash or hang on chosen files. Nothing else reads it.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000


def leave_network() -> bool:
    """Move into fresh user and network namespaces (Linux, unprivileged); False where refused.
    Must run before any thread starts (unshare of a user namespace needs a single thread)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0
    except (OSError, AttributeError):
        return False


def _private_pipes() -> tuple[int, int]:
    """Our own fds for the protocol; fd 0 reads nothing and fd 1 goes to stderr."""
    rx, tx = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return rx, tx


def _preload_ffmpeg() -> None:
    """Load torchcodec's FFmpeg libraries before the memory cap (core.audio imports it lazily)."""
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:  # not installed, or no FFmpeg: core.audio says what to install
        pass


def main() -> int:
    network_cut = leave_network()
    rx, tx = _private_pipes()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import torch

    from . import decode_limits, decode_protocol as wire
    from .decode_service import serve

    torch.set_num_threads(1)
    _preload_ffmpeg()
    hook = os.environ.get("DEEPFAKE_DECODE_TEST_HOOK", "").strip()
    if hook:
        importlib.import_module(hook)
    limits = decode_limits.DecodeLimits.from_env()
    decode_limits.forbid_core_dumps()
    cap = decode_limits.cap_memory(limits.memory_mb)
    try:
        wire.write_frame(tx, wire.HELLO, wire.encode_json({"pid": os.getpid(), "network_cut": network_cut,
                                                           "address_space_cap": cap}))
    except wire.ChannelClosed:   # the scorer exited while this child was starting
        return 0
    return serve(rx, tx)


if __name__ == "__main__":
    sys.exit(main())
