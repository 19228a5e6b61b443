"""The six seed-shape families against independent re-implementations of the seed.

For each family a state_dict is built from an independent reference module (torchvision /
timm / torch_geometric / plain torch written here from seed_models.md), checked against the
documented key names and shapes, saved under the seed's file name into (a) a folder and
(b) a Hugging Face cache laid out as huggingface_hub lays it out (offline), loaded through
the real code path (load_set / Detector) and scored; the engine's per-window and per-file
P(fake) must equal the reference's.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from torch import nn

from conftest import speechlike
from core.features import SEED_A, SEED_B
from core.inference import Detector
from core.loading import load_set
from core.models.registry import SEED_HUB_REPO, get_set
from test_features import seed_front_end_a, seed_front_end_b

SR = 16_000
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# From ../shared/seed/seed_models.md: key -> shape (complete lists where the doc gives them).
DOCUMENTED = {
    "senet": {"model.conv1.0.weight": (64, 3, 3, 3), "model.fc.weight": (1, 2048), "model.fc.bias": (1,)},
    "resnet": {"model.conv1.weight": (64, 3, 7, 7), "model.fc.weight": (1, 512), "model.fc.bias": (1,)},
    "res2net": {"model.fc.weight": (1000, 2048), "model.fc.bias": (1000,), "fc.weight": (1, 1000),
                "fc.bias": (1,)},
    "gnn": {"conv1.lin.weight": (32, 50), "conv1.bias": (32,), "conv2.lin.weight": (1, 32), "conv2.bias": (1,)},
    "darts": {**{f"layers.{i}.lstm.{w}_l0": (512, 128) for i in range(3) for w in ("weight_ih", "weight_hh")},
              **{f"layers.{i}.lstm.{b}_l0": (512,) for i in range(3) for b in ("bias_ih", "bias_hh")},
              "fc.weight": (1, 128), "fc.bias": (1,)},
    "lstm": {"lstm.weight_ih_l0": (128, 128), "lstm.weight_hh_l0": (128, 32), "lstm.bias_ih_l0": (128,),
             "lstm.bias_hh_l0": (128,), "fc.weight": (1, 32), "fc.bias": (1,)},
}
COMPLETE = {"gnn", "darts", "lstm"}  # the doc lists every key of these


# ---------------------------------------------------------------------------- the seed, re-written


class RefCNN(nn.Module):
    """The seed's SENet/ResNet/Res2Net classifiers: `model` + (Res2Net) a top-level fc."""

    def __init__(self, family: str):
        super().__init__()
        import timm

        if family == "resnet":
            import torchvision

            self.model = torchvision.models.resnet18()
            self.model.fc = nn.Linear(512, 1)
        elif family == "senet":
            self.model = timm.create_model("senet154", pretrained=False)
            self.model.fc = nn.Linear(2048, 1)
        else:
            self.model = timm.create_model("res2net50_26w_4s", pretrained=False, num_classes=1000)
            self.fc = nn.Linear(1000, 1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:  # spec [B, 1, 50, 250]
        out = self.model(spec.repeat(1, 3, 1, 1))
        return self.fc(out) if hasattr(self, "fc") else out


class RefGNN(nn.Module):
    """GCNConv(50, 32) -> ReLU -> GCNConv(32, 1) -> global mean pool, kNN graph from scikit-learn."""

    def __init__(self):
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv1, self.conv2 = GCNConv(50, 32), GCNConv(32, 1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:  # spec [50, 250] of one clip
        from sklearn.neighbors import kneighbors_graph
        from torch_geometric.nn import global_mean_pool

        x = spec.T.contiguous()                                   # nodes = 250 frames, features = 50 mels
        adj = kneighbors_graph(x.numpy(), 5, mode="connectivity", include_self=True)
        edge_index = torch.tensor(np.array(adj.nonzero()), dtype=torch.long)
        assert edge_index.shape == (2, 5 * x.shape[0])            # 1,250 directed edges
        h = torch.relu(self.conv1(x, edge_index))
        h = self.conv2(h, edge_index)
        return global_mean_pool(h, torch.zeros(x.shape[0], dtype=torch.long)).view(1)


class _RefDartsLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(128, 128, batch_first=True)

    def forward(self, x):
        out, _ = self.lstm(x)
        return out[:, -1, :] if out.dim() == 3 else out  # a 2-D input is one unbatched sequence


class RefDarts(nn.Module):
    """The seed's PC_DARTS_Model forward as it is: 3 layers, fc, sigmoid (a probability of real)."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([_RefDartsLayer() for _ in range(3)])
        self.fc = nn.Linear(128, 1)

    def forward(self, x):  # [B, T, 128]
        for layer in self.layers:
            x = layer(x)
        return torch.sigmoid(self.fc(x))


class RefLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(128, 32, num_layers=1, batch_first=True)
        self.fc = nn.Linear(32, 1)

    def forward(self, x):  # [B, T, 128]
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])


def build_reference(family: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = {"senet": lambda: RefCNN("senet"), "resnet": lambda: RefCNN("resnet"),
         "res2net": lambda: RefCNN("res2net"), "gnn": RefGNN, "darts": RefDarts, "lstm": RefLSTM}[family]()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # give heads and BN statistics some spread, so scores are not all ~0.5
        for name, p in m.named_parameters():
            if name.endswith("fc.weight") or name == "conv2.lin.weight":
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for name, b in m.named_buffers():
            if name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
            elif name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
    return m.eval()


@torch.no_grad()
def reference_p_fake(family: str, ref: nn.Module, x: np.ndarray) -> float:
    """P(fake) of one clip by the seed's own path (batch of one), from raw 16 kHz samples."""
    if family in ("senet", "resnet", "res2net"):
        return float(1 - torch.sigmoid(ref(seed_front_end_a(x)[None, None])).item())
    if family == "gnn":
        return float(1 - torch.sigmoid(ref(seed_front_end_a(x))).item())
    seq = seed_front_end_b(x).T[None]           # [1, 200, 128]: time is the sequence
    if family == "darts":
        return float(1 - ref(seq).item())        # already P(real): no second sigmoid
    return float(1 - torch.sigmoid(ref(seq)).item())


# ---------------------------------------------------------------------------- placing checkpoints


def seed_file(family: str) -> str:
    return get_set("seed").spec(family).checkpoint


def fill_hub_cache(hf_home: Path, files: dict[str, Path], commit: str = COMMIT, ref: str = "main") -> Path:
    """huggingface_hub's cache layout: blobs/<sha256>, snapshots/<commit>/<name> -> blob, refs/<ref>."""
    repo_dir = Path(hf_home) / "hub" / ("models--" + SEED_HUB_REPO.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        data = Path(src).read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / name
        if link.exists() or link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(blob, snap), link)
    (repo_dir / "refs" / ref).write_text(commit)
    return repo_dir


def write_audio(path: Path, x: np.ndarray) -> Path:
    sf.write(path, x, SR, subtype="FLOAT")
    return path


_REF_CACHE: dict[str, tuple[nn.Module, dict]] = {}


def reference_and_state(family: str) -> tuple[nn.Module, dict]:
    if family not in _REF_CACHE:
        ref = build_reference(family, seed=len(family))
        _REF_CACHE[family] = (ref, {k: v.clone() for k, v in ref.state_dict().items()})
    return _REF_CACHE[family]


def check_documented_keys(family: str, sd: dict) -> None:
    for k, shape in DOCUMENTED[family].items():
        assert k in sd, f"{family}: documented key {k} missing"
        assert tuple(sd[k].shape) == shape, f"{family}: {k} {tuple(sd[k].shape)} != {shape}"
    if family in COMPLETE:
        assert set(sd) == set(DOCUMENTED[family])


def compare_engine_with_reference(det: Detector, family: str, ref: nn.Module, clips: dict[str, np.ndarray],
                                  tmp: Path) -> None:
    for name, x in clips.items():
        res = det.score(write_audio(tmp / f"{family}_{name}.wav", x))
        ms = res.models[family]
        assert ms.error is None, ms.error
        assert ms.windows, "no windows"
        for w in ms.windows:
            a, b = int(round(w.start * SR)), int(round(w.end * SR))
            want = reference_p_fake(family, ref, x[a:b])
            assert w.p_fake == pytest.approx(want, abs=2e-5), (family, name, w)
        assert ms.p_fake == pytest.approx(np.mean([w.p_fake for w in ms.windows]), abs=1e-9)
        assert ms.verdict == ("fake" if ms.p_fake >= 0.5 else "real")


def clips_for(family: str) -> dict[str, np.ndarray]:
    fe = SEED_B if family in ("darts", "lstm") else SEED_A
    return {"short": speechlike(0.6 * fe.window_s, seed=1),        # one padded window
            "exact": speechlike(fe.window_s, seed=2),              # exactly one window
            "long": speechlike(2.3 * fe.window_s, seed=3)}         # several windows + a tail flush with the end


# ---------------------------------------------------------------------------- tests

SMALL = ["resnet", "res2net", "gnn", "darts", "lstm"]


@pytest.mark.parametrize("family", SMALL)
def test_reference_state_dict_has_documented_keys_and_loads_strict(family):
    _, sd = reference_and_state(family)
    check_documented_keys(family, sd)
    engine = get_set("seed").spec(family).build({})
    esd = engine.state_dict()
    assert set(esd) == set(sd)
    assert all(tuple(esd[k].shape) == tuple(sd[k].shape) for k in sd)
    engine.load_state_dict(sd, strict=True)


@pytest.mark.parametrize("family", SMALL)
def test_from_folder_matches_reference(family, tmp_path):
    ref, sd = reference_and_state(family)
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(sd, folder / seed_file(family))
    det = Detector.from_set("seed", models=family, weights_dir=folder, allow_download=False)
    m = det.models[0]
    assert m.checkpoint.source == "local folder"
    assert m.checkpoint.sha256 == hashlib.sha256((folder / seed_file(family)).read_bytes()).hexdigest()
    assert m.threshold == 0.5 and "seed" in m.threshold_source
    compare_engine_with_reference(det, family, ref, clips_for(family), tmp_path)


@pytest.mark.parametrize("family", SMALL)
def test_from_offline_hub_cache_matches_reference(family, tmp_path, monkeypatch):
    ref, sd = reference_and_state(family)
    ck = tmp_path / "staging" / seed_file(family)
    ck.parent.mkdir()
    torch.save(sd, ck)
    hf_home = tmp_path / "hf"
    fill_hub_cache(hf_home, {ck.name: ck})
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("DEEPFAKE_WEIGHTS_DIR", raising=False)
    loaded = load_set("seed", models=family)
    assert loaded.models[0].checkpoint.source == "hub cache"
    assert COMMIT in str(loaded.models[0].checkpoint.path)
    assert loaded.models[0].checkpoint.sha256 == hashlib.sha256(ck.read_bytes()).hexdigest()
    det = Detector(loaded)
    compare_engine_with_reference(det, family, ref, {"long": clips_for(family)["long"]}, tmp_path)


@pytest.mark.parametrize("where", ["folder", "hub cache"])
def test_darts_capitalised_file_name_is_accepted(where, tmp_path, monkeypatch):
    ref, sd = reference_and_state("darts")
    ck = tmp_path / "w" / "Darts_model_best_model.pth"
    ck.parent.mkdir()
    torch.save(sd, ck)
    if where == "folder":
        loaded = load_set("seed", models="darts", weights_dir=ck.parent, allow_download=False)
    else:
        hf_home = tmp_path / "hf"
        fill_hub_cache(hf_home, {ck.name: ck})
        monkeypatch.setenv("HF_HOME", str(hf_home))
        loaded = load_set("seed", models="darts", allow_download=False)
    assert loaded.models[0].checkpoint.path.name == "Darts_model_best_model.pth"
    assert loaded.models[0].checkpoint.source == ("local folder" if where == "folder" else "hub cache")
    x = clips_for("darts")["short"]
    res = Detector(loaded).score(write_audio(tmp_path / "d.wav", x))
    assert res.models["darts"].p_fake == pytest.approx(reference_p_fake("darts", ref, x), abs=2e-5)


def test_darts_score_does_not_depend_on_batch_neighbours(tmp_path):
    ref, sd = reference_and_state("darts")
    folder = tmp_path / "w"
    folder.mkdir()
    torch.save(sd, folder / seed_file("darts"))
    clips = [speechlike(s, seed=10 + i) for i, s in enumerate([1.0, 2.4, 5.0, 7.5])]
    paths = [write_audio(tmp_path / f"c{i}.wav", x) for i, x in enumerate(clips)]
    loaded = load_set("seed", models="darts", weights_dir=folder, allow_download=False)
    together = list(Detector(loaded, batch_size=32).score_many([(str(p), p) for p in paths]))
    for p, x, res in zip(paths, clips, together):
        alone = Detector(loaded, batch_size=1).score(p)
        assert [w.p_fake for w in res.models["darts"].windows] == pytest.approx(
            [w.p_fake for w in alone.models["darts"].windows], abs=1e-6)
        # and each window equals the seed's forward with a batch of one
        for w in res.models["darts"].windows:
            a, b = int(round(w.start * SR)), int(round(w.end * SR))
            assert w.p_fake == pytest.approx(reference_p_fake("darts", ref, x[a:b]), abs=2e-5)
    # the seed's literal forward on a batch of four mixes the clips (why the engine does not use it)
    seqs = torch.stack([seed_front_end_b(x[: SEED_B.window_samples]).T for x in clips])
    with torch.no_grad():
        batched = 1 - ref(seqs).squeeze(-1)
    single = torch.tensor([reference_p_fake("darts", ref, x[: SEED_B.window_samples]) for x in clips])
    assert torch.allclose(batched[0], single[0], atol=1e-6)
    assert not torch.allclose(batched[1:], single[1:], atol=1e-4)


def test_gnn_graph_has_5_neighbours_per_frame_including_itself():
    from sklearn.neighbors import kneighbors_graph

    from core.models.gnn import knn_adjacency

    x = seed_front_end_a(speechlike(8.0, seed=5)).T.contiguous()
    adj_engine = knn_adjacency(x[None])[0].numpy()
    adj_sklearn = kneighbors_graph(x.numpy(), 5, mode="connectivity", include_self=True).toarray()
    np.testing.assert_array_equal(adj_engine, adj_sklearn)
    assert adj_engine.sum() == 1250 and np.all(np.diag(adj_engine) == 1)


def test_seed_outputs_read_as_p_fake():
    """label 0 = fake, 1 = real: a large positive logit (or probability 1 for DARTS) means real."""
    s = get_set("seed")
    big = torch.tensor([8.0, -8.0])
    for name in ("senet", "resnet", "res2net", "gnn", "lstm"):
        p = s.spec(name).p_fake(big)
        assert p[0] < 0.01 and p[1] > 0.99
    p = s.spec("darts").p_fake(torch.tensor([0.99, 0.01]))
    assert p.tolist() == pytest.approx([0.01, 0.99])


def test_senet154_from_folder_matches_timm(tmp_path):
    """The one SENet154 test (113 M parameters): keys, strict load, score vs timm called directly."""
    ref, sd = build_reference("senet", seed=3), None
    sd = ref.state_dict()
    check_documented_keys("senet", sd)
    assert 100e6 < sum(v.numel() for k, v in sd.items() if "running" not in k and "num_batches" not in k) < 130e6
    folder = tmp_path / "w"
    folder.mkdir()
    torch.save(sd, folder / seed_file("senet"))
    del sd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = Detector.from_set("seed", models="senet", weights_dir=folder, allow_download=False)
    assert det.models[0].checkpoint.source == "local folder"
    x = speechlike(3.0, seed=4)
    res = det.score(write_audio(tmp_path / "s.wav", x))
    assert res.models["senet"].p_fake == pytest.approx(reference_p_fake("senet", ref, x), abs=2e-5)


# ---------------------------------------------------------------------------- seed windows and the seed crop


def _det_for(family: str, tmp_path: Path, **kw) -> tuple[Detector, nn.Module]:
    ref, sd = reference_and_state(family)
    folder = tmp_path / f"w_{family}"
    folder.mkdir(exist_ok=True)
    torch.save(sd, folder / seed_file(family))
    return Detector.from_set("seed", models=family, weights_dir=folder, allow_download=False, **kw), ref


def _independent_frames(n: int, n_fft: int, hop: int) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop)
    return spec(torch.zeros(n)).shape[-1]


@pytest.mark.parametrize("family,n_fft,hop,frames,lengths", [
    ("gnn", 2048, 512, 250, (127_487, 127_488, 127_999, 128_000)),
    ("lstm", 400, 200, 200, (39_799, 39_800, 39_999, 40_000)),
])
def test_a_clip_is_one_window_exactly_when_the_seed_sees_at_most_its_frames(family, n_fft, hop, frames, lengths,
                                                                             tmp_path):
    det, ref = _det_for(family, tmp_path)
    for n in lengths:
        x = speechlike(n / SR, seed=n % 97)[:n]
        assert len(x) == n
        res = det.score(write_audio(tmp_path / f"{family}_{n}.wav", x))
        ms = res.models[family]
        one = _independent_frames(n, n_fft, hop) <= frames
        assert (len(ms.windows) == 1) == one, (n, len(ms.windows))
        if one:   # scored exactly as the seed scores the whole clip
            assert ms.windows[0].end * SR == pytest.approx(n)
            assert ms.p_fake == pytest.approx(reference_p_fake(family, ref, x), abs=2e-5)


@pytest.mark.parametrize("family", ["gnn", "lstm", "darts"])
def test_seed_crop_reproduces_the_seed_apps_first_window_score(family, tmp_path):
    x = speechlike(20.0, seed=7)
    x[int(12 * SR):] *= 3.0          # louder later: the clip-wide normalisation differs from the first window's
    path = write_audio(tmp_path / f"{family}_20s.wav", x)
    crop, ref = _det_for(family, tmp_path, seed_crop=True)
    res = crop.score(path)
    ms = res.models[family]
    want = reference_p_fake(family, ref, x)      # the seed's own path over the whole 20 s clip
    assert len(ms.windows) == 1 and ms.windows[0].start == 0
    fe = SEED_B if family in ("darts", "lstm") else SEED_A
    assert ms.windows[0].end == pytest.approx(fe.window_samples / SR)
    assert ms.p_fake == pytest.approx(want, abs=2e-5)
    assert res.facts.analysed_s == pytest.approx(fe.window_samples / SR)
    windowed, _ = _det_for(family, tmp_path)
    assert len(windowed.score(path).models[family].windows) > 1


def test_seed_crop_and_a_window_length_do_not_mix(tmp_path):
    with pytest.raises(Exception, match="seed crop"):
        _det_for("gnn", tmp_path, seed_crop=True, window_s=2.0)
