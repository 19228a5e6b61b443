"""core/weights.py + core/loading.py: where checkpoints come from, safe loading, clear errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from core.errors import ConfigError, WeightsError
from core.loading import load_set, resolve_set_name, seed_available_offline
from core.models.registry import get_set, select_models
from core.weights import check_state_dict, read_state_dict, resolve_checkpoint
from test_models_seed import fill_hub_cache

SEED = get_set("seed")


def lstm_state(hidden: int = 32) -> dict:
    torch.manual_seed(hidden)
    lstm, fc = torch.nn.LSTM(128, hidden, batch_first=True), torch.nn.Linear(hidden, 1)
    return {**{f"lstm.{k}": v for k, v in lstm.state_dict().items()},
            **{f"fc.{k}": v for k, v in fc.state_dict().items()}}


def save_lstm(folder: Path, sd: dict | None = None, name: str = "lstm_model_best_model.pth") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    torch.save(lstm_state() if sd is None else sd, p)
    return p


# ---------------------------------------------------------------------------- missing / wrong


def test_missing_checkpoint_names_file_and_places(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsError) as e:
        load_set("seed", models="lstm", weights_dir=empty, allow_download=False)
    msg = str(e.value)
    assert "lstm_model_best_model.pth" in msg
    assert str(empty) in msg and "hub cache" in msg and "download" in msg


def test_offline_never_downloads(tmp_path, monkeypatch):
    import core.weights as w

    def boom(*a, **k):
        raise AssertionError("tried to download while offline")

    monkeypatch.setattr(w, "_download", boom)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="offline"):
        resolve_checkpoint(SEED, SEED.spec("lstm"), tmp_path, allow_download=True)


def test_download_is_tried_when_online_and_its_failure_reported(tmp_path, monkeypatch):
    import core.weights as w

    calls = []
    monkeypatch.setattr(w, "_hub_unreachable_until", 0.0)
    monkeypatch.setattr(w, "_download", lambda repo, spec, rev: calls.append((repo, spec.name, rev)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(WeightsError, match="failed"):
        resolve_checkpoint(SEED, SEED.spec("lstm"), tmp_path, allow_download=True, revision="v1")
    assert calls == [("SanthoshPrabhu/Deepfake_audio_detection", "lstm", "v1")]


def test_an_unreachable_hub_is_waited_for_once_per_load_not_per_model(tmp_path, monkeypatch):
    """No network: the first download attempt fails on the connection; the other models skip the
    download (saying why) instead of each waiting out its own timeouts. A name the hub does not
    have is not a network failure: the next name is tried and later downloads still are."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    import core.weights as w

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(w, "_hub_unreachable_until", 0.0)
    calls = []

    def not_there(repo, name, **kw):
        calls.append(name)
        raise EntryNotFoundError(f"404 {name}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", not_there)
    spec = SEED.spec("lstm")
    with pytest.raises(WeightsError, match="failed"):
        resolve_checkpoint(SEED, spec, tmp_path, allow_download=True)
    assert calls == list(w.candidate_names(spec)) and w._hub_unreachable_until == 0.0

    def no_network(repo, name, **kw):
        calls.append(name)
        raise LocalEntryNotFoundError("Connection error, and we cannot find the requested files in the cache")

    calls.clear()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    with pytest.raises(WeightsError, match="failed"):
        resolve_checkpoint(SEED, spec, tmp_path, allow_download=True)
    for other in ("gnn", "resnet"):
        with pytest.raises(WeightsError, match="skipped: the hub was unreachable"):
            resolve_checkpoint(SEED, SEED.spec(other), tmp_path, allow_download=True)
    assert calls == [spec.checkpoint]   # one attempt in all
    monkeypatch.setattr(w, "_hub_unreachable_until", 0.0)   # the quiet period over: tried again
    with pytest.raises(WeightsError, match="failed"):
        resolve_checkpoint(SEED, SEED.spec("gnn"), tmp_path, allow_download=True)
    assert len(calls) == 2


def test_wrong_keys_are_named(tmp_path):
    sd = lstm_state()
    sd["lstm.weight_ih_l1"] = sd.pop("lstm.weight_ih_l0")
    p = save_lstm(tmp_path / "w", sd)
    with pytest.raises(WeightsError) as e:
        load_set("seed", models="lstm", weights_dir=p.parent, allow_download=False)
    msg = str(e.value)
    assert str(p) in msg
    assert "missing keys" in msg and "lstm.weight_ih_l0" in msg
    assert "unexpected keys" in msg and "lstm.weight_ih_l1" in msg


def test_wrong_shapes_are_named(tmp_path):
    p = save_lstm(tmp_path / "w", lstm_state(hidden=64))
    with pytest.raises(WeightsError) as e:
        load_set("seed", models="lstm", weights_dir=p.parent, allow_download=False)
    msg = str(e.value)
    assert str(p) in msg and "wrong shapes" in msg
    assert "lstm.weight_hh_l0 (256, 64) != (128, 32)" in msg


def test_check_state_dict_lists_at_most_a_few():
    model = SEED.spec("darts").build({})
    with pytest.raises(WeightsError) as e:
        check_state_dict(model, {}, "x.pth")
    assert "14 missing keys" in str(e.value) and str(e.value).count("layers.") == 5


class Evil:
    """Unpickling this would create a marker file (stands in for arbitrary code)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    folder = tmp_path / "w"
    folder.mkdir()
    sd = lstm_state()
    sd["evil"] = Evil(str(marker))
    torch.save(sd, folder / "lstm_model_best_model.pth")
    assert not marker.exists()
    with pytest.raises(WeightsError) as e:
        load_set("seed", models="lstm", weights_dir=folder, allow_download=False)
    assert "refused" in str(e.value) and "lstm_model_best_model.pth" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [b"", b"not a checkpoint", b"PK\x03\x04 truncated zip"])
def test_unreadable_checkpoint(tmp_path, payload):
    p = tmp_path / "lstm_model_best_model.pth"
    p.write_bytes(payload)
    with pytest.raises(WeightsError, match="lstm_model_best_model.pth"):
        read_state_dict(p)


def test_not_a_state_dict(tmp_path):
    p = tmp_path / "x.pth"
    torch.save([torch.zeros(3)], p)
    with pytest.raises(WeightsError, match="not a state_dict"):
        read_state_dict(p)
    torch.save({"state_dict": lstm_state()}, p)  # a common wrapper is unwrapped
    assert "lstm.weight_ih_l0" in read_state_dict(p)


def test_safetensors_are_read(tmp_path):
    from safetensors.torch import save_file

    sd = lstm_state()
    p = tmp_path / "x.safetensors"
    save_file(sd, str(p))
    got = read_state_dict(p)
    assert set(got) == set(sd) and torch.equal(got["fc.weight"], sd["fc.weight"])


# ---------------------------------------------------------------------------- provenance and order


def test_sha256_and_source_are_exposed(tmp_path):
    p = save_lstm(tmp_path / "w")
    loaded = load_set("seed", models="lstm", weights_dir=p.parent, allow_download=False)
    m = loaded.models[0]
    assert m.checkpoint.source == "local folder" and m.checkpoint.path == p
    assert m.checkpoint.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    d = m.describe()
    assert d["sha256"] == m.checkpoint.sha256 and d["source"] == "local folder"
    assert d["threshold"] == 0.5 and d["threshold_source"]


def test_folder_beats_hub_cache_and_env_folder_is_used(tmp_path, monkeypatch):
    cached = save_lstm(tmp_path / "cache_src", lstm_state(hidden=32))
    fill_hub_cache(tmp_path / "hf", {cached.name: cached})
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    folder = save_lstm(tmp_path / "folder", {k: v + 1 for k, v in lstm_state().items()})
    spec = SEED.spec("lstm")
    assert resolve_checkpoint(SEED, spec, None, allow_download=False).source == "hub cache"
    assert resolve_checkpoint(SEED, spec, folder.parent, allow_download=False).source == "local folder"
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_DIR", str(folder.parent))
    ck = resolve_checkpoint(SEED, spec, None, allow_download=False)
    assert ck.source == "local folder" and ck.path == folder


def test_hub_cache_revision_selects_the_snapshot(tmp_path, monkeypatch):
    a = save_lstm(tmp_path / "a", lstm_state(hidden=32))
    b = save_lstm(tmp_path / "b", {k: v * 2 for k, v in lstm_state(hidden=32).items()})
    hf = tmp_path / "hf"
    fill_hub_cache(hf, {a.name: a}, commit="a" * 40, ref="main")
    fill_hub_cache(hf, {b.name: b}, commit="b" * 40, ref="v2")
    fill_hub_cache(hf, {a.name: a}, commit="a" * 40, ref="main")  # main still points at a
    monkeypatch.setenv("HF_HOME", str(hf))
    spec = SEED.spec("lstm")
    main = resolve_checkpoint(SEED, spec, None, allow_download=False)
    pinned = resolve_checkpoint(SEED, spec, None, allow_download=False, revision="v2")
    by_commit = resolve_checkpoint(SEED, spec, None, allow_download=False, revision="b" * 40)
    assert main.sha256 == hashlib.sha256(a.read_bytes()).hexdigest()
    assert pinned.sha256 == by_commit.sha256 == hashlib.sha256(b.read_bytes()).hexdigest()


def test_hf_hub_cache_variable_is_honoured(tmp_path, monkeypatch):
    src = save_lstm(tmp_path / "src")
    fill_hub_cache(tmp_path / "elsewhere", {src.name: src})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere" / "hub"))
    assert resolve_checkpoint(SEED, SEED.spec("lstm"), None, allow_download=False).source == "hub cache"


def test_auto_picks_seed_only_when_all_six_are_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    folder = tmp_path / "w"
    folder.mkdir()
    assert resolve_set_name("auto", folder) == "shipped"
    for spec in SEED.specs:
        (folder / spec.checkpoint).write_bytes(b"placeholder")  # resolving does not read the weights
    assert seed_available_offline(folder)
    assert resolve_set_name("auto", folder) == "seed"
    assert resolve_set_name("shipped", folder) == "shipped"


def test_unknown_names_teach_the_known_ones():
    with pytest.raises(ConfigError, match="known sets: seed, shipped"):
        get_set("nope")
    with pytest.raises(ConfigError, match="known models: senet, resnet, res2net, gnn, darts, lstm"):
        select_models(SEED, "lstm,bogus")
    assert [s.name for s in select_models(SEED, "lstm, gnn")] == ["gnn", "lstm"]


def test_shipped_set_without_weights_says_where_it_looked(tmp_path, monkeypatch):
    from core.models import registry

    spec = registry.get_set("shipped").spec("lstm")
    empty = registry.ModelSet("shipped", "t", (spec,), shipped_dir=tmp_path)
    with pytest.raises(WeightsError) as e:
        resolve_checkpoint(empty, spec, None, allow_download=False)
    assert "lstm.safetensors" in str(e.value) and str(tmp_path) in str(e.value)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def _copy_shipped(folder: Path) -> None:
    import shutil

    from conftest import REPO

    for f in (REPO / "assets" / "models").iterdir():
        if f.suffix in (".safetensors", ".json"):
            shutil.copy(f, folder / f.name)


def test_ensemble_threshold_holds_for_any_selection_that_keeps_the_weighted_models(tmp_path):
    import json

    _copy_shipped(tmp_path)
    card = json.loads((tmp_path / "ensemble.json").read_text())
    card["weights"] = {n: 0.0 for n in card["weights"]} | {"gnn": 0.5, "resnet": 0.5}
    card["threshold"] = 0.4242
    (tmp_path / "ensemble.json").write_text(json.dumps(card))
    for models, want in (("gnn,resnet", 0.4242), ("gnn,resnet,lstm", 0.4242), (None, 0.4242),
                         ("gnn,lstm", 0.5), ("resnet", 0.5)):
        s = load_set("shipped", models=models, weights_dir=tmp_path, allow_download=False)
        assert s.ensemble_threshold == pytest.approx(want), models
        if want == 0.5:
            assert s.ensemble_threshold_source.startswith("default 0.5") and "gnn, resnet" in s.ensemble_threshold_source
        else:
            assert s.ensemble_threshold_source == card["threshold_source"]


def test_a_damaged_checkpoint_costs_its_model_not_the_set(tmp_path, make):
    """One NaN-poisoned checkpoint: the other five load and score, the skipped one is named with
    the reason, and the ensemble card's threshold no longer applies when a weighted model is gone."""
    import json

    from safetensors.torch import load_file, save_file

    from core.inference import Detector

    _copy_shipped(tmp_path)
    weighted = sorted(n for n, w in json.loads((tmp_path / "ensemble.json").read_text())["weights"].items() if w > 0)
    victim = weighted[0]
    sd = load_file(tmp_path / f"{victim}.safetensors")
    first = next(k for k, v in sd.items() if v.is_floating_point())
    sd[first] = sd[first].clone().fill_(float("nan"))
    save_file(sd, tmp_path / f"{victim}.safetensors")

    s = load_set("shipped", weights_dir=tmp_path, allow_download=False)
    assert victim not in [m.name for m in s.models] and len(s.models) == len(get_set("shipped").specs) - 1
    assert list(s.skipped) == [victim] and "NaN/inf" in s.skipped[victim]
    assert s.ensemble_threshold == 0.5 and "selected and loaded" in s.ensemble_threshold_source
    det = Detector(s)
    res = det.score(make.clip("a.wav", 2.0))
    assert victim not in res.models and res.ensemble.p_fake is not None
    assert det.info()["skipped_models"] == s.skipped

    # nothing loadable: one clear error that names every model and its reason
    (tmp_path / "lstm.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=f"no model could be loaded: (?=.*{victim}: .*NaN)(?=.*lstm: )"):
        load_set("shipped", models=f"{victim},lstm", weights_dir=tmp_path, allow_download=False)
