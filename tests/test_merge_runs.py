"""Merging replicate training runs into one seed average: weights, out-of-fold scores, refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import speechlike
from core.errors import ConfigError
from core.loading import load_set
from core.training.oof import clip_scores, read_window_logits
from core.training.train import add_merge_arguments, add_train_arguments, merge_command, train_command
from test_train import _args, _labelled_folder


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    data = _labelled_folder(root / "data", per_group=6, groups=("a", "b", "c"))
    runs = []
    for seed in (3, 4):
        out = root / f"run{seed}"
        args = _args(add_train_arguments, [
            "--data", str(data), "--models", "lstm", "--out", str(out), "--epochs", "2", "--variants", "1",
            "--no-griffin-lim", "--cache", "", "--quiet", "--report", "", "--seed", str(seed), "--members", "2"])
        assert train_command(args) == 0
        runs.append(out)
    return root, data, runs


def _merge(data, runs, out):
    args = _args(add_merge_arguments, [*map(str, runs), "--data", str(data), "--models", "lstm",
                                       "--out", str(out), "--report", "", "--quiet"])
    return merge_command(args)


def test_merged_model_is_the_mean_of_every_member_and_its_validation_is_exact(two_runs, tmp_path):
    root, data, runs = two_runs
    out = tmp_path / "merged"
    assert _merge(data, runs, out) == 0
    card = json.loads((out / "lstm.json").read_text())
    assert card["architecture"]["members"] == 4 and card["architecture"]["class"] == "SeedAverage"
    assert card["training"]["seed"] == [3, 4]
    assert card["training"]["member_seeds"] == [3, 103, 4, 104]
    assert [m["seed"] for m in card["merged_from"]] == [3, 4]

    # the merged checkpoint loads through the registry and outputs the mean logit of all four networks
    merged = load_set("shipped", models="lstm", weights_dir=out).models[0]
    nets = []
    for r in runs:
        m = load_set("shipped", models="lstm", weights_dir=r).models[0]
        nets.append(m.module)
    feats = merged.spec.front_end(torch.from_numpy(np.stack([speechlike(2.0, seed=s) for s in range(3)])))
    with torch.no_grad():
        want = (nets[0](feats) + nets[1](feats)) / 2  # two runs of two members each
        np.testing.assert_allclose(merged.module(feats).numpy(), want.numpy(), atol=1e-5)
    assert merged.threshold == pytest.approx(card["threshold"])

    # out-of-fold: the mean of the runs' window logits, scored as the Detector scores a clip
    z = [read_window_logits(r / "lstm.oof_logits.npz") for r in runs]
    oof = np.load(out / "lstm.oof.npy")
    clips = sorted(z[0])
    np.testing.assert_allclose(oof[clips], clip_scores([(z[0][c] + z[1][c]) / 2 for c in clips]), rtol=1e-6)
    for r in runs:  # and not simply one run's scores
        assert not np.allclose(oof[clips], np.load(r / "lstm.oof.npy")[clips])
    per = card["validation"]["per_group"]
    assert set(per) == {"a", "b", "c"} and all(len(v["run_eers"]) == 2 for v in per.values())


def test_merge_refuses_runs_that_differ_in_more_than_the_seed(two_runs, tmp_path):
    root, data, runs = two_runs
    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    card = json.loads((other / "lstm.json").read_text())
    card["training"]["epochs"] = 99
    (other / "lstm.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match="differs .* in training"):
        _merge(data, [runs[0], other], tmp_path / "out1")
    with pytest.raises(ConfigError, match="share a seed"):
        _merge(data, [runs[0], runs[0]], tmp_path / "out2")
    with pytest.raises(ConfigError, match="would overwrite"):
        _merge(data, [runs[0], other], other)
    (other / "lstm.oof_logits.npz").unlink()
    shutil.copy(runs[1] / "lstm.json", other / "lstm.json")
    with pytest.raises(ConfigError, match="oof_logits.npz is missing"):
        _merge(data, [runs[0], other], tmp_path / "out3")

