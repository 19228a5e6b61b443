"""Decode any supported file into mono float32 at 16 kHz, plus the facts an analyst needs.

Decoding streams: `AudioReader.blocks()` yields resampled blocks, so a two-hour
recording never sits in memory at once. `load_audio()` is the convenience that joins
the blocks for short files. soundfile reads wav/flac/ogg(vorbis, opus)/mp3; anything it
cannot read (m4a/aac, ...) goes through torchcodec, which needs ffmpeg installed. FFmpeg is
given bytes or an open file, never a path (no protocols), and only audio containers
(core.containers).

This module decodes in the calling process: fine for trusted files. Untrusted ones (uploads,
batch inputs) go through `core.decoding.open_audio`, which runs this in a limited child.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import re
from fractions import Fraction
import stat
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Callable, Iterator

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from .containers import SNIFF_BYTES, ffmpeg_container
from .errors import AudioError

TARGET_SR = 16_000
SUPPORTED = "wav, flac, ogg/vorbis, opus, mp3 (and m4a/aac when ffmpeg is installed)"
LOSSY_SUBTYPES = {"VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III", "ALAW", "ULAW",
                  "GSM610", "IMA_ADPCM", "MS_ADPCM", "G721_32", "G723_24", "G723_40"}
CLIP_LEVEL = 0.999          # |x| at or above this counts as a clipped sample
SILENCE_FRAME = 320         # 20 ms at 16 kHz
SILENCE_ABS_DB = -50.0      # frames quieter than this are silent ...
SILENCE_REL_DB = 45.0       # ... and so are frames this far below the loudest frame
_FRAME_WINDOW = np.hanning(SILENCE_FRAME)  # taper for the power spectrum of those frames
_RESAMPLE_CONTEXT_S = 0.05  # filter context carried across block edges
_TC_CHUNK_S = 30.0          # ffmpeg (torchcodec) decodes this many seconds at a time ...
_TC_MIN_CHUNK_S = 0.25      # ... and down to this much around damage
BAND_FLOOR = 1e-5            # content "stops" where less than this share of the energy (-50 dB) lies above
NARROW_BAND_HZ = 6000.0      # a file whose rate allows 8 kHz but whose content stops below this is narrow-band
MAX_PLAUSIBLE_PEAK = 65536.0  # float samples beyond this (+96 dBFS) are not audio: damaged or random data
_MIN_RETRY_FRAMES = 1024     # a block that fails to decode is retried in halves down to this
MAX_BLOCK_SAMPLES = 1 << 22  # native samples (frames x channels) decoded at once: bounds memory
                             # whatever rate/channel count a (possibly hostile) header claims


@dataclass
class AudioFacts:
    """What an analyst needs to judge a verdict: where the audio came from and its condition."""

    name: str
    container: str
    codec: str
    original_rate: int
    channels: int
    duration_s: float = 0.0
    peak_dbfs: float = float("-inf")
    clipped_fraction: float = 0.0
    silence_ratio: float = 0.0
    dc_offset: float = 0.0
    nonfinite_samples: int = 0
    decoder: str = "soundfile"
    analysed_s: float = 0.0
    header_s: float = 0.0       # the duration the file's header promises (0: it does not say)
    truncated: bool = False     # decoding stopped at damage, or the data ends before the header says
    bandwidth_hz: float = 0.0   # where the content stops, at 16 kHz (0: silent, nothing to measure)

    @property
    def lossy(self) -> bool:
        return self.codec.upper() in LOSSY_SUBTYPES or self.decoder == "torchcodec"

    def warnings(self, window_s: float | None = None) -> list[str]:
        """Plain-language cautions that change how far a verdict can be trusted."""
        out: list[str] = []
        if self.original_rate < 16_000:
            out.append(f"Low sample rate ({self.original_rate} Hz): no content above "
                       f"{self.original_rate // 2} Hz, which detectors can mistake for a cue.")
        elif 0 < self.bandwidth_hz < NARROW_BAND_HZ:
            out.append(f"Narrow band: almost no content above {self.bandwidth_hz / 1000:.1f} kHz although the "
                       f"file's rate allows 8 kHz (telephone audio or an upsampled recording); detectors can "
                       "mistake the missing band for a cue, and call real narrow-band speech fake.")
        if self.lossy:
            out.append(f"Lossy codec ({self.codec}): compression removes detail that detectors use.")
        if self.clipped_fraction > 0.001:
            out.append(f"Clipping: {self.clipped_fraction:.2%} of samples at full scale.")
        if self.silence_ratio > 0.5:
            out.append(f"Mostly silence ({self.silence_ratio:.0%} of 20 ms frames are silent).")
        if self.nonfinite_samples:
            out.append(f"{self.nonfinite_samples} NaN/inf samples were replaced by silence.")
        if abs(self.dc_offset) > 0.05:
            out.append(f"DC offset of {self.dc_offset:+.3f} (the recording chain is faulty).")
        if window_s and self.duration_s < window_s:
            out.append(f"Shorter ({self.duration_s:.2f} s) than one analysis window ({window_s:.2f} s): "
                       "the window is padded, so the score rests on little evidence.")
        if self.truncated:
            promised = f"its header promises {self.header_s:.1f} s but " if self.header_s > self.duration_s else ""
            out.append(f"The file is cut off or damaged: {promised}only {self.duration_s:.1f} s could be decoded; "
                       "the verdict covers that part alone.")
        if self.analysed_s and self.analysed_s + 0.05 < self.duration_s:
            out.append(f"Only {self.analysed_s:.1f} s of {self.duration_s:.1f} s were analysed.")
        return out

    def as_dict(self) -> dict:
        d = asdict(self)
        d["lossy"] = self.lossy
        return d


@dataclass
class _FactsAccumulator:
    """Running statistics so facts need one pass over a stream."""

    peak: float = 0.0
    clipped: int = 0
    native_samples: int = 0
    sum_: float = 0.0
    nonfinite: int = 0
    frame_db: list = field(default_factory=list)
    mono_samples: int = 0
    power: np.ndarray = field(default_factory=lambda: np.zeros(SILENCE_FRAME // 2 + 1))
    _tail: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def add_native(self, block: np.ndarray) -> np.ndarray:
        """Take a [n, channels] native block; return it with NaN/inf replaced by 0."""
        bad = ~np.isfinite(block)
        if bad.any():
            self.nonfinite += int(bad.sum())
            block = np.where(bad, 0.0, block).astype(np.float32)
        if block.size:
            a = np.abs(block)
            self.peak = max(self.peak, float(a.max()))
            self.clipped += int((a >= CLIP_LEVEL).sum())
            self.sum_ += float(block.sum(dtype=np.float64))
            self.native_samples += block.size
        return block

    def add_mono16k(self, x: np.ndarray) -> None:
        self.mono_samples += len(x)
        x = np.concatenate([self._tail, x]) if len(self._tail) else x
        n = len(x) // SILENCE_FRAME
        if n:
            frames = x[: n * SILENCE_FRAME].reshape(n, SILENCE_FRAME).astype(np.float64)
            rms = np.sqrt((frames**2).mean(axis=1))
            self.frame_db.append((20 * np.log10(np.maximum(rms, 1e-10))).astype(np.float32))
            self.power += (np.abs(np.fft.rfft(frames * _FRAME_WINDOW, axis=1)) ** 2).sum(axis=0)
        self._tail = x[n * SILENCE_FRAME:].copy()

    def finish(self, facts: AudioFacts) -> AudioFacts:
        facts.duration_s = self.mono_samples / TARGET_SR
        facts.peak_dbfs = 20 * math.log10(self.peak) if self.peak > 0 else float("-inf")
        facts.clipped_fraction = self.clipped / self.native_samples if self.native_samples else 0.0
        facts.dc_offset = self.sum_ / self.native_samples if self.native_samples else 0.0
        facts.nonfinite_samples = self.nonfinite
        facts.bandwidth_hz = effective_bandwidth(self.power)
        db = np.concatenate(self.frame_db) if self.frame_db else np.zeros(0, np.float32)
        if len(db):
            limit = max(SILENCE_ABS_DB, float(db.max()) - SILENCE_REL_DB)
            facts.silence_ratio = float((db < limit).mean())
        else:
            facts.silence_ratio = 1.0 if self.peak == 0 else 0.0
        return facts


def effective_bandwidth(power: np.ndarray) -> float:
    """The frequency (Hz, at 16 kHz) above which less than BAND_FLOOR of the energy lies.

    Why: a telephone call saved at 44.1 kHz has no low-rate header to warn about, yet the
    detectors see it exactly as an 8 kHz file. On the shared pool this measure puts every
    16 kHz-and-up clip at 7.1-8 kHz and every 8 kHz digit clip at 3.7-4.9 kHz (resampler skirt).
    `power` is the summed power spectrum of 20 ms frames (bins of 50 Hz); 0.0 when silent."""
    total = float(power.sum())
    if total <= 0:
        return 0.0
    above = np.cumsum(power[::-1])[::-1] / total   # share of the energy at and above each bin
    quiet = np.flatnonzero(above < BAND_FLOOR)
    return float(quiet[0]) * TARGET_SR / SILENCE_FRAME if len(quiet) else TARGET_SR / 2


def _to_mono(block: np.ndarray) -> np.ndarray:
    return block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].astype(np.float32)


MAX_RESAMPLE_UNITS = 1 << 20  # bounds torchaudio's sinc kernel (about unit_in x unit_out floats)


def _rate_units(orig: int) -> tuple[int, int]:
    """(unit_in, unit_out): the smallest whole-sample ratio for orig -> 16 kHz.

    Every common rate gives small units (44.1 kHz: 441 -> 160). A rate sharing no factor
    with 16 kHz (say 16001 Hz, from a damaged header) would need a 16000 x 16001 kernel (1 GB,
    minutes to build); it is approximated by the closest small ratio instead (a timing error
    of well under 0.1%, far below what changes a score).
    """
    g = math.gcd(orig, TARGET_SR)
    unit_in, unit_out = orig // g, TARGET_SR // g
    limit = 1000
    while unit_in * unit_out > MAX_RESAMPLE_UNITS and limit >= 1:
        f = Fraction(TARGET_SR, orig).limit_denominator(limit)
        unit_in, unit_out = f.denominator, f.numerator
        limit //= 2
    return unit_in, unit_out


def _resample_blocks(blocks: Iterator[np.ndarray], orig: int) -> Iterator[np.ndarray]:
    """Resample a stream of mono blocks to 16 kHz, seamless across block edges.

    Each block is resampled with real neighbouring samples on both sides (zeros at the
    file's ends, as a whole-file resample would see), then the middle is kept.
    """
    unit_in, unit_out = _rate_units(orig)
    if unit_in == unit_out:
        yield from blocks
        return
    ctx_units = max(1, math.ceil(_RESAMPLE_CONTEXT_S * orig / unit_in))
    ctx = ctx_units * unit_in

    def emit(left: np.ndarray, cur: np.ndarray, right: np.ndarray) -> np.ndarray:
        x = np.concatenate([left, cur, right])
        y = AF.resample(torch.from_numpy(x), unit_in, unit_out).numpy()
        start = ctx_units * unit_out
        n_out = math.ceil(len(cur) * unit_out / unit_in)
        return y[start:start + n_out].astype(np.float32)

    left = np.zeros(ctx, np.float32)
    cur = None
    pending = np.zeros(0, np.float32)
    for b in blocks:
        pending = np.concatenate([pending, b]) if len(pending) else b
        # keep block lengths a multiple of unit_in so output lengths stay exact
        if cur is None:
            usable = (len(pending) // unit_in) * unit_in
            if usable == 0:
                continue
            cur, pending = pending[:usable], pending[usable:]
            continue
        if len(pending) < ctx:
            continue
        usable = (len(pending) // unit_in) * unit_in
        nxt, pending = pending[:usable], pending[usable:]
        yield emit(left, cur, nxt[:ctx])
        tail = np.concatenate([left, cur])[-ctx:]
        left, cur = tail, nxt
    rest = np.concatenate([cur, pending]) if cur is not None else pending
    if len(rest):
        yield emit(left, rest, np.zeros(ctx, np.float32))


class AudioReader:
    """Open a file (path, bytes or binary stream) and stream it as mono 16 kHz blocks.

    >>> with AudioReader("clip.wav") as r:            # doctest: +SKIP
    ...     x = np.concatenate(list(r.blocks()))
    ...     facts = r.facts
    """

    def __init__(self, source: str | os.PathLike | bytes | BinaryIO, name: str | None = None):
        self.name = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<upload>")
        self._source = source
        self._sf: sf.SoundFile | None = None
        self._fallback: tuple | None = None   # (torchcodec chunk iterator, first chunk)
        self._tc_damaged = False
        self._tc_file: BinaryIO | None = None   # the file FFmpeg reads, when the source is a path
        self._acc = _FactsAccumulator()
        self._done = False
        self._open()

    # -- opening -----------------------------------------------------------
    def _open(self) -> None:
        src = self._source
        if isinstance(src, (str, os.PathLike)):
            path = os.fspath(src)
            if os.path.isdir(path):
                raise AudioError(f"{self.name}: is a folder, not an audio file")
            try:
                st = os.stat(path)
            except OSError as e:
                raise AudioError(f"{self.name}: cannot open ({e.strerror or e})") from None
            if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
                raise AudioError(f"{self.name}: not a regular file (a pipe, socket or device); "
                                 "give an audio file on disk")
            if st.st_size == 0:
                raise AudioError(f"{self.name}: the file is empty (0 bytes)")
            try:
                with open(path, "rb"):
                    pass
            except OSError as e:
                raise AudioError(f"{self.name}: cannot read ({e.strerror or e})") from None
        elif isinstance(src, (bytes, bytearray, memoryview)):
            if len(src) == 0:
                raise AudioError(f"{self.name}: the file is empty (0 bytes)")
            src = io.BytesIO(bytes(src))
            self._source = src
        try:
            self._sf = sf.SoundFile(src)
            self.original_rate = int(self._sf.samplerate)
            self.channels = int(self._sf.channels)
            container, codec = self._sf.format, self._sf.subtype
            self.frames_hint = int(self._sf.frames) if self._sf.frames and self._sf.frames > 0 else 0
            self._decoder = "soundfile"
        except Exception as sf_err:  # soundfile cannot read it: try ffmpeg via torchcodec
            if self._sf is not None:
                self._sf.close()
            self._sf = None
            channels, rate, codec, duration = self._decode_torchcodec(sf_err)
            self.original_rate, self.channels = rate, channels
            self.frames_hint = int(duration * rate) if duration > 0 else len(self._fallback[1])
            container, self._decoder = "ffmpeg", "torchcodec"
        if self.original_rate <= 0 or self.channels <= 0:
            self.close()
            raise AudioError(f"{self.name}: the header is invalid (rate {self.original_rate}, "
                             f"{self.channels} channels)")
        if self.original_rate < 1000 or self.original_rate > 768_000:
            self.close()
            raise AudioError(f"{self.name}: unsupported sample rate {self.original_rate} Hz")
        hint_s = self.frames_hint / self.original_rate
        # libsndfile reports the WAV frames present, not those the header declares: read the RIFF size
        header_s = max(hint_s, _wav_declared_s(self._source) or 0.0) if container == "WAV" else hint_s
        self.facts = AudioFacts(self.name, container, codec, self.original_rate, self.channels,
                                duration_s=hint_s, decoder=self._decoder, header_s=header_s)

    def _decode_torchcodec(self, sf_err: Exception) -> tuple[int, int, str, float]:
        """Open with ffmpeg and decode the first chunk; the rest streams chunk by chunk.

        Returns (channels, rate, codec, duration from the header or 0)."""
        try:
            from torchcodec.decoders import AudioDecoder
        except Exception:  # ImportError, or torchcodec's own error when ffmpeg libs are missing
            raise AudioError(
                f"{self.name}: not a format soundfile can read ({_short(sf_err)}). Supported: {SUPPORTED}. "
                "For m4a/aac and other formats install ffmpeg (apt-get install ffmpeg) and torchcodec."
            ) from None
        src = self._ffmpeg_input()
        head = src[:SNIFF_BYTES] if isinstance(src, bytes) else src.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        if ffmpeg_container(head) is None:
            self.close()
            raise AudioError(f"{self.name}: cannot decode: not a supported audio file ({_short(sf_err)}; its first "
                             f"bytes match no audio container FFmpeg may open). Supported: {SUPPORTED}.")
        try:
            dec = AudioDecoder(src)
            md = dec.metadata
            rate_md, ch_md = int(getattr(md, "sample_rate", 0) or 0), int(getattr(md, "num_channels", 0) or 0)
            chunk_s = _TC_CHUNK_S
            if rate_md > 0 and ch_md > 0:  # a chunk holds at most about MAX_BLOCK_SAMPLES samples
                chunk_s = max(0.05, min(_TC_CHUNK_S, MAX_BLOCK_SAMPLES / (rate_md * ch_md)))
            start = float(getattr(md, "begin_stream_seconds", 0.0) or 0.0)
            codec = str(getattr(md, "codec", "") or "unknown")
            duration = float(getattr(md, "duration_seconds", 0.0) or 0.0)
            self._tc_error: Exception | None = None
            chunks = self._tc_chunks(dec, start, chunk_s)
            first = next(chunks, None)
            if first is None:
                raise self._tc_error or AudioError("no audio samples")
        except Exception as e:
            self.close()
            raise AudioError(f"{self.name}: cannot decode: not a supported audio file "
                             f"({_short(sf_err)}; ffmpeg: {_short(e)}). Supported: {SUPPORTED}.") from None
        self._fallback = (chunks, first)
        return first.shape[1], self._tc_rate, codec, duration if math.isfinite(duration) else 0.0

    def _ffmpeg_input(self):
        """What FFmpeg reads: bytes, or the file opened here. A path is never given to FFmpeg, which
        would read `concat:...`, `subfile,...` or `http://...` in a name as a protocol to open."""
        src = self._source
        if isinstance(src, (str, os.PathLike)):
            self._tc_file = open(src, "rb")
            return self._tc_file
        src.seek(0)
        return src.read()

    def _tc_chunks(self, dec, t: float, chunk_s: float) -> Iterator[np.ndarray]:
        """[frames, channels] chunks from t on. A chunk ffmpeg cannot decode (a damaged or cut
        file) is retried in halves, so everything up to the damage is kept."""
        step = chunk_s
        while True:
            try:
                s = dec.get_samples_played_in_range(t, t + step)
            except Exception as e:
                if "No audio frames" in str(e):    # past the end
                    return
                if step <= _TC_MIN_CHUNK_S:
                    self._tc_error, self._tc_damaged = e, True
                    return
                step /= 2
                continue
            x = s.data.numpy().T.astype(np.float32)
            if len(x) == 0:
                return
            self._tc_rate = int(s.sample_rate)
            yield x
            t += step
            step = min(chunk_s, step * 2)

    # -- streaming ---------------------------------------------------------
    def _native_blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        if self._fallback is not None:
            chunks, first = self._fallback
            self._fallback = (chunks, None)
            for chunk in itertools.chain([first], chunks):
                for i in range(0, len(chunk), block_frames):
                    yield chunk[i:i + block_frames]
            self.truncated = self._tc_damaged
            return
        assert self._sf is not None
        step = block_frames
        while True:
            pos = self._sf.tell() if self._sf.seekable() else -1
            try:
                b = self._sf.read(step, dtype="float32", always_2d=True)
            except Exception as e:
                if pos >= 0 and step > _MIN_RETRY_FRAMES and _seek_back(self._sf, pos):
                    step //= 2   # damage inside this block: retry smaller, keeping what precedes it
                    continue
                if self._acc.native_samples:  # truncated tail: keep what decoded
                    self.truncated = True
                    return
                raise AudioError(f"{self.name}: cannot decode audio data ({_short(e)})") from None
            if len(b) == 0:
                return
            yield b

    def blocks(self, block_s: float = 30.0,
               native: Callable[[np.ndarray], None] | None = None) -> Iterator[np.ndarray]:
        """Yield mono float32 16 kHz blocks; `facts` is complete once this is exhausted.

        `native`, if given, is called with each mono block at the file's own rate before it is
        resampled: a display can then draw what lies above 8 kHz from the same single decode."""
        if self._done:
            raise AudioError(f"{self.name}: already read")
        self.truncated = False
        block_frames = max(1, min(int(block_s * self.original_rate), MAX_BLOCK_SAMPLES // self.channels))

        def mono() -> Iterator[np.ndarray]:
            for b in self._native_blocks(block_frames):
                b = self._acc.add_native(b)
                if self._acc.peak > MAX_PLAUSIBLE_PEAK:
                    raise AudioError(f"{self.name}: sample values reach {self._acc.peak:.3g}, far beyond full "
                                     "scale (1.0): the file is damaged or not audio (float data that is not "
                                     "scaled to -1..1 must be rescaled first)")
                m = _to_mono(b)
                if native is not None:
                    native(m)
                yield m

        for y in _resample_blocks(mono(), self.original_rate):
            self._acc.add_mono16k(y)
            yield y
        self._acc.finish(self.facts)
        self._done = True
        f = self.facts   # a shortfall beyond encoder padding (mp3 headers count a few ms more) is damage
        f.truncated = self.truncated or f.header_s - f.duration_s > max(0.25, 0.02 * f.header_s)
        if self._acc.mono_samples == 0:
            raise AudioError(f"{self.name}: the file contains no audio samples")

    def close(self) -> None:
        if self._sf is not None:
            self._sf.close()
            self._sf = None
        if self._tc_file is not None:
            self._tc_file.close()
            self._tc_file = None

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Audio:
    samples: np.ndarray  # mono float32 at TARGET_SR
    facts: AudioFacts

    @property
    def duration_s(self) -> float:
        return len(self.samples) / TARGET_SR


def _seek_back(f: sf.SoundFile, pos: int) -> bool:
    """Return to `pos` before a failed read; False when the damaged stream cannot seek either."""
    try:
        f.seek(pos)
        return True
    except Exception:
        return False


def _wav_declared_s(source) -> float | None:
    """Seconds of audio a RIFF/WAVE header declares in its data chunk, when more bytes are declared
    than the file holds (a cut-off download); None when the file is whole or cannot be checked.
    `source` is a path or a seekable stream (bytes were wrapped in one on opening); its position
    is restored, since libsndfile reads from it too."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                return _riff_shortfall(fh, os.fstat(fh.fileno()).st_size)
        if hasattr(source, "seek") and hasattr(source, "tell"):
            pos = source.tell()
            try:
                size = source.seek(0, io.SEEK_END)
                source.seek(0)
                return _riff_shortfall(source, size)
            finally:
                source.seek(pos)
    except (OSError, ValueError):
        return None
    return None


def _riff_shortfall(fh: BinaryIO, size: int) -> float | None:
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    rate = align = 0
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        hdr = fh.read(8)
        if len(hdr) < 8:
            return None
        cid, n = hdr[:4], int.from_bytes(hdr[4:8], "little")
        if cid == b"fmt ":
            fmt = fh.read(16)
            if len(fmt) < 16:
                return None
            rate, align = int.from_bytes(fmt[4:8], "little"), int.from_bytes(fmt[12:14], "little")
        elif cid == b"data":
            if not rate or not align or n == 0 or n >= 0x7FFFF000:   # streaming writers leave it open
                return None
            present = size - (pos + 8)
            return n // align / rate if n > present + align else None
        pos += 8 + n + (n & 1)
    return None


def load_audio(source: str | os.PathLike | bytes | BinaryIO, name: str | None = None) -> Audio:
    """Decode a whole file to mono float32 at 16 kHz, with its facts."""
    with AudioReader(source, name) as r:
        parts = list(r.blocks())
        return Audio(np.concatenate(parts) if parts else np.zeros(0, np.float32), r.facts)


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    # torchcodec prefixes its messages with C++ function names and source locations
    msg = re.sub(r"^(?:\w+, )?\S+\.cpp:\d+, ", "", msg)
    # soundfile names an in-memory upload by its object repr: say "the upload" instead
    msg = re.sub(r"<_?io\.\w+ object at 0x[0-9a-fA-F]+>", "the upload", msg)
    return msg[:200]
