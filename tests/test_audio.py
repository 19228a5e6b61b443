"""core/audio.py: every supported format decodes to mono float32 16 kHz, with correct facts."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from conftest import SHARED_DATA, noise, speechlike, tone
from core.audio import TARGET_SR, AudioReader, load_audio
from core.errors import AudioError


def dominant_hz(x: np.ndarray, sr: int = TARGET_SR) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spec))
    # parabolic interpolation around the peak bin
    if 0 < k < len(spec) - 1:
        a, b, c = np.log(spec[k - 1:k + 2] + 1e-12)
        k = k + 0.5 * (a - c) / (a - 2 * b + c)
    return k * sr / len(x)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


# ---------------------------------------------------------------------------- formats

LOSSLESS = [("wav", "WAV", "PCM_U8", 1e-2), ("wav", "WAV", "PCM_16", 1e-4), ("wav", "WAV", "PCM_24", 1e-6),
            ("wav", "WAV", "PCM_32", 1e-6), ("wav", "WAV", "FLOAT", 1e-7), ("flac", "FLAC", "PCM_16", 1e-4),
            ("flac", "FLAC", "PCM_24", 1e-6)]


@pytest.mark.parametrize("ext,fmt,subtype,tol", LOSSLESS)
def test_lossless_formats_decode_exactly(make, ext, fmt, subtype, tol):
    x = speechlike(1.5, TARGET_SR, seed=3)
    p = make.write(f"a_{subtype}.{ext}", x, TARGET_SR, format=fmt, subtype=subtype)
    a = load_audio(p)
    assert a.samples.dtype == np.float32 and a.samples.ndim == 1
    assert len(a.samples) == len(x)
    assert np.max(np.abs(a.samples - x)) < tol * 2 + 1e-7
    assert a.facts.container == fmt and a.facts.codec == subtype
    assert a.facts.original_rate == TARGET_SR and a.facts.channels == 1
    assert a.facts.duration_s == pytest.approx(1.5, abs=1e-3)
    assert not a.facts.lossy


@pytest.mark.parametrize("ext,fmt,subtype,sr", [("ogg", "OGG", "VORBIS", 44100), ("opus", "OGG", "OPUS", 48000),
                                                ("mp3", "MP3", "MPEG_LAYER_III", 44100)])
def test_lossy_formats_decode(make, ext, fmt, subtype, sr):
    x = tone(1000, 2.0, sr, amp=0.5)
    p = make.write(f"a.{ext}", x, sr, format=fmt, subtype=subtype)
    a = load_audio(p)
    f = a.facts
    assert f.original_rate == sr and f.channels == 1 and f.codec == subtype and f.lossy
    # encoders add a little priming delay / padding: allow 0.1 s
    assert f.duration_s == pytest.approx(2.0, abs=0.1)
    assert dominant_hz(a.samples) == pytest.approx(1000, abs=3)
    # codecs overshoot at the abrupt onset; the level in the middle is kept
    mid = a.samples[len(a.samples) // 4: -len(a.samples) // 4]
    assert np.sqrt(np.mean(mid ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    assert -8 < f.peak_dbfs < 0
    assert any("Lossy" in w for w in f.warnings())


def test_from_bytes_and_stream_equal_path(make):
    x = speechlike(1.0, 22050)
    p = make.write("b.flac", x, 22050)
    ref = load_audio(p).samples
    from_bytes = load_audio(p.read_bytes(), name="upload.flac")
    from_stream = load_audio(io.BytesIO(p.read_bytes()), name="upload.flac")
    assert from_bytes.facts.name == "upload.flac"
    np.testing.assert_array_equal(from_bytes.samples, ref)
    np.testing.assert_array_equal(from_stream.samples, ref)


def test_espeak_speech(espeak_wav):
    a = load_audio(espeak_wav)
    info = sf.info(espeak_wav)
    assert a.facts.original_rate == info.samplerate
    assert a.facts.duration_s == pytest.approx(info.frames / info.samplerate, abs=2e-3)
    # speech has pauses but is not mostly silence, and espeak does not clip
    assert 0.0 < a.facts.silence_ratio < 0.6
    assert a.facts.clipped_fraction < 0.001
    assert -30 < a.facts.peak_dbfs <= 0


SPEECH_FORMATS = [("wav", "WAV", "PCM_16"), ("wav", "WAV", "PCM_24"), ("wav", "WAV", "PCM_32"),
                  ("wav", "WAV", "FLOAT"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"),
                  ("opus", "OGG", "OPUS"), ("mp3", "MP3", "MPEG_LAYER_III")]


def band_energies(x: np.ndarray, frame: int = 512) -> np.ndarray:
    """Log energy per frame in 8 bands: a coarse spectro-temporal envelope."""
    n = len(x) // frame
    spec = np.abs(np.fft.rfft(x[: n * frame].reshape(n, frame) * np.hanning(frame), axis=1)) ** 2
    bands = np.array_split(spec[:, 1:], 8, axis=1)
    return np.log10(np.stack([b.sum(axis=1) for b in bands], axis=1) + 1e-8)


@pytest.mark.parametrize("ext,fmt,subtype", SPEECH_FORMATS)
def test_espeak_speech_in_every_format(espeak_wav, make, ext, fmt, subtype):
    ref = load_audio(espeak_wav).samples  # 16 kHz: a rate every codec accepts (opus included)
    p = make.write(f"speech_{subtype}.{ext}", ref, TARGET_SR, format=fmt, subtype=subtype)
    a = load_audio(p)
    assert a.facts.codec == subtype and a.facts.original_rate == TARGET_SR
    if subtype in ("VORBIS", "OPUS", "MPEG_LAYER_III"):
        assert a.facts.lossy
        assert a.facts.duration_s == pytest.approx(len(ref) / TARGET_SR, abs=0.1)
        # codecs delay the signal a little: align on the cross-correlation peak, then compare envelopes
        n = min(len(ref), len(a.samples))
        lag = int(np.argmax(np.correlate(a.samples[:n], ref[:n][2000:6000], mode="valid"))) - 2000
        y = a.samples[max(0, lag):][: n - abs(lag)]
        r = ref[: len(y)]
        e1, e2 = band_energies(r), band_energies(y)
        assert np.corrcoef(e1.ravel(), e2.ravel())[0, 1] > 0.9
    else:
        assert len(a.samples) == len(ref)
        tol = {"PCM_16": 1e-4, "PCM_24": 1e-6, "PCM_32": 1e-7, "FLOAT": 0.0}[subtype]
        assert np.max(np.abs(a.samples - ref)) <= tol + 1e-9


@pytest.mark.skipif(not (SHARED_DATA / "manifest.csv").is_file(), reason="../shared/data not present")
def test_shared_data_clips_decode():
    import csv

    with open(SHARED_DATA / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_fmt = {}
    for r in rows:
        by_fmt.setdefault(r["file_format"], r)
    assert by_fmt
    for fmt, r in by_fmt.items():
        a = load_audio(SHARED_DATA / r["path"])
        assert a.facts.duration_s == pytest.approx(float(r["duration_s"]), abs=0.15), fmt
        assert a.facts.original_rate == int(r["sample_rate"]), fmt


# ---------------------------------------------------------------------------- mono and resampling


def test_stereo_is_mixed_to_mono(make):
    left, right = tone(300, 1.0, amp=0.4), noise(1.0, amp=0.2, seed=1)
    p = make.write("st.wav", np.stack([left, right], axis=1), TARGET_SR, subtype="FLOAT")
    a = load_audio(p)
    assert a.facts.channels == 2
    np.testing.assert_allclose(a.samples, (left + right) / 2, atol=1e-6)


def test_multichannel_peak_is_over_all_channels(make):
    quiet, loud = tone(200, 0.5, amp=0.1), tone(200, 0.5, amp=0.8)
    p = make.write("st.wav", np.stack([quiet, -loud], axis=1), TARGET_SR, subtype="FLOAT")
    f = load_audio(p).facts
    assert f.peak_dbfs == pytest.approx(20 * np.log10(0.8), abs=0.01)


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 44100, 48000])
def test_resampling_keeps_a_1khz_tone_at_1khz(make, sr):
    p = make.write(f"t{sr}.wav", tone(1000, 2.0, sr, amp=0.5), sr, subtype="PCM_16")
    a = load_audio(p)
    assert a.facts.original_rate == sr
    assert abs(len(a.samples) - round(2.0 * TARGET_SR)) <= 1
    assert dominant_hz(a.samples) == pytest.approx(1000.0, abs=1.0)
    # the level survives resampling (away from the edges)
    mid = a.samples[4000:-4000]
    assert np.sqrt(np.mean(mid ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_content_above_8k_is_removed_when_downsampling(make):
    x = tone(1000, 1.0, 44100, amp=0.3) + tone(12000, 1.0, 44100, amp=0.3)
    a = load_audio(make.write("hi.wav", x, 44100, subtype="FLOAT"))
    spec = np.abs(np.fft.rfft(a.samples))
    freqs = np.fft.rfftfreq(len(a.samples), 1 / TARGET_SR)
    near = lambda f: spec[np.abs(freqs - f) < 20].max()  # noqa: E731
    assert near(1000) > 100 * max(near(4000), near(8000 - 20))  # no alias of 12 kHz (at 4 kHz)


@pytest.mark.parametrize("sr", [44100, 8000, 16000])
def test_streaming_small_blocks_equals_whole_file(make, sr):
    x = speechlike(3.3, sr, seed=7)
    p = make.write(f"s{sr}.wav", x, sr, subtype="FLOAT")
    with AudioReader(p) as r:
        whole = np.concatenate(list(r.blocks(block_s=60.0)))
    with AudioReader(p) as r:
        parts = list(r.blocks(block_s=0.07))
        facts_small = r.facts
    small = np.concatenate(parts)
    assert len(parts) > 10
    assert len(small) == len(whole)
    assert np.max(np.abs(small - whole)) < 1e-4
    # and both equal a one-shot resample of the whole signal
    ref = AF.resample(torch.from_numpy(x), sr, TARGET_SR).numpy()
    assert abs(len(ref) - len(whole)) <= 1
    n = min(len(ref), len(whole))
    assert np.max(np.abs(ref[:n] - whole[:n])) < 1e-4
    assert facts_small.duration_s == pytest.approx(len(whole) / TARGET_SR)


# ---------------------------------------------------------------------------- facts


def test_facts_peak_clipping_silence_dc(make):
    sr = TARGET_SR
    x = np.concatenate([tone(440, 2.0, sr, amp=0.25), np.zeros(2 * sr, np.float32)])
    f = load_audio(make.write("half_silent.wav", x, sr, subtype="FLOAT")).facts
    assert f.peak_dbfs == pytest.approx(20 * np.log10(0.25), abs=0.01)
    assert f.clipped_fraction == 0
    assert f.silence_ratio == pytest.approx(0.5, abs=0.02)
    assert f.duration_s == pytest.approx(4.0)
    assert not any("Mostly silence" in w for w in f.warnings())

    y = tone(440, 1.0, sr, amp=0.5)
    y[::100] = 1.0  # 1 % of the samples at full scale
    f = load_audio(make.write("clipped.wav", y, sr, subtype="FLOAT")).facts
    assert f.clipped_fraction == pytest.approx(0.01, abs=1e-3)
    assert f.peak_dbfs == pytest.approx(0.0, abs=1e-3)
    assert any("Clipping" in w for w in f.warnings())

    z = np.concatenate([tone(440, 0.5, sr, amp=0.3), np.zeros(int(4.5 * sr), np.float32)])
    f = load_audio(make.write("mostly_silent.wav", z, sr, subtype="FLOAT")).facts
    assert f.silence_ratio == pytest.approx(0.9, abs=0.02)
    assert any("Mostly silence" in w for w in f.warnings())

    d = tone(440, 1.0, sr, amp=0.2) + 0.1
    f = load_audio(make.write("dc.wav", d, sr, subtype="FLOAT")).facts
    assert f.dc_offset == pytest.approx(0.1, abs=2e-3)


def test_quiet_but_not_silent_is_not_silence(make):
    x = noise(2.0, amp=0.003, seed=2)  # about -50 dBFS RMS everywhere: consistent, low level
    f = load_audio(make.write("quiet.wav", x, TARGET_SR, subtype="FLOAT")).facts
    assert f.silence_ratio < 1.0
    assert f.peak_dbfs < -30


def test_low_rate_and_short_warnings(make):
    f = load_audio(make.write("nb.wav", tone(300, 1.0, 8000), 8000)).facts
    ws = " ".join(f.warnings(window_s=2.5))
    assert "Low sample rate (8000 Hz)" in ws and "Shorter" in ws


def test_nonfinite_samples_are_replaced(make):
    x = tone(440, 1.0, amp=0.3)
    x[100:110] = np.nan
    x[200] = np.inf
    a = load_audio(make.write("nan.wav", x, TARGET_SR, subtype="FLOAT"))
    assert np.all(np.isfinite(a.samples))
    assert a.facts.nonfinite_samples == 11


# ---------------------------------------------------------------------------- errors and m4a


@pytest.mark.parametrize("kind", range(4))
def test_broken_files_raise_audio_error(make, kind):
    p = make.broken(f"bad{kind}.wav", kind)
    with pytest.raises(AudioError) as e:
        load_audio(p)
    assert p.name in str(e.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(AudioError, match="cannot open"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="folder"):
        load_audio(tmp_path)
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"", name="x.wav")


def test_truncated_wav_keeps_what_decoded(make):
    p = make.write("full.wav", tone(440, 2.0, amp=0.3), TARGET_SR, subtype="PCM_16")
    data = p.read_bytes()
    cut = p.with_name("cut.wav")
    cut.write_bytes(data[: len(data) // 2])
    a = load_audio(cut)
    assert 0.8 < a.facts.duration_s <= 1.01


def _ffmpeg_ok() -> bool:
    if not shutil.which("ffmpeg"):
        return False
    try:
        from torchcodec.decoders import AudioDecoder  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _ffmpeg_ok(), reason="ffmpeg + torchcodec not available")
def test_m4a_through_torchcodec(make):
    src = make.write("src.wav", tone(1000, 2.0, 44100, amp=0.4), 44100)
    m4a = src.with_suffix(".m4a")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:a", "aac", "-b:a", "96k", str(m4a)],
                   check=True)
    a = load_audio(m4a)
    assert a.facts.decoder == "torchcodec" and a.facts.lossy
    assert a.facts.original_rate == 44100
    assert a.facts.duration_s == pytest.approx(2.0, abs=0.1)
    assert dominant_hz(a.samples) == pytest.approx(1000, abs=3)
    # from bytes as well (uploads)
    b = load_audio(m4a.read_bytes(), name="up.m4a")
    assert b.facts.duration_s == pytest.approx(a.facts.duration_s, abs=1e-3)


def test_m4a_without_ffmpeg_says_what_to_install(make, monkeypatch):
    p = make.folder / "x.m4a"
    p.write_bytes(b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A mp42isom" + b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # import fails as if not installed
    with pytest.raises(AudioError) as e:
        load_audio(p)
    msg = str(e.value)
    assert "x.m4a" in msg and "ffmpeg" in msg and "install" in msg


# ---------------------------------------------------------------------------- narrow-band content


def _lowpassed(x: np.ndarray, sr: int, cutoff_hz: float) -> np.ndarray:
    """Resample down to 2 x cutoff and back: what a telephone chain then an upsampling export does."""
    low = AF.resample(torch.from_numpy(x), sr, int(2 * cutoff_hz))
    return AF.resample(low, int(2 * cutoff_hz), sr).numpy().astype(np.float32)


def test_narrow_band_content_at_a_full_rate_is_measured_and_flagged(make):
    """A 44.1 kHz file whose content stops at 4 kHz (an upsampled phone call) has no low-rate header,
    but the detectors see it as an 8 kHz file: the facts measure where the content stops and warn.
    The same speech-like signal at full band is not flagged."""
    sr = 44_100
    full = speechlike(4.0, sr=sr, seed=3)
    wide = load_audio(make.write("wide.wav", full, sr, subtype="FLOAT"))
    narrow = load_audio(make.write("narrow.wav", _lowpassed(full, sr, 4000), sr, subtype="FLOAT"))
    assert wide.facts.bandwidth_hz > 7000 and narrow.facts.bandwidth_hz < 5000
    assert narrow.facts.original_rate == sr and wide.facts.original_rate == sr
    assert [w for w in narrow.facts.warnings() if w.startswith("Narrow band")]
    assert not [w for w in wide.facts.warnings() if w.startswith("Narrow band")]
    assert "bandwidth_hz" in narrow.facts.as_dict()


def test_narrow_band_is_not_flagged_twice_for_a_low_rate_file(make):
    """An 8 kHz file already gets the low-rate warning, which says the same thing."""
    a = load_audio(make.write("tel.wav", speechlike(3.0, sr=8000), 8000))
    ws = a.facts.warnings()
    assert any(w.startswith("Low sample rate") for w in ws) and not any(w.startswith("Narrow band") for w in ws)
    assert 3000 < a.facts.bandwidth_hz < 5000


def test_silence_has_no_bandwidth_and_no_narrow_band_warning(make):
    a = load_audio(make.write("zero.wav", np.zeros(TARGET_SR, np.float32), TARGET_SR))
    assert a.facts.bandwidth_hz == 0.0 and not any(w.startswith("Narrow band") for w in a.facts.warnings())


@pytest.mark.skipif(not (SHARED_DATA / "manifest.csv").is_file(), reason="../shared/data not present")
def test_narrow_band_separates_the_pools_8k_digits_from_its_full_band_clips(make):
    """Real recordings: a few full-band clips of each source stay unflagged; the 8 kHz digits,
    re-saved at 44.1 kHz (so no low-rate header), are flagged."""
    import csv

    with open(SHARED_DATA / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    picked = {}
    for r in rows:
        picked.setdefault((r["source_repo"], r["label"]), []).append(r)
    for rs in picked.values():
        for r in rs[:3]:
            a = load_audio(SHARED_DATA / r["path"])
            if int(r["sample_rate"]) >= 16_000:
                assert a.facts.bandwidth_hz > 6500 and not any("Narrow band" in w for w in a.facts.warnings()), r
            else:   # the digits: upsample and save, as an export would
                up = AF.resample(torch.from_numpy(a.samples), TARGET_SR, 44_100).numpy()
                b = load_audio(make.write(f"up_{Path(r['path']).stem}.wav", up, 44_100, subtype="FLOAT"))
                assert b.facts.original_rate == 44_100 and b.facts.bandwidth_hz < 5000
                assert any(w.startswith("Narrow band") for w in b.facts.warnings()), r
