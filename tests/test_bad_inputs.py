"""Whatever an analyst is sent: every input gives a correct score or ONE clear AudioError.

Each hostile or odd input goes through the real paths (core.audio, Detector.score,
Detector.score_many and `python -m core score --json`). A bad file must come back as the
project's own error type, on one line, naming the file and the cause; a file that can be
scored must give the same score as a clean reference of the same sound.
"""

from __future__ import annotations

import builtins
import json
import os
import struct
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from conftest import FAST_MODELS, python_env, speechlike
from core.audio import TARGET_SR, load_audio
from core.batch import scan_audio
from core.errors import AudioError, ConfigError
from core.inference import Detector, _WindowCutter

SR = TARGET_SR


def signal_at(sr: int, seconds: float = 3.0) -> np.ndarray:
    """Partials below 4 kHz with a syllable envelope: the same sound at any rate >= 8 kHz."""
    t = np.arange(int(round(sr * seconds))) / sr
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)
    x = sum(a * np.sin(2 * np.pi * f * t + ph) for a, f, ph in
            ((0.3, 220, 0), (0.2, 660, 1), (0.1, 1500, 2), (0.05, 3100, 0.5)))
    return (env * x).astype(np.float32)


def p_fakes(res) -> dict[str, float]:
    return {k: v.p_fake for k, v in res.models.items()}


def assert_close_scores(a, b, tol):
    assert a.error is None and b.error is None
    for name in a.models:
        assert a.models[name].error is None, a.models[name].error
        assert a.models[name].p_fake == pytest.approx(b.models[name].p_fake, abs=tol), name


def wav_header(data_bytes: int, rate=SR, channels=1, bits=16, fmt_tag=1, riff_size=0xFFFFFFF0) -> bytes:
    """A canonical 44-byte RIFF/WAVE header, with whatever sizes we want it to claim."""
    align = channels * bits // 8
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, fmt_tag, channels, rate, (rate * align) & 0xFFFFFFFF,
                      align & 0xFFFF, bits)
    return b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + fmt + b"data" + struct.pack("<I", data_bytes)


# ============================================================================ files that must be refused


def _empty(make):
    p = make.folder / "empty.wav"
    p.write_bytes(b"")
    return p


def _zero_samples(make):
    return make.write("zero samples.wav", np.zeros(0, np.float32), SR)


def _one_sample(make):
    return make.write("one_sample.wav", np.array([0.3], np.float32), SR)


def _too_short(make):  # 50 ms: shorter than the seed front end's STFT can frame
    return make.write("fifty_ms.wav", speechlike(0.05), SR)


def _silence(make):
    return make.write("silence.wav", np.zeros(2 * SR, np.float32), SR)


def _all_nan(make):
    return make.write("all_nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")


def _text(make):
    p = make.folder / "notes.wav"
    p.write_text("Dear analyst, please find the recording attached.\n" * 40)
    return p


def _random_bytes(make):
    p = make.folder / "random.wav"
    p.write_bytes(np.random.default_rng(3).integers(0, 256, 8000, dtype=np.uint8).tobytes())
    return p


def _huge_header_no_data(make):
    p = make.folder / "claims_billions.wav"
    p.write_bytes(wav_header(0xFFFFFFF0))
    return p


def _random_float_data(make):  # a float wav whose "samples" are random bytes: values up to 1e38
    p = make.folder / "garbage_float.wav"
    p.write_bytes(wav_header(0xFFFFFFF0, bits=32, fmt_tag=3)
                  + np.random.default_rng(5).integers(0, 256, 64000, dtype=np.uint8).tobytes())
    return p


def _mp3_stub(make):  # the first 300 bytes of an mp3: a header and no decodable frame
    full = make.write("full.mp3", signal_at(SR), SR, format="MP3")
    p = make.folder / "stub.mp3"
    p.write_bytes(full.read_bytes()[:300])
    return p


def _folder(make):
    p = make.folder / "a_folder.wav"
    p.mkdir()
    return p


def _fifo(make):  # would block a naive open() forever
    p = make.folder / "pipe.wav"
    os.mkfifo(p)
    return p


def _dangling_symlink(make):
    p = make.folder / "dangling.wav"
    p.symlink_to(make.folder / "gone.wav")
    return p


def _missing(make):
    return make.folder / "never_written.wav"


REFUSED = [
    (_empty, "empty"),
    (_zero_samples, "no audio samples"),
    (_one_sample, "too short"),
    (_too_short, "too short"),
    (_silence, "digital silence"),
    (_all_nan, "digital silence.*NaN"),
    (_text, "not a supported audio file"),
    (_random_bytes, "not a supported audio file"),
    (_huge_header_no_data, "no audio samples"),
    (_random_float_data, "far beyond full scale"),
    (_mp3_stub, "cannot decode"),
    (_folder, "is a folder"),
    (_fifo, "not a regular file"),
    (_dangling_symlink, "cannot open"),
    (_missing, "cannot open"),
]


def assert_one_clear_error(msg: str, path) -> None:
    assert msg and "\n" not in msg, msg
    assert str(path) in msg, f"the message must name the file: {msg}"
    assert "Traceback" not in msg


@pytest.mark.parametrize("maker,cause", REFUSED, ids=[m.__name__.strip("_") for m, _ in REFUSED])
def test_bad_file_is_one_clear_audio_error(det, make, maker, cause):
    path = maker(make)
    with pytest.raises(AudioError, match=cause) as exc:
        det.score(path)
    assert_one_clear_error(str(exc.value), path)
    # the same file among good ones: an error result, never an exception, the others still score
    good = make.write("good.wav", speechlike(3.0), SR)
    out = list(det.score_many([(str(good), good), (str(path), path), (str(good) + "#2", good)]))
    assert [r.file for r in out] == [str(good), str(path), str(good) + "#2"]
    assert out[1].error and out[1].ensemble is None and not out[1].models
    assert_one_clear_error(out[1].error, path)
    assert out[0].error is None and out[2].error is None
    assert p_fakes(out[0]) == p_fakes(out[2])


@pytest.mark.parametrize("payload,cause", [(b"", "empty"), (b"hello, not audio" * 20, "not a supported"),
                                           (wav_header(0xFFFFFFF0), "no audio samples")])
def test_bad_upload_bytes_name_the_upload(det, payload, cause):
    with pytest.raises(AudioError, match=cause) as exc:
        det.score(payload, name="upload: call.wav")
    assert_one_clear_error(str(exc.value), "upload: call.wav")


def test_silence_is_decoded_but_not_scored(make, det):
    """Decision: digital silence decodes (facts say so) but is refused by the detector, everywhere."""
    p = _silence(make)
    a = load_audio(p)
    assert a.facts.peak_dbfs == float("-inf") and a.facts.silence_ratio == 1.0
    assert any("silence" in w for w in a.facts.warnings())
    with pytest.raises(AudioError, match="digital silence"):
        det.score(p)
    with pytest.raises(AudioError, match="digital silence"):
        det.score_samples(a.samples, a.facts)


def test_all_nan_file_counts_every_replaced_sample(make):
    a = load_audio(_all_nan(make))
    assert a.facts.nonfinite_samples == SR
    assert np.all(a.samples == 0)


# ============================================================================ files that must score correctly


@pytest.fixture(scope="module")
def reference(det, tmp_path_factory):
    """The sound as a clean 16 kHz float wav, and its scores."""
    p = tmp_path_factory.mktemp("ref") / "reference.wav"
    sf.write(p, signal_at(SR), SR, subtype="FLOAT")
    return det.score(p)


@pytest.mark.parametrize("rate", [8000, 192000])
def test_extreme_rates_give_the_reference_score(det, make, reference, rate):
    p = make.write(f"at_{rate}.wav", signal_at(rate), rate, subtype="FLOAT")
    res = det.score(p)
    assert res.facts.original_rate == rate
    assert res.facts.duration_s == pytest.approx(3.0, abs=1e-3)
    assert_close_scores(res, reference, tol=0.01)
    assert any("Low sample rate" in w for w in res.warnings()) == (rate < SR)


@pytest.mark.parametrize("kind", ["6 channels", "PCM_24", "FLOAT", "PCM_32", "PCM_16"])
def test_channels_and_bit_depths_give_the_reference_score(det, make, reference, kind):
    x = signal_at(SR)
    if kind == "6 channels":
        p = make.write("six.wav", np.stack([x] * 6, axis=1), SR)
    else:
        p = make.write(f"{kind}.wav", x, SR, subtype=kind)
    res = det.score(p)
    assert res.facts.channels == (6 if kind == "6 channels" else 1)
    assert res.facts.codec == ("PCM_16" if kind == "6 channels" else kind)
    assert_close_scores(res, reference, tol=2e-3)


def test_nan_and_inf_samples_are_zeroed_counted_and_scored(det, make):
    x = signal_at(SR)
    bad = x.copy()
    bad[1000:1100] = np.nan
    bad[5000] = np.inf
    bad[9000:9003] = -np.inf
    res = det.score(make.write("nan_inf.wav", bad, SR, subtype="FLOAT"))
    assert res.facts.nonfinite_samples == 104
    assert any("104 NaN/inf samples" in w for w in res.warnings())
    zeroed = np.where(np.isfinite(bad), bad, 0).astype(np.float32)
    clean = det.score(make.write("zeroed.wav", zeroed, SR, subtype="FLOAT"))
    assert_close_scores(res, clean, tol=1e-6)
    assert all(np.isfinite(w.p_fake) for m in res.models.values() for w in m.windows)


def test_dc_offset_is_measured_warned_and_scored(det, make):
    x = 0.3 * signal_at(SR) + 0.4
    res = det.score(make.write("dc.wav", x, SR, subtype="FLOAT"))
    assert res.facts.dc_offset == pytest.approx(float(x.mean()), abs=1e-4)
    assert any("DC offset" in w for w in res.warnings())
    assert all(0 <= m.p_fake <= 1 for m in res.models.values())


def test_clipped_audio_is_measured_warned_and_scored(det, make):
    x = np.clip(4 * signal_at(SR), -1, 1)
    res = det.score(make.write("clipped.wav", x, SR, subtype="FLOAT"))
    expected = float((np.abs(x) >= 0.999).mean())
    assert expected > 0.1
    assert res.facts.clipped_fraction == pytest.approx(expected, abs=1e-6)
    assert any("Clipping" in w for w in res.warnings())
    assert all(0 <= m.p_fake <= 1 for m in res.models.values())


def test_truncated_mp3_scores_what_decodes(det, make):
    full = make.write("whole.mp3", signal_at(SR, 6.0), SR, format="MP3")
    data = full.read_bytes()
    half = make.folder / "half.mp3"
    half.write_bytes(data[: len(data) // 2])
    whole, cut = det.score(full), det.score(half)
    assert 1.0 < cut.facts.duration_s < whole.facts.duration_s - 1.0
    assert cut.facts.lossy and cut.ensemble.p_fake is not None
    assert cut.facts.truncated and not whole.facts.truncated
    assert any("cut off or damaged" in w for w in cut.warnings()) and not any("cut off" in w for w in whole.warnings())
    # the timeline covers what decoded, no more
    assert max(w.end for w in cut.models["lstm"].windows) == pytest.approx(cut.facts.duration_s, abs=1e-3)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_cut_off_files_are_scored_and_flagged(det, make, fmt):
    """A download cut in half: what decoded is scored, and the warning says the file is incomplete
    (libsndfile itself reports a cut WAV as a shorter whole one; the RIFF data size gives it away)."""
    full = make.write(f"whole.{fmt.lower()}", signal_at(SR, 6.0), SR, format=fmt)
    data = full.read_bytes()
    cut = make.folder / f"cut.{fmt.lower()}"
    cut.write_bytes(data[: len(data) // 2])
    whole = det.score(full)
    assert not whole.facts.truncated and whole.facts.header_s == pytest.approx(6.0, abs=1e-3)
    for res in (det.score(cut), det.score(cut.read_bytes(), name="cut upload")):
        assert res.ensemble.p_fake is not None and res.facts.duration_s < 4.0
        assert res.facts.truncated and res.facts.header_s == pytest.approx(6.0, abs=0.01)
        warn = [w for w in res.warnings() if "cut off or damaged" in w]
        assert len(warn) == 1 and "promises 6.0 s" in warn[0], res.warnings()


def test_header_claiming_billions_of_frames_scores_the_real_data(det, make, reference):
    pcm = (signal_at(SR) * 32767).astype("<i2").tobytes()
    p = make.folder / "lying_header.wav"
    p.write_bytes(wav_header(0xFFFFFFF0) + pcm)
    res = det.score(p)
    assert res.facts.duration_s == pytest.approx(3.0, abs=1e-3)
    assert_close_scores(res, reference, tol=2e-3)


def test_header_claiming_many_channels_decodes_in_bounded_blocks(make, monkeypatch):
    """1024 channels at 768 kHz: a naive 30 s block would be a 94 GB allocation."""
    import core.audio as audio

    p = make.folder / "many_channels.wav"
    p.write_bytes(wav_header(0xFFFFFFF0, rate=768_000, channels=1024, bits=16) + b"\x01\x02" * 1024 * 200)
    asked = []
    real_read = sf.SoundFile.read

    def spy(self, frames=-1, *a, **k):
        asked.append(frames * self.channels)
        return real_read(self, frames, *a, **k)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    a = load_audio(p)
    assert a.facts.channels == 1024 and len(a.samples) > 0
    assert asked and max(asked) <= audio.MAX_BLOCK_SAMPLES


SHELL_NAMES = ["with spaces in it.wav", "ünïcødé 声音 запись.wav", "$(touch pwned);`touch pwned2`'\"&|.wav",
               "-starts-with-dash.wav"]


@pytest.mark.parametrize("fname", SHELL_NAMES)
def test_odd_file_names_score_and_keep_their_name(det, make, fname):
    p = make.write(fname, speechlike(3.0), SR)
    res = det.score(p)
    assert res.file == str(p) and res.facts.name == str(p)
    assert res.ensemble.p_fake is not None
    # a bad file with such a name goes through the ffmpeg fallback and names itself in the error
    bad = make.folder / ("bad " + fname)
    bad.write_bytes(b"not audio " * 50)
    with pytest.raises(AudioError) as exc:
        det.score(bad)
    assert_one_clear_error(str(exc.value), bad)
    assert not (make.folder / "pwned").exists() and not (make.folder / "pwned2").exists()


# ============================================================================ folders


def test_folder_with_symlink_loop_fifo_dangling_link_and_unreadable_file(det, make, monkeypatch):
    root = make.folder / "incoming"
    AudioMakerLike(root).write("a/good.wav", speechlike(3.0))
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)       # a -> root -> a -> ...
    (root / "a" / "b").mkdir()
    (root / "a" / "b" / "up").symlink_to(root / "a", target_is_directory=True)
    os.mkfifo(root / "pipe.wav")
    (root / "dangling.wav").symlink_to(root / "nowhere.wav")
    locked = AudioMakerLike(root).write("locked.wav", speechlike(3.0, seed=1))
    locked.chmod(0)
    files = scan_audio([root])          # terminates despite the loops
    names = sorted(os.path.relpath(f, root) for f in files)
    assert names == ["a/good.wav", "dangling.wav", "locked.wav", "pipe.wav"]

    readable = os.access(locked, os.R_OK)   # root reads a 0o000 file: then simulate the denial
    if readable:
        real_open = builtins.open

        def denying_open(file, *a, **k):
            if os.fspath(file) == str(locked):
                raise PermissionError(13, "Permission denied", str(locked))
            return real_open(file, *a, **k)

        monkeypatch.setattr(builtins, "open", denying_open)
    out = {os.path.relpath(r.file, root): r for r in det.score_many([(f, f) for f in files])}
    assert out["a/good.wav"].error is None and out["a/good.wav"].ensemble.p_fake is not None
    assert "not a regular file" in out["pipe.wav"].error
    assert "cannot open" in out["dangling.wav"].error
    assert "Permission denied" in out["locked.wav"].error and "cannot read" in out["locked.wav"].error
    for name in ("pipe.wav", "dangling.wav", "locked.wav"):
        assert_one_clear_error(out[name].error, root / name)
    locked.chmod(0o644)


def test_unreadable_subfolder_is_skipped_not_fatal(make, monkeypatch):
    root = make.folder / "tree"
    AudioMakerLike(root).write("ok/x.wav", speechlike(1.0))
    AudioMakerLike(root).write("secret/y.wav", speechlike(1.0))
    secret = root / "secret"
    secret.chmod(0)
    try:
        if os.access(secret, os.R_OK | os.X_OK):     # running as root: simulate the denial
            real_scandir = os.scandir

            def denying_scandir(path="."):
                if os.fspath(path) == str(secret):
                    raise PermissionError(13, "Permission denied", str(secret))
                return real_scandir(path)

            monkeypatch.setattr(os, "scandir", denying_scandir)
        files = scan_audio([root])
    finally:
        secret.chmod(0o755)
    assert [os.path.relpath(f, root) for f in files] == ["ok/x.wav"]


class AudioMakerLike:
    def __init__(self, folder):
        self.folder = folder

    def write(self, rel, x, sr=SR):
        p = self.folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, x, sr)
        return p


# ============================================================================ options that would crash


def test_window_too_short_for_the_front_end_is_a_config_error(loaded):
    with pytest.raises(ConfigError, match="too short"):
        Detector(loaded, window_s=0.01)


def test_model_nan_on_one_file_does_not_fail_the_others_in_its_batch(loaded, make, monkeypatch):
    """Windows of different files share a batch: a NaN for one file stays that file's problem."""
    lstm = next(m for m in loaded.models if m.name == "lstm")
    real_forward = lstm.module.forward

    def nan_for_loud(x):   # NaN for windows of the loud file only
        out = real_forward(x)
        loud = x.flatten(1).abs().amax(1) > 1e3
        return torch_where(loud, out)

    def torch_where(mask, out):
        import torch

        m = mask.view(-1, *([1] * (out.dim() - 1)))
        return torch.where(m, torch.full_like(out, float("nan")), out)

    monkeypatch.setattr(lstm.module, "forward", nan_for_loud)
    det = Detector(loaded, batch_size=64)
    quiet = make.write("quiet.wav", 0.01 * speechlike(3.0), SR, subtype="FLOAT")
    loud = make.write("loud.wav", 300 * speechlike(3.0, seed=2), SR, subtype="FLOAT")
    out = list(det.score_many([("quiet", quiet), ("loud", loud), ("quiet2", quiet)]))
    assert out[1].models["lstm"].error and "non-finite" in out[1].models["lstm"].error
    assert out[1].models["gnn"].p_fake is not None and out[1].ensemble.p_fake is not None
    for r in (out[0], out[2]):
        assert r.models["lstm"].error is None and r.models["lstm"].p_fake is not None


def test_model_raising_on_one_file_does_not_fail_the_others_in_its_batch(loaded, make, monkeypatch):
    darts = next(m for m in loaded.models if m.name == "darts")
    real_forward = darts.module.forward

    def raise_for_loud(x):
        if (x.flatten(1).abs().amax(1) > 1e3).any():
            raise RuntimeError("simulated failure on loud input")
        return real_forward(x)

    monkeypatch.setattr(darts.module, "forward", raise_for_loud)
    det = Detector(loaded, batch_size=64)
    quiet = make.write("quiet.wav", 0.01 * speechlike(3.0), SR, subtype="FLOAT")
    loud = make.write("loud.wav", 300 * speechlike(3.0, seed=2), SR, subtype="FLOAT")
    out = list(det.score_many([("quiet", quiet), ("loud", loud), ("quiet2", quiet)]))
    assert "simulated failure" in out[1].models["darts"].error
    for r in (out[0], out[2]):
        assert r.models["darts"].error is None and r.models["darts"].p_fake is not None
    assert p_fakes(out[0]) == p_fakes(out[2])


# ============================================================================ long recordings: bounded memory


def test_ten_minutes_stream_with_bounded_buffers(loaded, make, monkeypatch):
    """A 10-minute file is never held whole: blocks, the window cutter's buffer and the numpy peak
    stay bounded by the window batch, the same for 3 and 10 minutes (not a timing test)."""
    det = Detector(loaded, hop_fraction=1.0, batch_size=16)
    biggest = {"block": 0, "buf": 0}
    real_push = _WindowCutter.push

    def spy_push(self, block):
        biggest["block"] = max(biggest["block"], len(block))
        yield from real_push(self, block)
        biggest["buf"] = max(biggest["buf"], len(self.buf))

    monkeypatch.setattr(_WindowCutter, "push", spy_push)
    rng = np.random.default_rng(0)
    peaks = {}
    for minutes in (3, 10):
        p = make.folder / f"long_{minutes}min.wav"
        with sf.SoundFile(p, "w", SR, 1, "PCM_16") as f:
            for i in range(minutes * 6):
                t = np.arange(10 * SR) / SR
                f.write((0.3 * np.sin(2 * np.pi * (150 + 10 * i) * t)
                         + 0.05 * rng.standard_normal(len(t))).astype(np.float32))
        tracemalloc.start()
        try:
            res = det.score(p)
            peaks[minutes] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert res.facts.duration_s == pytest.approx(minutes * 60, abs=1e-3)
        assert max(w.end for w in res.models["lstm"].windows) == pytest.approx(minutes * 60, abs=1e-3)
    whole_file_bytes = 10 * 60 * SR * 4          # the decoded 10 minutes as float32
    longest_window = max(det.window_samples(fe) for fe in det.front_ends)
    assert biggest["block"] <= 30 * SR + SR       # decoded in ~30 s blocks
    assert biggest["buf"] <= longest_window + biggest["block"]
    assert peaks[10] < whole_file_bytes * 0.8
    assert peaks[10] < peaks[3] * 1.25 + (1 << 20), peaks   # does not grow with the duration


# ============================================================================ the CLI


def run_cli(args, cwd, weights):
    cmd = [sys.executable, "-m", "core", "score", *args, "--set", "seed", "--models", FAST_MODELS,
           "--weights-dir", str(weights), "--json", "--no-progress"]
    return subprocess.run(cmd, cwd=cwd, env=python_env(), capture_output=True, text=True, timeout=300)


def test_cli_json_has_one_entry_per_file_and_clear_errors(make, fast_weights):
    good = make.write("$(touch pwned) good 声音.wav", speechlike(3.0), SR)
    nan = make.write("nan.wav", np.where(np.arange(3 * SR) % 1000 == 0, np.nan, speechlike(3.0)).astype(np.float32),
                     SR, subtype="FLOAT")
    bad = [_empty(make), _text(make), _silence(make), _one_sample(make), _fifo(make), _huge_header_no_data(make)]
    files = [good, *bad, nan]
    r = run_cli([str(f) for f in files], make.folder, fast_weights)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [d["file"] for d in doc] == [str(f) for f in files]
    assert doc[0]["error"] is None and doc[0]["ensemble"]["p_fake"] is not None
    assert doc[-1]["error"] is None and doc[-1]["audio"]["nonfinite_samples"] == 48
    assert any("NaN/inf" in w for w in doc[-1]["warnings"])
    for d, f in zip(doc[1:-1], bad):
        assert d["models"] == {} and d["ensemble"] is None
        assert_one_clear_error(d["error"], f)
    assert f"{len(bad)} of {len(files)} files could not be scored" in r.stderr
    assert not (make.folder / "pwned").exists()


def test_cli_exits_non_zero_when_nothing_scored(make, fast_weights):
    files = [_empty(make), _random_bytes(make)]
    r = run_cli([str(f) for f in files], make.folder, fast_weights)
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert all(d["error"] for d in doc) and len(doc) == 2


# ============================================================================ found by the fuzz campaign


@pytest.mark.parametrize("rate", [16001, 44101, 22254, 1001])
def test_odd_header_rates_resample_with_a_small_kernel(make, monkeypatch, rate):
    """A header rate sharing no factor with 16 kHz (16001 Hz came from a flipped byte) once made
    torchaudio build a 16000 x 16001 sinc kernel (1 GB, minutes). Now a close small ratio is used:
    the kernel stays small and the tone stays at its frequency."""
    import core.audio as audio

    calls = []
    real = audio.AF.resample

    def spy(x, orig, new, *a, **k):
        calls.append((orig, new))
        return real(x, orig, new, *a, **k)

    monkeypatch.setattr(audio.AF, "resample", spy)
    f0 = 300.0
    n = int(rate * 2.0)
    x = (0.5 * np.sin(2 * np.pi * f0 * np.arange(n) / rate)).astype(np.float32)
    a = load_audio(make.write(f"odd_{rate}.wav", x, rate, subtype="FLOAT"))
    assert a.facts.original_rate == rate
    assert all(o * w <= audio.MAX_RESAMPLE_UNITS for o, w in calls)
    assert bool(calls) == (rate != 16001)     # 16001 Hz is read as 16 kHz (a 60 ppm timing error)
    assert a.facts.duration_s == pytest.approx(n / rate, rel=1e-3)
    spec = np.abs(np.fft.rfft(a.samples * np.hanning(len(a.samples))))
    peak_hz = np.argmax(spec) * SR / len(a.samples)
    assert peak_hz == pytest.approx(f0, abs=1.0)


def _m4a(path, seconds, faststart=True):
    import shutil

    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    cmd = [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate=22050",
           "-c:a", "aac", "-b:a", "32k", *(["-movflags", "+faststart"] if faststart else []), str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return path


def test_m4a_streams_through_ffmpeg_in_chunks(make, monkeypatch):
    """m4a/aac go through torchcodec: decoded chunk by chunk, never the whole file at once."""
    from torchcodec.decoders import AudioDecoder

    p = _m4a(make.folder / "long call.m4a", 75)
    ranges = []
    real_range = AudioDecoder.get_samples_played_in_range

    def spy(self, start_seconds=0.0, stop_seconds=None):
        ranges.append((start_seconds, stop_seconds))
        return real_range(self, start_seconds, stop_seconds)

    def no_whole_file(self):
        raise AssertionError("the whole file was decoded at once")

    monkeypatch.setattr(AudioDecoder, "get_samples_played_in_range", spy)
    monkeypatch.setattr(AudioDecoder, "get_all_samples", no_whole_file)
    a = load_audio(p)
    assert a.facts.decoder == "torchcodec" and a.facts.codec == "aac" and a.facts.lossy
    assert a.facts.duration_s == pytest.approx(75.0, abs=0.1)
    assert len(ranges) >= 3 and all(stop is not None and stop - start <= 30.0 + 1e-9 for start, stop in ranges)
    starts = [s for s, _ in ranges]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)   # forward, each range once
    # the chunks join seamlessly: a steady 440 Hz tone, no gaps or clicks at 30 s and 60 s
    x = a.samples[SR: -SR]
    env = np.abs(x[: len(x) // 160 * 160]).reshape(-1, 160).max(axis=1)
    assert env.min() > 0.5 * np.median(env)


@pytest.mark.parametrize("faststart", [True, False])
def test_truncated_m4a_scores_what_decodes_or_is_one_clear_error(det, make, faststart):
    p = _m4a(make.folder / "whole.m4a", 12, faststart)
    data = p.read_bytes()
    cut = make.folder / f"cut_{faststart}.m4a"
    cut.write_bytes(data[: len(data) // 2])
    if faststart:  # the index is up front: everything before the cut decodes (to within 0.25 s)
        res = det.score(cut)
        assert 5.0 < res.facts.duration_s < 6.5 and res.ensemble.p_fake is not None
    else:          # the index was at the end, and is gone
        with pytest.raises(AudioError) as e:
            det.score(cut)
        assert_one_clear_error(str(e.value), cut)
