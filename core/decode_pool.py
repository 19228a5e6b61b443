"""A small pool of warm decoder children, shared by every thread (and Streamlit session) of a process.

Why a pool: starting a child costs seconds (it imports torch and the decoders), decoding a
file costs milliseconds more than in-process once the child is warm. A child serves one
file at a time (the pool hands it to one reader, who gives it back); one that crashed, timed
out or was abandoned mid-stream is killed and a fresh one is started in its place at once,
so the next file does not wait for it. When every warm child is busy for a moment, extra
children are started (up to EXTRA_FACTOR x the warm count) rather than queue behind a long
stream; the extras exit when they are given back. All children are stopped at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import decode_protocol as wire
from .decode_limits import DecodeLimits
from .errors import AudioError

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0   # importing torch on a busy machine can take a while
GROW_AFTER_S = 0.5        # wait this long for a busy child before starting an extra one
EXTRA_FACTOR = 4
MAX_FILES_PER_CHILD = 500  # then the child is replaced: whatever a decoder leaked goes with it


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"          # one file, one thread: the CPU limit then means wall time too
    env["MALLOC_ARENA_MAX"] = "2"   # fewer malloc arenas: the address-space cap goes to data
    return env


class DecoderProcess:
    """One decoder child and the two pipes to it."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "core.decode_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=_child_env(), bufsize=0, close_fds=True)
        self.tx, self.rx = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.hello: dict | None = None
        self.files = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ensure_ready(self) -> None:
        """Wait for the child's HELLO (once); AudioError if it cannot start."""
        if self.hello is not None:
            return
        try:
            kind, payload = wire.read_frame(self.rx, time.monotonic() + START_TIMEOUT_S, wire.MAX_JSON_BYTES)
            if kind != wire.HELLO:
                raise wire.ProtocolViolation(f"a {kind!r} frame instead of HELLO")
            self.hello = wire.decode_json(payload)
        except wire.ChannelTimeout:
            self.kill()
            raise AudioError(f"the decoder process did not start within {START_TIMEOUT_S:g} s "
                             "(the machine is overloaded?)") from None
        except (wire.ChannelClosed, wire.ProtocolViolation):
            raise AudioError(f"the decoder process could not start ({self.exit_description()}); "
                             "its error is in the server log") from None

    def exit_description(self, wait_s: float = 5.0) -> str:
        """How the child ended, e.g. 'killed by SIGSEGV' or 'exit status 1'."""
        try:
            code = self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return "it closed its pipe without exiting"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"

    def exit_signal(self) -> int | None:
        code = self.proc.returncode
        return -code if code is not None and code < 0 else None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self._reap()

    def stop(self) -> None:
        """Ask the child to quit (it also quits on EOF), killing it if it does not."""
        if self.alive():
            try:
                wire.write_frame(self.tx, wire.QUIT, deadline=time.monotonic() + 0.5)
            except (wire.ChannelClosed, wire.ChannelTimeout, OSError):
                pass
        self._reap(grace_s=1.0)

    def _reap(self, grace_s: float = 5.0) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class DecodePool:
    """Hands out one idle child per reader; thread-safe."""

    def __init__(self, limits: DecodeLimits):
        self.limits = limits
        self.warm = max(1, limits.workers)
        self.most = self.warm * EXTRA_FACTOR
        self._cond = threading.Condition()
        self._idle: list[DecoderProcess] = []
        self._live: set[DecoderProcess] = set()
        self._closed = False
        self.started = 0   # children started, for tests and the bench

    def _start(self) -> DecoderProcess:
        child = DecoderProcess()
        self._live.add(child)
        self.started += 1
        return child

    def acquire(self, wait_s: float) -> DecoderProcess:
        """An idle child, or a new one; AudioError when none is free within `wait_s`."""
        t0 = time.monotonic()
        with self._cond:
            if self._closed:
                raise AudioError("the decoder pool is shut down (the interpreter is exiting)")
            while len(self._live) < self.warm:   # first use: start the warm children together
                self._idle.append(self._start())
            while True:
                while self._idle:
                    child = self._idle.pop(0)
                    if child.alive():
                        return child
                    self._live.discard(child)
                    child.kill()
                waited = time.monotonic() - t0
                if len(self._live) < self.warm or (waited >= GROW_AFTER_S and len(self._live) < self.most):
                    return self._start()
                if waited >= wait_s:
                    raise AudioError(f"every decoder process stayed busy for {wait_s:g} s; try again later")
                until = GROW_AFTER_S if waited < GROW_AFTER_S and len(self._live) < self.most else wait_s
                self._cond.wait(max(0.01, min(until, wait_s) - waited))

    def release(self, child: DecoderProcess, reusable: bool) -> None:
        """Take a child back; a broken one is killed and replaced by a fresh warm one."""
        child.files += 1
        reusable = reusable and child.alive() and child.files < MAX_FILES_PER_CHILD
        with self._cond:
            keep = reusable and not self._closed and len(self._idle) < self.warm
            if keep:
                self._idle.append(child)
            else:
                self._live.discard(child)
            if not self._closed and len(self._live) < self.warm:
                self._idle.append(self._start())   # the replacement warms up while others work
            self._cond.notify()
        if not keep:
            (child.stop if reusable else child.kill)()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            children, self._idle = list(self._live), []
            self._live.clear()
            self._cond.notify_all()
        for child in children:
            child.stop()

    def pids(self) -> list[int]:
        with self._cond:
            return sorted(c.pid for c in self._live)


_shared: tuple[tuple, DecodePool] | None = None
_shared_lock = threading.Lock()


def shared_pool(limits: DecodeLimits) -> DecodePool:
    """The process's pool, started anew when the children's settings changed (or after a fork)."""
    global _shared
    key = (os.getpid(), limits.memory_mb, limits.workers, os.environ.get("DEEPFAKE_DECODE_TEST_HOOK", ""))
    with _shared_lock:
        if _shared is not None and _shared[0] == key:
            return _shared[1]
        old, _shared = _shared, (key, DecodePool(limits))
    if old is not None and old[0][0] == os.getpid():
        old[1].close()
    return _shared[1]


def shutdown() -> None:
    """Stop every child of the shared pool (also run at interpreter exit)."""
    global _shared
    with _shared_lock:
        old, _shared = _shared, None
    if old is not None and old[0][0] == os.getpid():
        old[1].close()


atexit.register(shutdown)
