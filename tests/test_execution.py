"""core/execution.py: channels-last weights (same scores, always on) and opt-in bf16 autocast."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from conftest import FAST_MODELS, speechlike
from core.audio import AudioFacts
from core.errors import ConfigError
from core.execution import channels_last, check_precision, numeric_context
from core.features import compute
from core.inference import Detector
from core.loading import load_set
from test_cli import cli

SR = 16_000


@pytest.fixture(scope="module")
def shipped():
    return load_set("shipped", allow_download=False)


def _facts(x):
    return AudioFacts("x.wav", "WAV", "PCM_16", SR, 1, duration_s=len(x) / SR, peak_dbfs=-3.0)


def test_loaded_conv_weights_are_channels_last_and_score_as_nchw(shipped):
    """The layout is a speed choice only: an NCHW copy of each model gives the same P(fake)."""
    x = torch.from_numpy(np.stack([speechlike(3.0, seed=s) for s in range(4)]))
    for m in shipped.models:
        convs = [p for p in m.module.parameters() if p.dim() == 4]
        if m.name in ("senet", "resnet", "res2net", "gnn", "darts"):
            assert convs, m.name
        for p in convs:
            assert p.is_contiguous(memory_format=torch.channels_last), m.name
        feats = compute(m.spec.front_end, x)
        nchw = copy.deepcopy(m).module.to(memory_format=torch.contiguous_format)
        assert all(p.is_contiguous() for p in nchw.parameters())
        ref = m.spec.p_fake(nchw(feats))
        got = m.spec.p_fake(m.module(feats))
        np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), atol=1e-5, err_msg=m.name)


def test_channels_last_leaves_models_without_4d_weights_alone():
    lstm = torch.nn.LSTM(8, 4)
    before = [p.data_ptr() for p in lstm.parameters()]
    assert channels_last(lstm) is lstm
    assert [p.data_ptr() for p in lstm.parameters()] == before


def test_bf16_context_really_autocasts_and_fp32_does_not():
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    with numeric_context("bf16"):
        assert lin(x).dtype == torch.bfloat16
    with numeric_context("fp32"):
        assert lin(x).dtype == torch.float32


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="fp16.*fp32, bf16"):
        check_precision("fp16")
    with pytest.raises(ConfigError):
        Detector(load_set("shipped", models="lstm", allow_download=False), precision="half")


def test_bf16_scores_stay_close_to_fp32_but_are_computed_in_bf16(shipped):
    x = speechlike(7.0, seed=3)
    fp32 = Detector(shipped).score_samples(x, _facts(x))
    bf16 = Detector(shipped, precision="bf16").score_samples(x, _facts(x))
    diffs = {n: abs(bf16.models[n].p_fake - fp32.models[n].p_fake) for n in fp32.models}
    assert max(diffs.values()) < 0.02, diffs
    assert max(diffs.values()) > 0, "bf16 gave bit-identical scores: autocast did not run"
    assert len(bf16.models["gnn"].windows) == len(fp32.models["gnn"].windows)
    assert Detector(shipped, precision="bf16").info()["precision"] == "bf16"


def test_cli_precision_option(tmp_path, fast_weights):
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, speechlike(2.0, seed=5), SR)
    base = ["score", wav, "--set", "seed", "--models", FAST_MODELS, "--weights-dir", fast_weights,
            "--no-download", "--json", "--no-progress"]
    a, b = cli(*base), cli(*base, "--precision", "bf16")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    pa, pb = json.loads(a.stdout)[0]["models"], json.loads(b.stdout)[0]["models"]
    assert set(pa) == set(pb)
    assert all(abs(pa[n]["p_fake"] - pb[n]["p_fake"]) < 0.05 for n in pa)
    bad = cli(*base, "--precision", "int8")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
