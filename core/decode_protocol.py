"""The wire format between the scorer and a decoder child: typed, length-prefixed frames over pipes.

Why not pickle: the child is where a hostile file may take control, so nothing it sends may
run code in the scorer. Frames carry JSON (requests, facts, errors) or raw little-endian
float32 samples, and the scorer checks every field it reads back.

A frame is one kind byte, an 8-byte little-endian payload length, then the payload.

  scorer -> child   DECODE (json request) [PAYLOAD (the upload's bytes)]   GO (json)   CANCEL   QUIT
  child -> scorer   HELLO (json)   OPENED (facts)   BLOCK (float32 samples)...   DONE (facts)   ERROR (json)
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from dataclasses import fields

import numpy as np

from .audio import AudioFacts

DECODE, PAYLOAD, GO, CANCEL, QUIT = b"D", b"P", b"G", b"C", b"Q"
HELLO, OPENED, BLOCK, DONE, ERROR = b"H", b"O", b"B", b"F", b"E"
NATIVE = b"N"                  # a mono block at the file's own rate (for a display), when GO asks for it
_HEADER = struct.Struct("<cQ")
MAX_JSON_BYTES = 1 << 20       # facts and errors are small: a bigger frame is a broken or hostile child
MAX_BLOCK_BYTES = 1 << 26      # 64 MB of float32: far above the ~2 MB blocks the child sends
MAX_UPLOAD_BYTES = 1 << 34     # what the child accepts from the scorer


class ChannelClosed(Exception):
    """The other side closed its pipe (it exited or crashed)."""


class ChannelTimeout(Exception):
    """Nothing arrived before the deadline."""


class ProtocolViolation(Exception):
    """A frame that the protocol does not allow (unknown kind, too big, malformed JSON or facts)."""


def _wait(fd: int, event: int, deadline: float | None) -> None:
    poller = select.poll()
    poller.register(fd, event | select.POLLHUP | select.POLLERR)
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if poller.poll(None if left is None else left * 1000):
            return
        if left is not None and time.monotonic() >= deadline:
            raise ChannelTimeout()


def write_frame(fd: int, kind: bytes, payload: bytes | memoryview = b"", deadline: float | None = None) -> None:
    data = memoryview(_HEADER.pack(kind, len(payload)) + bytes(payload)) if len(payload) < 1 << 16 else None
    parts = [data] if data is not None else [memoryview(_HEADER.pack(kind, len(payload))), memoryview(payload)]
    for view in parts:
        while len(view):
            if deadline is not None:
                _wait(fd, select.POLLOUT, deadline)
            try:
                n = os.write(fd, view)
            except (BrokenPipeError, ConnectionResetError):
                raise ChannelClosed() from None
            view = view[n:]


def _read_into(fd: int, buf: bytearray, deadline: float | None) -> None:
    view, got = memoryview(buf), 0
    while got < len(buf):
        if deadline is not None:
            _wait(fd, select.POLLIN, deadline)
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise ChannelClosed()
        got += n


def read_frame(fd: int, deadline: float | None = None, max_bytes: int = MAX_BLOCK_BYTES) -> tuple[bytes, bytearray]:
    """(kind, payload) of the next frame; raises ChannelClosed, ChannelTimeout or ProtocolViolation."""
    head = bytearray(_HEADER.size)
    _read_into(fd, head, deadline)
    kind, size = _HEADER.unpack(head)
    if size > max_bytes:
        raise ProtocolViolation(f"a frame of {size} bytes (at most {max_bytes} allowed)")
    payload = bytearray(size)
    _read_into(fd, payload, deadline)
    return kind, payload


def encode_json(obj) -> bytes:
    return json.dumps(obj).encode("utf-8")


def decode_json(payload: bytearray) -> dict:
    if len(payload) > MAX_JSON_BYTES:
        raise ProtocolViolation(f"a JSON frame of {len(payload)} bytes")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolViolation(f"malformed JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ProtocolViolation("a JSON frame that is not an object")
    return obj


def samples_bytes(block: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(block, dtype="<f4")).cast("B")


def samples_from(payload: bytearray) -> np.ndarray:
    """The float32 samples of a BLOCK frame (writable, no copy); non-finite values are refused."""
    if len(payload) % 4:
        raise ProtocolViolation(f"a block of {len(payload)} bytes is not whole float32 samples")
    x = np.frombuffer(payload, dtype="<f4").astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ProtocolViolation("a block with NaN/inf samples (the decoder replaces those)")
    return x


_FACT_TYPES = {f.name: f.type for f in fields(AudioFacts)}
_CASTS = {"str": str, "int": int, "float": float, "bool": bool}


def facts_to_json(facts: AudioFacts) -> bytes:
    return encode_json({k: getattr(facts, k) for k in _FACT_TYPES})


def facts_from_json(payload: bytearray, name: str) -> AudioFacts:
    """AudioFacts rebuilt field by field with the declared types; the name is the scorer's own."""
    obj = decode_json(payload)
    values = {}
    for key, type_name in _FACT_TYPES.items():
        if key not in obj:
            raise ProtocolViolation(f"facts without {key!r}")
        cast = _CASTS[str(type_name)]
        value = obj[key]
        if cast is str and not isinstance(value, str) or cast is not str and not isinstance(value, (int, float)):
            raise ProtocolViolation(f"facts with a {type(value).__name__} for {key!r}")
        values[key] = cast(value)
    values["name"] = name
    return AudioFacts(**values)
