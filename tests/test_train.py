"""Training and evaluation from the CLI on tiny synthetic data, and the shipped set offline."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO, SHARED_DATA, noise, python_env, speechlike, tone
from core.training.datasets import read_labelled
from core.errors import ConfigError, WeightsError
from core.inference import Detector
from core.loading import load_set
from core.models.registry import ALL_MODEL_NAMES, MODEL_NAMES, get_set
from core.training.oof import clip_scores
from core.training.train import add_evaluate_arguments, add_train_arguments, evaluate_command, train_command
from core.weights import load_weights


def _labelled_folder(root: Path, per_group: int = 24, groups=("a", "b")) -> Path:
    """real/ = speech-like noise, fake/ = pure tones: separable, so a few steps must learn it."""
    for g_i, g in enumerate(groups):
        for i in range(per_group):
            seed = 100 * g_i + i
            real = speechlike(2.0 + (i % 3), seed=seed) + noise(2.0 + (i % 3), amp=0.02, seed=seed)
            fake = tone(200 + 37 * i + 11 * g_i, 2.0 + (i % 2), amp=0.4)
            (root / "real" / g).mkdir(parents=True, exist_ok=True)
            (root / "fake" / g).mkdir(parents=True, exist_ok=True)
            sf.write(root / "real" / g / f"r{i}.wav", real, 16000)
            sf.write(root / "fake" / g / f"f{i}.flac", fake, 16000)
    return root


def _args(adder, argv):
    p = argparse.ArgumentParser()
    adder(p)
    return p.parse_args(argv)


def _epoch_losses(log: Path, name: str) -> list[float]:
    return [float(m) for m in re.findall(rf"{name} epoch \d+: loss ([0-9.]+)", log.read_text())]


def test_train_loss_falls_and_checkpoint_and_card_load_back(tmp_path):
    data = _labelled_folder(tmp_path / "data")
    out = tmp_path / "out"
    args = _args(add_train_arguments, [
        "--data", str(data), "--models", "lstm", "--out", str(out), "--epochs", "6", "--variants", "2",
        "--folds", "none", "--no-griffin-lim", "--cache", "", "--quiet", "--seed", "1", "--report", ""])
    assert train_command(args) == 0
    losses = _epoch_losses(out / "train.log", "lstm")
    assert len(losses) == 6
    assert losses[-1] < losses[0] * 0.8, losses
    card = json.loads((out / "lstm.json").read_text())
    assert card["name"] == "lstm" and card["parameters"] > 1000
    assert card["training_data"]["clips"] == 96
    assert card["front_end"]["name"] == get_set("shipped").spec("lstm").front_end.name  # the registry's
    # the checkpoint loads back through the real loader and scores: tones come out faker than speech
    det = Detector(load_set("shipped", models="lstm", weights_dir=out))
    assert det.models[0].checkpoint.source == "local folder"
    assert det.models[0].checkpoint.sha256 == card["sha256"]
    p_fake = det.score(data / "fake" / "a" / "f3.flac").models["lstm"].p_fake
    p_real = det.score(data / "real" / "a" / "r3.wav").models["lstm"].p_fake
    assert p_fake > p_real


def test_train_leave_one_group_out_writes_validation_calibration_and_threshold(tmp_path):
    data = _labelled_folder(tmp_path / "data", per_group=10, groups=("a", "b", "c"))
    out = tmp_path / "out"
    args = _args(add_train_arguments, [
        "--data", str(data), "--models", "lstm", "--out", str(out), "--epochs", "3", "--variants", "2",
        "--no-griffin-lim", "--cache", "", "--quiet", "--report", ""])
    assert train_command(args) == 0
    card = json.loads((out / "lstm.json").read_text())
    per = card["validation"]["per_group"]
    assert set(per) == {"a", "b", "c"}
    assert all(v["n_real"] == 10 and v["n_fake"] == 10 for v in per.values())
    assert card["calibration"]["method"] == "platt"
    assert 0.0 < card["threshold"] < 1.0
    assert "EER" in card["threshold_source"]
    # the loaded model uses the card's threshold and says where it came from
    m = load_set("shipped", models="lstm", weights_dir=out).models[0]
    assert m.threshold == pytest.approx(card["threshold"]) and "EER" in m.threshold_source
    # the out-of-fold window logits are kept and give back the out-of-fold clip scores
    z = np.load(out / "lstm.oof_logits.npz")
    oof = np.load(out / "lstm.oof.npy")
    assert len(z["clips"]) == 60 and z["counts"].sum() == len(z["logits"]) and (z["counts"] >= 1).all()
    per_clip = np.split(z["logits"], np.cumsum(z["counts"])[:-1])
    np.testing.assert_allclose(clip_scores(per_clip), oof[z["clips"]], rtol=1e-6)


def test_members_are_trained_from_different_seeds_and_averaged(tmp_path):
    data = _labelled_folder(tmp_path / "data", per_group=8)
    out = tmp_path / "out"
    args = _args(add_train_arguments, [
        "--data", str(data), "--models", "resnet", "--out", str(out), "--epochs", "2", "--variants", "1",
        "--folds", "none", "--no-griffin-lim", "--cache", "", "--quiet", "--seed", "3", "--report", "",
        "--members", "2"])
    assert train_command(args) == 0
    card = json.loads((out / "resnet.json").read_text())
    assert card["architecture"]["members"] == 2 and card["architecture"]["class"] == "SeedAverage"
    assert card["training"]["member_seeds"] == [3, 103]
    m = load_set("shipped", models="resnet", weights_dir=out).models[0]
    plain = m.spec.build(card)
    load_weights(plain, m.checkpoint.path)
    a, b = plain.members
    assert not torch.equal(a.head.weight, b.head.weight)  # really two networks, not one copied
    x = torch.from_numpy(np.stack([speechlike(3.0, seed=s) for s in range(3)]))
    feats = m.spec.front_end(x)
    with torch.no_grad():
        mean_logit = (a(feats) + b(feats)) / 2
        np.testing.assert_allclose(m.module(feats).numpy(), mean_logit.numpy(), atol=1e-5)


def test_front_end_option_is_recorded_and_a_registry_mismatch_refuses_to_load(tmp_path):
    data = _labelled_folder(tmp_path / "data", per_group=4)
    out = tmp_path / "out"
    registry_fe = get_set("shipped").spec("lstm").front_end.name
    other = "logmel64" if registry_fe == "loglin64" else "loglin64"
    args = _args(add_train_arguments, [
        "--data", str(data), "--models", "lstm", "--out", str(out), "--epochs", "1", "--variants", "1",
        "--folds", "none", "--no-griffin-lim", "--cache", "", "--quiet", "--report", "", "--front-end", other])
    assert train_command(args) == 0
    card = json.loads((out / "lstm.json").read_text())
    assert card["front_end"]["name"] == other
    assert card["front_end"]["scale"] == ("linear" if other == "loglin64" else "mel")
    # weights trained on another front end than the registry feeds must not load silently
    with pytest.raises(WeightsError, match=f"trained on front end '{other}'.*'{registry_fe}'"):
        load_set("shipped", models="lstm", weights_dir=out)


def test_espeak_fakes_train_in_every_fold_and_are_never_validated(tmp_path, espeak_wav):
    data = _labelled_folder(tmp_path / "data", per_group=6, groups=("a", "b"))
    out = tmp_path / "out"
    args = _args(add_train_arguments, [
        "--data", str(data), "--models", "lstm", "--out", str(out), "--epochs", "1", "--variants", "1",
        "--no-griffin-lim", "--cache", "", "--quiet", "--report", "", "--espeak", "3"])
    assert train_command(args) == 0
    assert "added 3 espeak-ng fakes" in (out / "train.log").read_text()
    card = json.loads((out / "lstm.json").read_text())
    assert set(card["validation"]["per_group"]) == {"a", "b"}      # no espeak-ng fold, no espeak-ng in EERs
    assert card["training_data"]["added_fakes_espeak_ng"] == 3 and card["training_data"]["clips"] == 24


def test_espeak_training_clips_are_labelled_fakes_apart_from_the_probe(espeak_wav):
    from core.training.synthetic_speech import (PROBE_SENTENCES, PROBE_VARIANTS, PROBE_VOICES, TRAIN_VARIANTS,
                                       TRAIN_VOICES, training_sentence)
    from core.training.trainset import espeak_fakes

    pool = espeak_fakes(3, seed=5, quiet=True)
    assert list(pool.labels) == [1, 1, 1] and set(pool.groups) == {"espeak-ng"} and set(pool.origin) == {"espeak"}
    assert all(a.dtype == np.float32 and len(a) > 16000 and np.abs(a).max() > 0.01 for a in pool.audio)
    assert all(m["generator"] == "espeak-ng" and m["voice"].split("+")[0] in TRAIN_VOICES for m in pool.meta)
    assert not set(TRAIN_VOICES) & set(PROBE_VOICES) and not (set(TRAIN_VARIANTS) & set(PROBE_VARIANTS)) - {""}
    rng = np.random.default_rng(0)
    assert not {training_sentence(rng) for _ in range(2000)} & set(PROBE_SENTENCES)


def test_labelled_layouts(tmp_path):
    data = _labelled_folder(tmp_path / "data", per_group=2)
    items = read_labelled(data)
    assert sorted({(i.label, i.group) for i in items}) == [(0, "a"), (0, "b"), (1, "a"), (1, "b")]
    meta = tmp_path / "itw" / "meta.csv"
    meta.parent.mkdir()
    meta.write_text("file,speaker,label\nx.wav,Alice,bona-fide\ny.wav,Bob,spoof\n")
    items = read_labelled(meta)
    assert [(i.label, i.group) for i in items] == [(0, "Alice"), (1, "Bob")]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="expected columns"):
        read_labelled(bad)
    with pytest.raises(ConfigError, match="real/ and fake/"):
        read_labelled(tmp_path / "itw")


@pytest.mark.skipif(not (SHARED_DATA / "manifest.csv").is_file(), reason="needs ../shared/data")
def test_manifest_groups_are_source_repositories():
    items = read_labelled(SHARED_DATA / "manifest.csv")
    assert len(items) == 735
    assert len({i.group for i in items}) == 7


def test_evaluate_writes_a_report(tmp_path, fast_weights):
    data = _labelled_folder(tmp_path / "data", per_group=3, groups=("a",))
    report = tmp_path / "report.md"
    args = _args(add_evaluate_arguments, ["--data", str(data), "--set", "seed", "--models", "lstm,darts",
                                          "--weights-dir", str(fast_weights), "--report", str(report)])
    assert evaluate_command(args) == 0
    text = report.read_text()
    assert "| lstm |" in text and "| ensemble |" in text and "6 files, 6 scored" in text


def test_shipped_set_loads_offline_and_scores(tmp_path, make):
    """The detectors in assets/models are the offline default: all six load with no network."""
    wav = make.clip("speech.wav", seconds=4.0)
    code = (
        "import json, sys; from core.inference import Detector; "
        "d = Detector.from_set('auto'); r = d.score(sys.argv[1]); "
        "print(json.dumps({'set': d.set_name, 'models': {k: [v.p_fake, v.source, v.threshold_source] "
        "for k, v in r.models.items()}, 'ens': [r.ensemble.p_fake, r.ensemble.threshold_source]}))"
    )
    env = python_env()
    env["HF_HUB_OFFLINE"] = "1"
    env["HF_HOME"] = str(tmp_path / "empty_hf")
    out = subprocess.run([sys.executable, "-c", code, str(wav)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["set"] == "shipped"
    assert set(res["models"]) == set(ALL_MODEL_NAMES)
    for name, (p, source, thr_src) in res["models"].items():
        assert 0.0 <= p <= 1.0 and source == "shipped" and "EER" in thr_src, name
    assert "EER" in res["ens"][1]
    cards = {n: json.loads((REPO / "assets" / "models" / f"{n}.json").read_text()) for n in MODEL_NAMES}
    sizes = {n: (REPO / "assets" / "models" / f"{n}.safetensors").stat().st_size for n in MODEL_NAMES}
    assert max(sizes.values()) <= 12 * 2**20 and sum(sizes.values()) <= 40 * 2**20
    for n, c in cards.items():
        assert c["validation"]["per_group"] and c["calibration"] and c["sha256"], n


def test_mixup_changes_training_but_still_learns_and_is_recorded(tmp_path):
    from core.training.train import train_one

    fe = get_set("shipped").spec("lstm").front_end
    g = torch.Generator().manual_seed(0)
    labels = np.array([0, 1] * 16)
    feats = torch.randn(32, fe.n_mels, fe.frames, generator=g)
    feats[labels == 1, :8] += 1.5  # fakes carry energy in the low bands
    clips = np.arange(32)
    plain = train_one("lstm", feats, clips, labels, clips, 1, 6, seed=5, quiet=True)
    mixed = train_one("lstm", feats, clips, labels, clips, 1, 6, seed=5, quiet=True, mixup=0.4)
    again = train_one("lstm", feats, clips, labels, clips, 1, 6, seed=5, quiet=True, mixup=0.4)
    with torch.no_grad():
        z = mixed(feats).numpy()
        np.testing.assert_array_equal(z, again(feats).numpy())  # reproducible from the seed
        assert not np.allclose(z, plain(feats).numpy())  # mixup really changed the training
    assert z[labels == 1].mean() > z[labels == 0].mean()
    data = _labelled_folder(tmp_path / "data", per_group=4)
    args = _args(add_train_arguments, [
        "--data", str(data), "--models", "lstm", "--out", str(tmp_path / "out"), "--epochs", "1", "--variants", "1",
        "--folds", "none", "--no-griffin-lim", "--cache", "", "--quiet", "--report", "", "--mixup", "0.4"])
    assert train_command(args) == 0
    assert "mixup of batches, Beta(0.4, 0.4)" in json.loads((tmp_path / "out" / "lstm.json").read_text())["augmentation"]
