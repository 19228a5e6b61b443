"""Checkpoints are untrusted input.

* A pickle that would run code is refused, never executed: several ways of smuggling a
  call into a checkpoint, each of which would create a marker file if unpickled, through
  every way a checkpoint is loaded (direct read, a weights folder, the hub cache, the CLI).
* A checkpoint whose keys, shapes or dtypes do not fit is refused with the offending keys
  named; NaN/inf weights, a tensor instead of a dict, truncated or forged files are refused
  with an actionable message.
* A hub checkpoint can be pinned to a revision: the revision reaches huggingface_hub (cache
  lookup and download), a pre-filled cache snapshot of that revision is what loads, and a
  pinned revision that is not available never silently falls back to another one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import soundfile as sf
import torch

from conftest import speechlike
from core.__main__ import main as cli_main
from core.errors import WeightsError
from core.loading import load_set
from core.models.registry import get_set
from core.weights import ENV_HUB_REVISION, load_weights, read_state_dict, resolve_checkpoint
from test_models_seed import fill_hub_cache

SEED = get_set("seed")
LSTM = SEED.spec("lstm")
HUB_REPO = SEED.hub_repo


def lstm_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in LSTM.build({}).state_dict().items()}


# ============================================================================ code-running pickles


class RunsShell:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class RunsExec:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _whole_object(marker, path):
    torch.save(RunsShell(marker), path)


def _value_in_state_dict(marker, path):
    torch.save({**lstm_sd(), "fc.extra": RunsExec(marker)}, path)


def _inside_state_dict_wrapper(marker, path):
    torch.save({"state_dict": lstm_sd(), "epoch": RunsShell(marker)}, path)


def _legacy_format(marker, path):
    torch.save({**lstm_sd(), "x": RunsShell(marker)}, path, _use_new_zipfile_serialization=False)


def _raw_pickle(marker, path):
    path.write_bytes(pickle.dumps({"fc.weight": RunsExec(marker)}, protocol=2))


def _protocol0_pickle(marker, path):
    path.write_bytes(pickle.dumps(RunsShell(marker), protocol=0))


EVIL = [_whole_object, _value_in_state_dict, _inside_state_dict_wrapper, _legacy_format, _raw_pickle,
        _protocol0_pickle]


def test_the_payloads_really_run_code(tmp_path):
    """Guard against a vacuous test: unpickled without protection, each payload fires."""
    for i, make in enumerate(EVIL):
        marker = tmp_path / f"fired_{i}"
        p = tmp_path / f"evil_{i}.pth"
        make(marker, p)
        try:
            torch.load(p, map_location="cpu", weights_only=False)
        except Exception:
            pass
        assert marker.exists(), make.__name__


@pytest.mark.parametrize("make", EVIL, ids=[m.__name__.strip("_") for m in EVIL])
def test_code_running_pickle_is_refused_everywhere(tmp_path, monkeypatch, make, capsys):
    marker = tmp_path / "MARKER"
    folder = tmp_path / "weights"
    folder.mkdir()
    evil = folder / LSTM.checkpoint
    make(marker, evil)

    # 1. direct read
    with pytest.raises(WeightsError, match="refused|cannot read") as e:
        read_state_dict(evil)
    assert str(evil) in str(e.value) and "\n" not in str(e.value)
    assert "weights_only` set to `False`" not in str(e.value)   # never advise the unsafe way
    # 2. a weights folder
    with pytest.raises(WeightsError, match="refused|cannot read"):
        load_set("seed", models="lstm", weights_dir=folder, allow_download=False)
    # 3. the hub cache
    hf = tmp_path / "hf"
    fill_hub_cache(hf, {LSTM.checkpoint: evil})
    monkeypatch.setenv("HF_HOME", str(hf))
    with pytest.raises(WeightsError, match="refused|cannot read"):
        load_set("seed", models="lstm", allow_download=False)
    # 4. the CLI: exit 2 with one line naming the file
    audio = tmp_path / "a.wav"
    sf.write(audio, speechlike(1.0), 16000)
    rc = cli_main(["score", str(audio), "--set", "seed", "--models", "lstm", "--weights-dir", str(folder),
                   "--json", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and LSTM.checkpoint in err and len(err.splitlines()) == 1
    assert not marker.exists()


def test_refusal_names_what_the_pickle_asked_for(tmp_path):
    p = tmp_path / "x.pth"
    _whole_object(tmp_path / "m", p)
    with pytest.raises(WeightsError) as e:
        read_state_dict(p)
    assert "system" in str(e.value) and "refused" in str(e.value)


def test_pickle_disguised_as_safetensors_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    p = tmp_path / "lstm.safetensors"
    p.write_bytes(pickle.dumps(RunsShell(marker)))
    with pytest.raises(WeightsError, match="cannot read"):
        read_state_dict(p)
    assert not marker.exists()


# ============================================================================ files that do not fit


def save_st(path: Path, sd: dict) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_wrong_keys_and_shapes_are_named(tmp_path, fmt):
    sd = lstm_sd()
    sd["lstm.weight_ih_l7"] = sd.pop("lstm.weight_hh_l0")         # renamed: one missing, one unexpected
    sd["fc.weight"] = torch.zeros(3, 32)                            # wrong shape
    p = tmp_path / f"bad.{fmt}"
    save_st(p, sd) if fmt == "safetensors" else torch.save(sd, p)
    with pytest.raises(WeightsError) as e:
        load_weights(LSTM.build({}), p)
    msg = str(e.value)
    assert str(p) in msg
    assert "missing keys" in msg and "lstm.weight_hh_l0" in msg
    assert "unexpected keys" in msg and "lstm.weight_ih_l7" in msg
    assert "wrong shapes" in msg and "fc.weight (3, 32) != (1, 32)" in msg


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool])
def test_non_float_dtype_is_refused_with_keys_named(tmp_path, dtype):
    sd = lstm_sd()
    sd["fc.weight"] = (sd["fc.weight"] * 100).to(dtype)
    p = save_st(tmp_path / "int.safetensors", sd)
    with pytest.raises(WeightsError) as e:
        load_weights(LSTM.build({}), p)
    assert "wrong dtypes" in str(e.value) and "fc.weight" in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_load_as_float32(tmp_path, dtype):
    sd = lstm_sd()
    p = save_st(tmp_path / "half.safetensors", {k: v.to(dtype) for k, v in sd.items()})
    m = load_weights(LSTM.build({}), p)
    got = m.state_dict()
    for k, v in sd.items():
        assert got[k].dtype == torch.float32
        assert torch.allclose(got[k], v.to(dtype).float())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_weights_are_refused(tmp_path, bad):
    sd = lstm_sd()
    sd["lstm.bias_hh_l0"][3] = bad
    p = save_st(tmp_path / "nan.safetensors", sd)
    with pytest.raises(WeightsError, match="NaN/inf") as e:
        load_weights(LSTM.build({}), p)
    assert "lstm.bias_hh_l0" in str(e.value)


def test_a_tensor_is_not_a_state_dict(tmp_path):
    p = tmp_path / "t.pth"
    torch.save(torch.zeros(4, 4), p)
    with pytest.raises(WeightsError, match="not a state_dict.*Tensor"):
        read_state_dict(p)


def test_a_training_checkpoint_names_its_non_tensor_entries(tmp_path):
    p = tmp_path / "ckpt.pth"
    torch.save({"model": lstm_sd(), "epoch": 3, "best_eer": 0.1}, p)
    with pytest.raises(WeightsError) as e:
        read_state_dict(p)
    assert "not tensors" in str(e.value) and "model" in str(e.value) and "epoch" in str(e.value)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.02])
def test_truncated_checkpoint_is_refused(tmp_path, fmt, keep):
    whole = tmp_path / f"whole.{fmt}"
    save_st(whole, lstm_sd()) if fmt == "safetensors" else torch.save(lstm_sd(), whole)
    data = whole.read_bytes()
    p = tmp_path / f"cut.{fmt}"
    p.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(WeightsError) as e:
        load_weights(LSTM.build({}), p)
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg
    assert "truncated" in msg or "not a" in msg or "fit" in msg


def test_forged_safetensors_header_is_refused_without_allocating(tmp_path):
    p = tmp_path / "forged.safetensors"
    header = json.dumps({"fc.weight": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 16]}})
    p.write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(16))
    with pytest.raises(WeightsError, match=str(p.name)):
        read_state_dict(p)
    q = tmp_path / "huge_header.safetensors"
    q.write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    with pytest.raises(WeightsError, match="cannot read"):
        read_state_dict(q)


# ============================================================================ pinned hub revisions


class HubSpy:
    """Stand-ins for huggingface_hub's cache lookup and download that record the revision."""

    def __init__(self, tmp_path: Path, cached: dict | None = None):
        self.lookups: list[tuple] = []
        self.downloads: list[tuple] = []
        self.cached = cached or {}
        self.served = tmp_path / "served"
        self.served.mkdir(exist_ok=True)

    def try_to_load_from_cache(self, repo_id, filename, cache_dir=None, revision=None, **kw):
        self.lookups.append((repo_id, filename, revision))
        return self.cached.get((filename, revision))

    def hf_hub_download(self, repo_id, filename, revision=None, cache_dir=None, **kw):
        self.downloads.append((repo_id, filename, revision))
        if filename != LSTM.checkpoint:
            raise FileNotFoundError(filename)
        p = self.served / f"{revision}_{filename}"
        torch.save(lstm_sd(seed=len(str(revision))), p)
        return str(p)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub

    spy = HubSpy(tmp_path)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", spy.try_to_load_from_cache)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy.hf_hub_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv(ENV_HUB_REVISION, raising=False)
    return spy


def test_revision_reaches_cache_lookup_and_download(hub):
    ck = resolve_checkpoint(SEED, LSTM, None, allow_download=True, revision="0123abc")
    assert ck.source == "hub download" and ck.path.name == f"0123abc_{LSTM.checkpoint}"
    assert hub.lookups == [(HUB_REPO, LSTM.checkpoint, "0123abc")]
    assert hub.downloads == [(HUB_REPO, LSTM.checkpoint, "0123abc")]


def test_revision_from_the_environment(hub, monkeypatch):
    monkeypatch.setenv(ENV_HUB_REVISION, "v1.2")
    with pytest.raises(WeightsError, match="revision v1.2"):   # the stand-in hub serves only lstm
        resolve_checkpoint(SEED, get_set("seed").spec("darts"), None, allow_download=True)
    # both accepted names of the DARTS checkpoint are looked up and tried at the pinned revision
    assert {r for *_, r in hub.lookups} == {"v1.2"} and {r for *_, r in hub.downloads} == {"v1.2"}
    assert [f for _, f, _ in hub.lookups] == ["darts_model_best_model.pth", "Darts_model_best_model.pth"]


def test_unpinned_means_the_hub_default(hub):
    resolve_checkpoint(SEED, LSTM, None, allow_download=True)
    assert hub.lookups[0][2] is None and hub.downloads[0][2] is None


def test_pinned_revision_never_falls_back_to_another(hub, tmp_path, monkeypatch):
    hub.cached[(LSTM.checkpoint, None)] = str(tmp_path / "main_snapshot.pth")   # only main is cached
    torch.save(lstm_sd(), tmp_path / "main_snapshot.pth")

    def offline_download(*a, **k):
        raise ConnectionError("no network")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline_download)
    with pytest.raises(WeightsError) as e:
        resolve_checkpoint(SEED, LSTM, None, allow_download=True, revision="v9")
    assert "revision v9" in str(e.value) and "failed" in str(e.value)
    assert resolve_checkpoint(SEED, LSTM, None, allow_download=True).path.name == "main_snapshot.pth"


@pytest.fixture
def two_snapshots(tmp_path, monkeypatch):
    """A real huggingface_hub cache with main -> commit a...a and tag v2 -> commit b...b."""
    a, b = tmp_path / "a" / LSTM.checkpoint, tmp_path / "b" / LSTM.checkpoint
    for p, seed in ((a, 1), (b, 2)):
        p.parent.mkdir()
        torch.save(lstm_sd(seed), p)
    hf = tmp_path / "hf"
    fill_hub_cache(hf, {LSTM.checkpoint: b}, commit="b" * 40, ref="v2")
    fill_hub_cache(hf, {LSTM.checkpoint: a}, commit="a" * 40, ref="main")
    monkeypatch.setenv("HF_HOME", str(hf))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(ENV_HUB_REVISION, raising=False)
    sha = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in (("a", a), ("b", b))}
    return sha


def cli_score_json(capsys, audio, *extra) -> tuple[int, list | None, str]:
    rc = cli_main(["score", str(audio), "--set", "seed", "--models", "lstm", "--json", "--no-progress", *extra])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if out.out.strip() else None), out.err


def test_cli_revision_selects_the_cached_snapshot(two_snapshots, tmp_path, capsys, monkeypatch):
    audio = tmp_path / "clip.wav"
    sf.write(audio, speechlike(3.0), 16000)
    rc, doc, _ = cli_score_json(capsys, audio)
    assert rc == 0 and doc[0]["models"]["lstm"]["sha256"] == two_snapshots["a"]
    assert doc[0]["models"]["lstm"]["source"] == "hub cache"
    main_p = doc[0]["models"]["lstm"]["p_fake"]
    for rev in ("v2", "b" * 40):
        rc, doc, _ = cli_score_json(capsys, audio, "--revision", rev)
        assert rc == 0 and doc[0]["models"]["lstm"]["sha256"] == two_snapshots["b"], rev
    assert doc[0]["models"]["lstm"]["p_fake"] != pytest.approx(main_p, abs=1e-7)   # other weights, other score
    monkeypatch.setenv(ENV_HUB_REVISION, "v2")
    rc, doc, _ = cli_score_json(capsys, audio)
    assert rc == 0 and doc[0]["models"]["lstm"]["sha256"] == two_snapshots["b"]
    # a revision that is not cached, offline: a clear error, not main's weights
    rc, doc, err = cli_score_json(capsys, audio, "--revision", "v9")
    assert rc == 2 and doc is None
    assert "revision v9" in err and LSTM.checkpoint in err and len(err.strip().splitlines()) == 1
