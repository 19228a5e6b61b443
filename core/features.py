"""Front ends: frozen configs that turn a window of 16 kHz audio into a mel tensor.

A front end's output is always `[batch, n_mels, frames]`; each model adapts that layout
itself (3-channel repeat, time-major sequence, ...). Two models that name the same
front end share the computed features: the engine computes each front end once per window.

The seed's two front ends are reproduced exactly (see ../shared/seed/seed_models.md):
no log, per-clip z-normalisation over the whole tensor (A) or none (B), then right zero-pad
or crop to a fixed number of frames. The project's own front end is a log-mel.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch
import torchaudio

from .audio import TARGET_SR


@dataclass(frozen=True)
class FrontEnd:
    """How a window of audio becomes a mel tensor. Hashable, so it keys a feature cache."""

    name: str
    n_fft: int
    hop: int
    n_mels: int
    frames: int
    win_length: int | None = None
    f_min: float = 0.0
    f_max: float | None = None
    log: bool = False            # log(mel + log_eps) instead of power
    log_eps: float = 1e-6
    norm: str = "none"           # "none" | "clip_z" (whole-tensor z-norm per window)
    pad: str = "zeros"           # how a short window is filled: "zeros" (features) | "repeat" (audio)
    mel_scale: str = "htk"
    scale: str = "mel"           # "mel" filterbank, or "linear": triangular filters evenly spaced in Hz
    description: str = ""

    @property
    def window_samples(self) -> int:
        """The most samples that yield exactly `frames` centred STFT frames (1 + n // hop of
        them): a clip this long or shorter is one window, as the seed scores it."""
        return self.frames * self.hop - 1

    def frames_of(self, samples: int) -> int:
        """Centred STFT frames of `samples` samples (before cropping or padding to `frames`)."""
        return 1 + samples // self.hop

    @property
    def window_s(self) -> float:
        return self.window_samples / TARGET_SR

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        """`[B, samples]` float32 -> `[B, n_mels, frames]`. Windows of one batch share a length."""
        return compute(self, windows)


@lru_cache(maxsize=None)
def _filterbank(fe: FrontEnd) -> torch.nn.Module:
    """The front end's power filterbank (mel, or linear in Hz): `[B, samples]` -> `[B, n_mels, T]`."""
    if fe.scale == "linear":
        return _LinearFilterbank(fe)
    with warnings.catch_warnings():  # the seed's 128-bin default leaves some filters empty, by design
        warnings.filterwarnings("ignore", message="At least one mel filterbank")
        return _build_mel(fe)


def _build_mel(fe: FrontEnd) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=TARGET_SR, n_fft=fe.n_fft, win_length=fe.win_length, hop_length=fe.hop,
        f_min=fe.f_min, f_max=fe.f_max, n_mels=fe.n_mels, mel_scale=fe.mel_scale,
    ).eval()


class _LinearFilterbank(torch.nn.Module):
    """Power spectrogram through `n_mels` triangular filters evenly spaced in Hz (as LFCCs use):
    the top octave keeps as many bands as the bottom one, where the mel scale merges it into few.
    Vocoders leave their traces up there."""

    def __init__(self, fe: FrontEnd):
        super().__init__()
        self.spec = torchaudio.transforms.Spectrogram(n_fft=fe.n_fft, win_length=fe.win_length, hop_length=fe.hop,
                                                      power=2.0)
        fb = torchaudio.functional.linear_fbanks(fe.n_fft // 2 + 1, fe.f_min, fe.f_max or TARGET_SR / 2,
                                                 fe.n_mels, TARGET_SR)
        self.register_buffer("fb", fb.T.contiguous())  # [n_filters, n_freqs]
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.fb, self.spec(x))


def fit_length(samples: torch.Tensor, fe: FrontEnd) -> torch.Tensor:
    """For `pad == "repeat"`: tile a short window until it fills the front end's window."""
    n = fe.window_samples
    if fe.pad != "repeat" or samples.shape[-1] >= n or samples.shape[-1] == 0:
        return samples
    reps = -(-n // samples.shape[-1])
    return samples.repeat(*([1] * (samples.dim() - 1)), reps)[..., :n]


@torch.no_grad()
def compute(fe: FrontEnd, windows: torch.Tensor) -> torch.Tensor:
    if windows.dim() == 1:
        windows = windows.unsqueeze(0)
    windows = fit_length(windows.float(), fe)
    m = _filterbank(fe)(windows)  # [B, n_mels, T]
    if fe.log:
        m = torch.log(m + fe.log_eps)
    if fe.norm == "clip_z":
        mean = m.mean(dim=(1, 2), keepdim=True)
        std = m.flatten(1).std(dim=1).view(-1, 1, 1)  # torch's unbiased std, as the seed
        m = (m - mean) / torch.where(std > 0, std, torch.ones_like(std))
    t = m.shape[-1]
    if t >= fe.frames:
        return m[..., : fe.frames].contiguous()
    return torch.nn.functional.pad(m, (0, fe.frames - t))


CLIP_CHUNK_FRAMES = 4096  # frames per STFT chunk in clip_features: bounds its memory on long files


@lru_cache(maxsize=None)
def _uncentred_filterbank(fe: FrontEnd) -> torch.nn.Module:
    """The front end's filterbank without centring, for chunks cut from an already padded clip."""
    if fe.scale == "linear":
        lin = _LinearFilterbank(fe)
        lin.spec = torchaudio.transforms.Spectrogram(n_fft=fe.n_fft, win_length=fe.win_length, hop_length=fe.hop,
                                                     power=2.0, center=False)
        return lin.eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="At least one mel filterbank")
        return torchaudio.transforms.MelSpectrogram(
            sample_rate=TARGET_SR, n_fft=fe.n_fft, win_length=fe.win_length, hop_length=fe.hop,
            f_min=fe.f_min, f_max=fe.f_max, n_mels=fe.n_mels, mel_scale=fe.mel_scale, center=False).eval()


@torch.no_grad()
def clip_features(fe: FrontEnd, samples: torch.Tensor) -> torch.Tensor:
    """`compute(fe, whole_clip)[0]` for a clip of any length: the first `frames` frames, normalised
    with the statistics of the whole clip (the seed app's way), with the STFT taken in chunks of
    frames so a long file does not need its whole spectrogram in memory.

    A centred STFT is an uncentred one over the clip reflect-padded by n_fft // 2 on each side,
    so chunk k's frames come from the padded samples they cover and match the whole-clip ones.
    """
    x = samples.float().reshape(-1)
    if len(x) <= fe.window_samples or len(x) <= fe.n_fft // 2:
        return compute(fe, x)[0]
    pad = fe.n_fft // 2
    padded = torch.nn.functional.pad(x[None, None], (pad, pad), mode="reflect")[0, 0]
    total = fe.frames_of(len(x))
    fb = _uncentred_filterbank(fe)
    heads, kept, s1, s2, count = [], 0, 0.0, 0.0, 0
    for t0 in range(0, total, CLIP_CHUNK_FRAMES):
        t1 = min(total, t0 + CLIP_CHUNK_FRAMES)
        m = fb(padded[t0 * fe.hop: (t1 - 1) * fe.hop + fe.n_fft][None])[0]   # [n_mels, t1 - t0]
        if fe.log:
            m = torch.log(m + fe.log_eps)
        if kept < fe.frames:
            heads.append(m[:, : fe.frames - kept].clone())
            kept += heads[-1].shape[-1]
        m64 = m.double()
        s1, s2, count = s1 + float(m64.sum()), s2 + float((m64 * m64).sum()), count + m.numel()
    head = torch.cat(heads, dim=-1)
    if fe.norm == "clip_z":
        mean = s1 / count
        std = ((s2 - s1 * s1 / count) / max(1, count - 1)) ** 0.5   # unbiased, as torch's std
        head = (head - mean) / (std if std > 0 else 1.0)
    if head.shape[-1] < fe.frames:
        head = torch.nn.functional.pad(head, (0, fe.frames - head.shape[-1]))
    return head.float().contiguous()


# The seed's front end A (SENet, ResNet, Res2Net, GNN): MelSpectrogram(16k, 2048, 512, 50 mels),
# no log, clip z-norm, first 250 frames (8.0 s: a clip of at most 127,999 samples is one window).
SEED_A = FrontEnd("seed_mel50", n_fft=2048, hop=512, n_mels=50, frames=250, norm="clip_z",
                  description="seed front end A: power mel (50 bins), per-clip z-norm, 250 frames")
# The seed's front end B (PC-DARTS, LSTM): MelSpectrogram() defaults, no log, no norm, 200 frames.
SEED_B = FrontEnd("seed_mel128", n_fft=400, hop=200, n_mels=128, frames=200,
                  description="seed front end B: power mel (128 bins, torchaudio defaults), 200 frames")
# The project's front end: 25 ms / 10 ms log-mel, 64 bins up to 7.6 kHz, 3 s windows,
# per-window z-norm (gain-invariant), short clips tiled instead of zero-padded (padding is a shortcut).
LOGMEL64 = FrontEnd("logmel64", n_fft=512, win_length=400, hop=160, n_mels=64, frames=301,
                    f_min=20.0, f_max=7600.0, log=True, norm="clip_z", pad="repeat",
                    description="log-mel 64 bins (20-7600 Hz), 25 ms / 10 ms, per-window z-norm, "
                                "3 s windows, short clips tiled")

# The project's linear-frequency twin of LOGMEL64: 64 triangular filters evenly spaced over 0-8 kHz.
LOGLIN64 = FrontEnd("loglin64", n_fft=512, win_length=400, hop=160, n_mels=64, frames=301,
                    f_min=0.0, f_max=8000.0, log=True, norm="clip_z", pad="repeat", scale="linear",
                    description="log linear-frequency filterbank, 64 bands (0-8000 Hz, 125 Hz apart), "
                                "25 ms / 10 ms, per-window z-norm, 3 s windows, short clips tiled")

FRONT_ENDS = {fe.name: fe for fe in (SEED_A, SEED_B, LOGMEL64, LOGLIN64)}
