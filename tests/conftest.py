"""Shared fixtures for the test suite.

Engine section (owned by the engine work): the environment is made hermetic once per run
(the Hugging Face Hub is never contacted: `HF_HUB_OFFLINE=1`, `HF_HOME` points at an empty
temporary folder, `$DEEPFAKE_WEIGHTS_DIR` is cleared), audio makers, and seed-shape model
checkpoints with random weights written once per session.

Other sections may be added below by other owners, clearly separated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Hermetic before anything imports huggingface_hub (it reads some variables at import time).
_HF_HOME = tempfile.mkdtemp(prefix="hf_home_tests_")
os.environ["HF_HOME"] = _HF_HOME
os.environ.pop("HF_HUB_CACHE", None)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("DEEPFAKE_WEIGHTS_DIR", None)
os.environ.pop("DEEPFAKE_HUB_REVISION", None)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s (still runs by default)")


def pytest_unconfigure(config):
    shutil.rmtree(_HF_HOME, ignore_errors=True)


# ============================================================================ engine: audio

SR = 16_000


def tone(freq: float = 440.0, seconds: float = 1.0, sr: int = SR, amp: float = 0.5,
         phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def noise(seconds: float = 1.0, sr: int = SR, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(round(seconds * sr)))).astype(np.float32)


def speechlike(seconds: float = 3.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Noise plus gliding tones with a syllable-rate envelope: no exact ties between frames."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))
    x = 0.2 * env * voiced + 0.02 * rng.standard_normal(n)
    return (x / (np.abs(x).max() + 1e-9) * 0.6).astype(np.float32)


class AudioMaker:
    """Write test audio into a folder: `make.wav("a.wav", x, sr)`, `make.clip("b.wav", seconds)`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, x: np.ndarray, sr: int = SR, **kw) -> Path:
        import soundfile as sf

        p = self.folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, x, sr, **kw)
        return p

    def clip(self, name: str, seconds: float = 1.0, sr: int = SR, seed: int = 0, **kw) -> Path:
        return self.write(name, speechlike(seconds, sr, seed), sr, **kw)

    def broken(self, name: str, kind: int = 0) -> Path:
        """Files that cannot be decoded: garbage, empty, a header with no data, a truncated header."""
        p = self.folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        kind %= 4
        if kind == 0:
            p.write_bytes(b"this is not audio at all " * 8)
        elif kind == 1:
            p.write_bytes(b"")
        elif kind == 2:
            p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
        else:
            p.write_bytes(os.urandom(64))
        return p


@pytest.fixture
def make(tmp_path) -> AudioMaker:
    return AudioMaker(tmp_path / "audio")


@pytest.fixture(scope="session")
def espeak_wav(tmp_path_factory) -> Path:
    """A few seconds of real synthetic speech from espeak-ng (22.05 kHz mono), or skip."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if not exe:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    out = tmp_path_factory.mktemp("espeak") / "speech.wav"
    subprocess.run([exe, "-w", str(out), "The quick brown fox jumps over the lazy dog. "
                    "Deepfake detection needs careful evaluation."], check=True, capture_output=True)
    return out


@pytest.fixture(autouse=True)
def _hub_reachable_again(monkeypatch):
    """core.weights remembers an unreachable hub for two minutes; each test starts without that memory."""
    import core.weights

    monkeypatch.setattr(core.weights, "_hub_unreachable_until", 0.0)


# ============================================================================ engine: seed-shape weights

FAST_MODELS = "gnn,darts,lstm"          # seconds to build and score
SMALL_SEED_MODELS = ("resnet", "res2net", "gnn", "darts", "lstm")   # all but senet154 (460 MB)


def write_seed_weights(folder: Path, names=SMALL_SEED_MODELS, seed: int = 0) -> Path:
    """Seed-shape modules with random weights, saved under the seed's file names."""
    import torch

    from core.models.registry import get_set

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    s = get_set("seed")
    for i, name in enumerate(names):
        spec = s.spec(name)
        torch.manual_seed(seed + i)
        m = spec.build({})
        _spread_weights(m, seed + i)
        torch.save(m.state_dict(), folder / spec.checkpoint)
    return folder


def _spread_weights(module, seed: int) -> None:
    """Random init gives near-constant outputs for deep nets; widen the heads so scores differ."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("fc.weight") or name.endswith("conv2.lin.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.fixture(scope="session")
def seed_weights(tmp_path_factory) -> Path:
    """A folder with random-weight seed checkpoints for resnet, res2net, gnn, darts, lstm."""
    return write_seed_weights(tmp_path_factory.mktemp("seed_weights"))


@pytest.fixture(scope="session")
def fast_weights(tmp_path_factory) -> Path:
    """Only the three fast seed models (gnn, darts, lstm): for CLI and batch tests."""
    return write_seed_weights(tmp_path_factory.mktemp("fast_weights"), ("gnn", "darts", "lstm"))


@pytest.fixture(scope="session")
def fast_detector(fast_weights):
    from core.inference import Detector

    return Detector.from_set("seed", models=FAST_MODELS, weights_dir=fast_weights, allow_download=False)


@pytest.fixture(scope="module")
def loaded(fast_weights):
    """The fast seed-shape models, loaded once per test module."""
    from core.loading import load_set

    return load_set("seed", models=FAST_MODELS, weights_dir=fast_weights, allow_download=False)


@pytest.fixture(scope="module")
def det(loaded):
    from core.inference import Detector

    return Detector(loaded)


def python_env() -> dict:
    """Environment for `python -m core` subprocesses: the repository importable, hermetic hub."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


# ============================================================================ (other sections below)


# ============================================================================ dashboard: shared AppTest fixtures


@pytest.fixture
def app_env(monkeypatch, seed_weights):
    """Pages load the seed-shape test weights; no server data root unless a test sets one."""
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_DIR", str(seed_weights))
    monkeypatch.delenv("DEEPFAKE_DATA_ROOT", raising=False)
    return seed_weights


@pytest.fixture(scope="module")
def engine(seed_weights):
    """The engine itself, on the models the pages use, to check the pages' numbers against."""
    from app_helpers import APP_MODELS
    from core.inference import Detector

    return Detector.from_set("seed", models=",".join(APP_MODELS), weights_dir=seed_weights,
                             allow_download=False)
