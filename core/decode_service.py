"""The decoder child's request loop: one file at a time, streamed back as 16 kHz mono blocks.

Why streamed: a two-hour recording must never sit whole in either process. The child sends
one block, and the pipe's small buffer holds it back until the scorer has read the last one,
so both sides keep about one block in memory whatever the duration.
"""

from __future__ import annotations

from . import decode_limits, decode_protocol as wire
from .audio import AudioReader
from .errors import DetectorError


def _source(rx: int, request: dict):
    if request.get("source") == "bytes":
        kind, payload = wire.read_frame(rx, max_bytes=wire.MAX_UPLOAD_BYTES)
        if kind != wire.PAYLOAD:
            raise wire.ProtocolViolation(f"expected the upload's bytes, got a {kind!r} frame")
        return payload
    return str(request["path"])


def _error(tx: int, kind: str, message: str) -> None:
    wire.write_frame(tx, wire.ERROR, wire.encode_json({"kind": kind, "message": message[:2000]}))


def decode_one(rx: int, tx: int, request: dict) -> None:
    """Open, report the facts, wait for GO (or CANCEL), stream the blocks, report the final facts."""
    name = str(request.get("name") or "<upload>")
    source = _source(rx, request)
    decode_limits.cap_cpu_for_next_file(float(request.get("cpu_s", decode_limits.DEFAULT_TIMEOUT_S)))
    reader = None
    try:
        reader = AudioReader(source, name)
        del source
        wire.write_frame(tx, wire.OPENED, wire.facts_to_json(reader.facts))
        kind, payload = wire.read_frame(rx, max_bytes=wire.MAX_JSON_BYTES)
        if kind != wire.GO:
            return  # CANCEL: the scorer needed only the header's facts
        go = wire.decode_json(payload)
        block_s = float(go.get("block_s", 30.0))
        native = (lambda b: wire.write_frame(tx, wire.NATIVE, wire.samples_bytes(b))) if go.get("native") else None
        for block in reader.blocks(block_s, native=native):
            wire.write_frame(tx, wire.BLOCK, wire.samples_bytes(block))
        wire.write_frame(tx, wire.DONE, wire.facts_to_json(reader.facts))
    except DetectorError as e:
        _error(tx, "audio", str(e))
    except MemoryError:
        _error(tx, "memory", "")
    except wire.ChannelClosed:
        raise
    except Exception as e:  # a decoder bug is this file's error, reported as such
        _error(tx, "unexpected", f"{type(e).__name__}: {e}")
    finally:
        if reader is not None:
            reader.close()


def serve(rx: int, tx: int) -> int:
    """Answer DECODE requests until QUIT or until the scorer closes the pipe."""
    while True:
        try:
            kind, payload = wire.read_frame(rx, max_bytes=wire.MAX_JSON_BYTES)
            if kind == wire.QUIT:
                return 0
            if kind != wire.DECODE:
                continue   # a stray GO/CANCEL after an error: nothing to do
            decode_one(rx, tx, wire.decode_json(payload))
        except wire.ChannelClosed:
            return 0
