"""core/execution.py: batch-norm folding and channels-last weights (same scores, always on), opt-in bf16."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import FAST_MODELS, speechlike
from core.audio import AudioFacts
from core.errors import ConfigError
from core.execution import channels_last, check_precision, fold_batchnorm, numeric_context, pool_before_activation
from core.features import compute
from core.inference import Detector
from core.loading import load_set
from core.weights import load_weights
from test_cli import cli

SR = 16_000


@pytest.fixture(scope="module")
def shipped():
    """The shipped set's six conv-net families (whisper's encoder is a transformer: nothing to fold)."""
    from core.models.registry import MODEL_NAMES

    return load_set("shipped", models=list(MODEL_NAMES), allow_download=False)


def _facts(x):
    return AudioFacts("x.wav", "WAV", "PCM_16", SR, 1, duration_s=len(x) / SR, peak_dbfs=-3.0)


def _as_built(m):
    """The model as the registry builds it and the checkpoint fills it: no folding, NCHW."""
    net = m.spec.build(m.card)
    load_weights(net, m.checkpoint.path)
    return net.eval()


def _check_same_scores(loaded, x):
    for m in loaded.models:
        feats = compute(m.spec.front_end, x)
        ref = m.spec.p_fake(_as_built(m)(feats))
        got = m.spec.p_fake(m.module(feats))  # before calibration, which both would share
        np.testing.assert_allclose(got.detach().numpy(), ref.detach().numpy(), atol=1e-5, err_msg=m.name)


def test_engine_modules_fold_batchnorm_and_store_convs_channels_last(shipped):
    for m in shipped.models:
        convs = [p for p in m.module.parameters() if p.dim() == 4]
        assert convs, m.name  # every shipped family starts with convolutions
        for p in convs:
            assert p.is_contiguous(memory_format=torch.channels_last), m.name
        built = _as_built(m)
        n_bn = sum(isinstance(x, torch.nn.BatchNorm2d) for x in built.modules())
        left = sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.module.modules())
        assert n_bn > 0 and left == 0, (m.name, n_bn, left)  # every conv->BN pair folded


def test_the_shipped_set_scores_as_built(shipped):
    """Folding and layout are speed choices only: the registry's plain model gives the same P(fake)."""
    _check_same_scores(shipped, torch.from_numpy(np.stack([speechlike(3.0, seed=s) for s in range(4)])))


def test_the_seed_shapes_score_as_built(fast_weights, seed_weights):
    x = torch.from_numpy(np.stack([speechlike(8.0, seed=s) for s in range(2)]))
    _check_same_scores(load_set("seed", models=FAST_MODELS, weights_dir=fast_weights, allow_download=False), x)
    _check_same_scores(load_set("seed", models="resnet,res2net", weights_dir=seed_weights,
                                allow_download=False), x)


def test_channels_last_leaves_models_without_4d_weights_alone():
    lstm = torch.nn.LSTM(8, 4)
    before = [p.data_ptr() for p in lstm.parameters()]
    assert channels_last(lstm) is lstm
    assert [p.data_ptr() for p in lstm.parameters()] == before


def test_folding_keeps_a_batchnorm_that_does_not_follow_a_conv():
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(3)).eval()
    net[2].running_mean.fill_(0.5)
    net[2].running_var.fill_(2.0)
    x = torch.randn(2, 2, 6, 6)
    folded = fold_batchnorm(copy.deepcopy(net))
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) == 1
    torch.testing.assert_close(folded(x), net(x))


class _PoolAfterActs(torch.nn.Module):
    """relu -> pool and selu -> pool (movable), silu -> pool (not monotonic), and an in-place
    relu whose input another branch also reads (moving it would change that branch)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.relu, self.selu, self.silu = torch.nn.ReLU(), torch.nn.SELU(), torch.nn.SiLU()
        self.relu_inplace = torch.nn.ReLU(inplace=True)
        self.pool, self.pool2, self.pool3, self.pool4 = (torch.nn.MaxPool2d(2, padding=p) for p in (0, 1, 0, 0))

    def forward(self, x):
        a = self.pool(self.relu(self.conv(x)))
        b = self.pool2(self.selu(a))
        c = self.pool3(self.silu(b))
        y = c * 2
        d = self.pool4(self.relu_inplace(y))
        return d.sum(dim=(2, 3)) + y.mean(dim=(2, 3))


def _order(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_module"]


def test_pools_move_before_monotonic_activations_only_and_scores_do_not_change():
    net = _PoolAfterActs().eval()
    x = torch.randn(3, 2, 20, 20)
    ref = net(x.clone())
    gm = torch.fx.symbolic_trace(copy.deepcopy(net))
    assert pool_before_activation(gm) == 3  # pool passes relu; pool2 passes selu, then relu too
    order = _order(gm)
    assert order[:5] == ["conv", "pool", "pool2", "relu", "selu"]
    assert order.index("silu") < order.index("pool3")                    # SiLU dips below zero: stays
    assert order.index("relu_inplace") < order.index("pool4")            # y is read twice: stays
    torch.testing.assert_close(gm(x.clone()), ref, rtol=0, atol=0)
    assert pool_before_activation(gm) == 0                               # nothing left to move


def test_the_engine_moves_pools_in_every_shipped_model(shipped):
    for m in shipped.models:
        graphs = [g for g in m.module.modules() if isinstance(g, torch.fx.GraphModule)]
        nodes = [n for g in graphs for n in g.graph.nodes]
        mods = {k: v for g in graphs for k, v in g.named_modules()}
        # a pool may stay after an activation only where moving it could change a value: another
        # node reads the activation's output or its input (e.g. a searched DARTS cell's shared edge)
        after_pool = [n for n in nodes if n.op == "call_module" and isinstance(mods.get(n.target), torch.nn.MaxPool2d)
                      and isinstance(n.args[0], torch.fx.Node) and n.args[0].op == "call_module"
                      and isinstance(mods.get(n.args[0].target), (torch.nn.ReLU, torch.nn.SELU))
                      and len(n.args[0].users) == 1 and len(n.args[0].args[0].users) == 1]
        moved = [n for n in nodes if n.op == "call_module" and isinstance(mods.get(n.target), (torch.nn.ReLU, torch.nn.SELU))
                 and isinstance(n.args[0], torch.fx.Node) and n.args[0].op == "call_module"
                 and isinstance(mods.get(n.args[0].target), torch.nn.MaxPool2d)]
        assert moved and not after_pool, m.name


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


def test_a_model_without_a_bf16_kernel_here_runs_in_fp32_instead_of_failing(fast_detector):
    """oneDNN has no bfloat16 LSTM on CPUs without AVX-512: such a model must still score."""
    import copy

    import torch

    m = copy.copy(next(x for x in fast_detector.models if x.name == "gnn"))
    inner = m.module

    class NoBf16(torch.nn.Module):
        def forward(self, x):
            if torch.is_autocast_cpu_enabled():
                raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation")
            return inner(x)

    m.module, m.bf16_failed = NoBf16(), False
    x = torch.randn(2, m.spec.front_end.n_mels, m.spec.front_end.frames)
    want = m.p_fake(x, "fp32")
    got = m.p_fake(x, "bf16")
    assert m.bf16_failed and torch.allclose(got, want)
    assert torch.allclose(m.p_fake(x, "bf16"), want), "later calls go straight to fp32"
