"""Property-based fuzzing of the decoder and the scorer (hypothesis).

Random bytes and mutated valid files (wav/flac/ogg-vorbis/opus/mp3, and m4a when ffmpeg is
installed; byte flips, truncations, insertions, deletions, splices and hostile header
fields) go to `core.audio.load_audio`, `AudioReader.blocks` and `Detector.score_many`.

Properties: the only exception that leaves load_audio / Detector.score is DetectorError;
score_many never raises for a file; what decodes is finite mono float32 with consistent
facts; nothing hangs (SIGALRM per example for Python-level hangs, and a faulthandler
watchdog that kills the run with a traceback if native code hangs).

CI runs a small, derandomised budget. A longer campaign:

    FUZZ_EXAMPLES=20000 nice -n 19 .venv/bin/pytest tests/test_fuzz.py -q

(FUZZ_EXAMPLES is the total over the tests here; with it set the examples are random.)
"""

from __future__ import annotations

import faulthandler
import io
import os
import shutil
import signal
import subprocess
import tempfile
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import FAST_MODELS, speechlike
from core.audio import TARGET_SR, AudioReader, load_audio
from core.errors import DetectorError

CAMPAIGN = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
# share of the total budget per test; CI total = 60 + 150 + 60 = 270
SHARES = {"random": 60, "decode": 150, "score": 60}
CI_TOTAL = sum(SHARES.values())
HANG_S = 30          # one example may not take longer than this (Python-level guard)
NATIVE_HANG_S = 120  # watchdog for hangs inside C code (kills the run with tracebacks)


def budget(name: str) -> int:
    if not CAMPAIGN:
        return SHARES[name]
    return max(1, CAMPAIGN * SHARES[name] // CI_TOTAL)


def fuzz_settings(name: str):
    return settings(max_examples=budget(name), deadline=None, database=None, derandomize=not CAMPAIGN,
                    print_blob=True, suppress_health_check=list(HealthCheck))


class Hang(Exception):
    pass


@contextmanager
def no_hang(what: str):
    """Fail an example that runs too long, instead of letting the suite hang."""
    def on_alarm(signum, frame):
        raise Hang(f"{what} took longer than {HANG_S} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(HANG_S)
    faulthandler.dump_traceback_later(NATIVE_HANG_S, exit=True)
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, old)


# ============================================================================ seed corpus


def _encode(x, sr, **kw) -> bytes:
    b = io.BytesIO()
    sf.write(b, x, sr, **kw)
    return b.getvalue()


@lru_cache(maxsize=None)
def seeds() -> dict[str, bytes]:
    x = speechlike(0.3, seed=7)
    x44 = speechlike(0.3, sr=44_100, seed=8)
    out = {
        "wav16": _encode(x, 16_000, format="WAV", subtype="PCM_16"),
        "wav_float": _encode(x, 16_000, format="WAV", subtype="FLOAT"),
        "wav24_stereo_44k": _encode(np.stack([x44, -x44], 1), 44_100, format="WAV", subtype="PCM_24"),
        "wav_u8_8k": _encode(speechlike(0.3, sr=8000), 8000, format="WAV", subtype="PCM_U8"),
        "flac": _encode(x, 16_000, format="FLAC", subtype="PCM_16"),
        "ogg_vorbis": _encode(x44, 44_100, format="OGG", subtype="VORBIS"),
        "opus": _encode(speechlike(0.3, sr=48_000), 48_000, format="OGG", subtype="OPUS"),
        "mp3": _encode(x44, 44_100, format="MP3", subtype="MPEG_LAYER_III"),
    }
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        with tempfile.TemporaryDirectory() as d:
            src, dst = os.path.join(d, "in.wav"), os.path.join(d, "out.m4a")
            sf.write(src, x44, 44_100)
            r = subprocess.run([ffmpeg, "-v", "error", "-y", "-i", src, "-c:a", "aac", "-b:a", "32k", dst],
                               capture_output=True, timeout=60)
            if r.returncode == 0:
                with open(dst, "rb") as f:
                    out["m4a"] = f.read()
    return out


# offsets of the canonical 44-byte WAV header's fields: riff size, format tag, channels,
# rate, byte rate, block align, bits per sample, data size
WAV_FIELDS = [(4, 4), (20, 2), (22, 2), (24, 4), (28, 4), (32, 2), (34, 2), (40, 4)]
INTERESTING = [0, 1, 2, 3, 6, 7, 8, 16, 24, 32, 64, 0x7F, 0x80, 0xFF, 0x100, 1000, 8000, 16000, 44100,
               48000, 96000, 768000, 768001, 999, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


@st.composite
def mutated_files(draw):
    corpus = seeds()
    kind = draw(st.sampled_from(sorted(corpus)))
    b = bytearray(corpus[kind])
    for _ in range(draw(st.integers(1, 3))):
        if not b:
            break
        op = draw(st.sampled_from(["flip", "flip", "truncate", "header", "wav_field", "insert", "delete",
                                   "splice", "zero_run"]))
        n = len(b)
        if op == "flip":
            i = draw(st.integers(0, n - 1))
            b[i] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            b = b[: draw(st.integers(0, n))]
        elif op in ("header", "wav_field"):
            if op == "wav_field" and kind.startswith("wav") and n >= 44:
                off, width = draw(st.sampled_from(WAV_FIELDS))
            else:
                width = draw(st.sampled_from([1, 2, 4]))
                off = draw(st.integers(0, max(0, min(n, 128) - width)))
            val = draw(st.sampled_from(INTERESTING) | st.integers(0, 2**32 - 1))
            b[off:off + width] = (val & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        elif op == "insert":
            i = draw(st.integers(0, n))
            b[i:i] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            i = draw(st.integers(0, n - 1))
            del b[i:i + draw(st.integers(1, 256))]
        elif op == "splice":
            other = corpus[draw(st.sampled_from(sorted(corpus)))]
            i, j = draw(st.integers(0, n)), draw(st.integers(0, len(other)))
            b = b[:i] + other[j:j + draw(st.integers(1, 2048))]
        elif op == "zero_run":
            i = draw(st.integers(0, n - 1))
            b[i:i + draw(st.integers(1, 512))] = bytes(min(n - i, 512))
    return kind, bytes(b)


# ============================================================================ properties


def check_decodes_or_refuses(data: bytes, name: str) -> None:
    try:
        a = load_audio(data, name=name)
    except DetectorError as e:
        assert str(e).strip(), "an error must say something"
        assert name in str(e), f"the error must name the file: {e}"
        event(f"{name}: refused")
        return
    event(f"{name}: decoded")
    x = a.samples
    assert x.dtype == np.float32 and x.ndim == 1
    assert np.all(np.isfinite(x)), "decoded samples must be finite"
    f = a.facts
    assert f.duration_s == pytest.approx(len(x) / TARGET_SR, abs=1e-6)
    assert f.channels >= 1 and f.original_rate >= 1000
    assert 0.0 <= f.clipped_fraction <= 1.0 and 0.0 <= f.silence_ratio <= 1.0
    assert f.nonfinite_samples >= 0


@pytest.mark.filterwarnings("ignore")
@fuzz_settings("random")
@given(data=st.binary(min_size=0, max_size=4096), magic=st.sampled_from(
    [b"", b"RIFF", b"RIFF\x00\x00\x00\x00WAVE", b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"FORM"]))
def test_random_bytes_decode_or_raise_detector_error(data, magic):
    with no_hang("load_audio on random bytes"):
        check_decodes_or_refuses(magic + data, "random.bin")


@pytest.mark.filterwarnings("ignore")
@fuzz_settings("decode")
@given(case=mutated_files())
def test_mutated_files_decode_or_raise_detector_error(case):
    kind, data = case
    with no_hang(f"load_audio on a mutated {kind}"):
        check_decodes_or_refuses(data, f"mutated.{kind}")
        # streaming in small blocks must behave the same way (no other exception type)
        try:
            with AudioReader(data, name="stream") as r:
                for blk in r.blocks(block_s=0.05):
                    assert blk.dtype == np.float32 and np.all(np.isfinite(blk))
        except DetectorError:
            pass


@pytest.fixture(scope="module")
def fuzz_detector(fast_weights):
    from core.inference import Detector

    return Detector.from_set("seed", models=FAST_MODELS, weights_dir=fast_weights, allow_download=False,
                             decode_workers=1)


@pytest.mark.filterwarnings("ignore")
@fuzz_settings("score")
@given(case=mutated_files(), raw=st.binary(max_size=512))
def test_mutated_files_never_break_score_many(fuzz_detector, case, raw):
    det = fuzz_detector
    kind, data = case
    with no_hang(f"score_many on a mutated {kind}"):
        out = list(det.score_many([("mutated", data), ("raw", raw), ("mutated again", data)]))
        assert [r.file for r in out] == ["mutated", "raw", "mutated again"]
        event(f"{kind}: " + ("refused" if out[0].error else "scored"))
        for r in out:
            if r.error:
                assert not r.models and r.ensemble is None
                continue
            assert r.ensemble is not None
            for m in r.models.values():
                if m.error is None:
                    assert 0.0 <= m.p_fake <= 1.0
                    assert m.windows and all(0.0 <= w.p_fake <= 1.0 for w in m.windows)
        # the same bytes give the same outcome, whatever shares the batch
        assert (out[0].error is None) == (out[2].error is None)
        if out[0].error is None:
            for name, m in out[0].models.items():
                again = out[2].models[name].p_fake
                assert (m.p_fake is None) == (again is None)
                if m.p_fake is not None:
                    assert m.p_fake == pytest.approx(again, abs=1e-5)
        # and Detector.score raises nothing but DetectorError
        try:
            det.score(data, name="mutated")
        except DetectorError:
            pass
