"""Decode untrusted files in a limited child process: a decoder crash or hang costs one file.

`open_audio(source, name)` is what the scorer, the pages, the batch job and the Ray actors
use. It returns an `IsolatedReader`, which has the surface of `core.audio.AudioReader`
(`facts` from the header at once, `blocks()` streaming mono 16 kHz float32, `close()`), but
the bytes are parsed in a decoder child (core.decode_worker) that is limited in CPU time,
memory and wall-clock time (core.decode_limits) and that cannot reach the network where the
kernel allows it. What can go wrong in the child comes back as this file's AudioError:

  * the child dies (a segfault in libsndfile or FFmpeg, the kernel's SIGKILL): "the decoder
    crashed on this file";
  * it runs past DEEPFAKE_DECODE_TIMEOUT_S of waiting: "decoding took longer than N s";
  * it passes its CPU or memory cap: "decoding used more than N s of CPU time" / "needed
    more than N MB of memory".

The child is then killed and replaced; the next file gets a warm one. `core.audio.AudioReader`
and `load_audio` still decode in the calling process, for trusted files (training, tests of
the decoder itself); DEEPFAKE_DECODE_ISOLATION=0 makes `open_audio` do the same.
"""

from __future__ import annotations

import os
import signal
import time
from typing import BinaryIO, Iterator

import numpy as np

from . import decode_protocol as wire
from .audio import AudioReader, AudioFacts
from .decode_limits import DecodeLimits, isolation_enabled
from .decode_pool import DecoderProcess, shared_pool
from .errors import AudioError


def open_audio(source: str | os.PathLike | bytes | BinaryIO, name: str | None = None):
    """A reader for `source`: in a decoder child (the default), or in-process when isolation is off."""
    if not isolation_enabled():
        return AudioReader(source, name)
    return IsolatedReader(source, name)


def _request(source, name: str) -> tuple[dict, bytes | None]:
    if isinstance(source, (str, os.PathLike)):   # the child opens the path itself (it may be huge)
        return {"source": "path", "path": os.path.abspath(os.fspath(source)), "name": name}, None
    if isinstance(source, (bytes, bytearray, memoryview)):
        return {"source": "bytes", "name": name}, bytes(source)
    if hasattr(source, "read"):
        if hasattr(source, "seek"):
            source.seek(0)
        return {"source": "bytes", "name": name}, bytes(source.read())
    raise AudioError(f"{name}: cannot read a {type(source).__name__}; give a path, bytes or a binary stream")


class IsolatedReader:
    """AudioReader's surface, with the decoding done in a pooled, limited child.

    >>> with IsolatedReader("call.m4a") as r:            # doctest: +SKIP
    ...     x = np.concatenate(list(r.blocks()))
    ...     r.facts.duration_s
    """

    def __init__(self, source, name: str | None = None, limits: DecodeLimits | None = None):
        self.name = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<upload>")
        self.limits = limits or DecodeLimits.from_env()
        self._left_s = self.limits.timeout_s   # the file's waiting budget, spent across every frame
        self._state = "closed"
        request, payload = _request(source, self.name)
        request["cpu_s"] = self.limits.cpu_s
        self._child: DecoderProcess | None = None
        self._pool = shared_pool(self.limits)
        self._child = self._pool.acquire(self.limits.timeout_s)
        try:
            self._child.ensure_ready()
            self._state = "opening"
            self._send(wire.DECODE, wire.encode_json(request))
            if payload is not None:
                self._send(wire.PAYLOAD, payload)
            self.facts = self._expect_facts(wire.OPENED)
        except BaseException:
            self._give_back(reusable=self._state == "failed_cleanly")
            raise
        self._state = "opened"
        self.original_rate, self.channels = self.facts.original_rate, self.facts.channels

    # -- the frames of one file, each within the remaining budget ---------------
    def _send(self, kind: bytes, payload: bytes | memoryview = b"") -> None:
        t0 = time.monotonic()
        try:
            wire.write_frame(self._child.tx, kind, payload, t0 + self._left_s)
        except wire.ChannelTimeout:
            raise self._timed_out() from None
        except wire.ChannelClosed:
            raise self._crashed() from None
        finally:
            self._left_s -= time.monotonic() - t0

    def _recv(self) -> tuple[bytes, bytearray]:
        t0 = time.monotonic()
        try:
            return wire.read_frame(self._child.rx, t0 + max(0.0, self._left_s))
        except wire.ChannelTimeout:
            raise self._timed_out() from None
        except wire.ChannelClosed:
            raise self._crashed() from None
        except wire.ProtocolViolation as e:
            raise self._broken(e) from None
        finally:
            self._left_s -= time.monotonic() - t0

    def _expect_facts(self, kind: bytes) -> AudioFacts:
        got, payload = self._recv()
        if got == wire.ERROR:
            raise self._child_error(payload)
        if got != kind:
            raise self._broken(f"a {got!r} frame where {kind!r} was due")
        try:
            return wire.facts_from_json(payload, self.name)
        except wire.ProtocolViolation as e:
            raise self._broken(e) from None

    # -- what went wrong, as this file's error -----------------------------------
    def _timed_out(self) -> AudioError:
        self._state = "dead"
        self._child.kill()
        return AudioError(f"{self.name}: decoding took longer than {self.limits.timeout_s:g} s and was stopped; "
                          "the file was not scored (DEEPFAKE_DECODE_TIMEOUT_S sets the limit)")

    def _crashed(self) -> AudioError:
        self._state = "dead"
        how = self._child.exit_description()
        if self._child.exit_signal() == signal.SIGXCPU:
            return AudioError(f"{self.name}: decoding used more than {self.limits.cpu_s:g} s of CPU time and "
                              "was stopped; the file was not scored (DEEPFAKE_DECODE_CPU_S sets the limit)")
        return AudioError(f"{self.name}: the decoder crashed on this file ({how}); the file is damaged or "
                          "crafted against the decoder, and was not scored")

    def _broken(self, why) -> AudioError:
        self._state = "dead"
        self._child.kill()
        return AudioError(f"{self.name}: the decoder process sent malformed data ({why}); the file was not scored")

    def _child_error(self, payload: bytearray) -> AudioError:
        try:
            err = wire.decode_json(payload)
        except wire.ProtocolViolation as e:
            return self._broken(e)
        kind, message = str(err.get("kind", "")), " ".join(str(err.get("message", "")).split())
        if kind == "memory":
            self._state = "dead"   # an allocation failed half-way: do not trust this child again
            self._child.kill()
            return AudioError(f"{self.name}: decoding needed more than {self.limits.memory_mb} MB of memory "
                              "and was stopped; the file was not scored (DEEPFAKE_DECODE_MEMORY_MB sets the limit)")
        self._state = "failed_cleanly"
        if kind == "audio" and message:
            return AudioError(message)
        return AudioError(f"{self.name}: unexpected decoding failure ({message or 'no details'})")

    # -- AudioReader's surface ----------------------------------------------------
    def blocks(self, block_s: float = 30.0, native=None) -> Iterator[np.ndarray]:
        """Yield mono float32 16 kHz blocks; `facts` is complete once this is exhausted. `native`,
        as for AudioReader.blocks, is called with each mono block at the file's own rate."""
        if self._state != "opened":
            raise AudioError(f"{self.name}: already read")
        self._state = "streaming"
        try:
            self._send(wire.GO, wire.encode_json({"block_s": float(block_s), "native": native is not None}))
            while True:
                kind, payload = self._recv()
                if kind in (wire.BLOCK, wire.NATIVE):
                    try:
                        block = wire.samples_from(payload)
                    except wire.ProtocolViolation as e:
                        raise self._broken(e) from None
                    if kind == wire.NATIVE:
                        if native is None:
                            raise self._broken("a native-rate block nobody asked for")
                        native(block)
                        continue
                    yield block
                elif kind == wire.DONE:
                    try:
                        self.facts = wire.facts_from_json(payload, self.name)
                    except wire.ProtocolViolation as e:
                        raise self._broken(e) from None
                    self._state = "done"
                    return
                elif kind == wire.ERROR:
                    raise self._child_error(payload)
                else:
                    raise self._broken(f"an unexpected {kind!r} frame")
        finally:
            self.close()

    def close(self) -> None:
        """Give the child back: reused after a whole file, a header-only read or a clean error;
        killed (and replaced) when abandoned mid-stream or broken."""
        if self._child is None:
            return
        if self._state == "opened":     # facts only: tell the child to drop the file
            try:
                self._send(wire.CANCEL)
                self._state = "done"
            except AudioError:
                pass
        self._give_back(reusable=self._state in ("done", "failed_cleanly"))

    def _give_back(self, reusable: bool) -> None:
        child, self._child = self._child, None
        if child is not None:
            self._pool.release(child, reusable)

    def __enter__(self) -> "IsolatedReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a reader dropped without close() must not keep its child busy
        try:
            self.close()
        except Exception:
            pass
