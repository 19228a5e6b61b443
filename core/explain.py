"""Where in frequency, not only in time: an occlusion map of one model on one window.

The timeline says *when* a file looks fake; this says *which bands* of that moment carry the
model's suspicion. The model's own input features (its front end's `[n_mels, frames]` rows
for the window) are cut into `bands x cells` time-frequency patches; each patch in turn is
replaced by the features' mean and the window scored again. The map is the drop in P(fake):
a patch whose removal lowers P(fake) a lot is where the model looks. Occlusion needs nothing
from the network but its forward pass, so it works for any model whose front end is a
`FrontEnd` with `n_mels` frequency rows (the seed's and the project's CNNs, the GNN and LSTMs,
a Whisper log-mel model), at the cost of `bands * cells` forward passes, batched.

>>> from core.loading import load_set                                  # doctest: +SKIP
>>> m = load_set("seed", models="resnet").models[0]                    # doctest: +SKIP
>>> occ = occlusion_map(m, samples[16000:16000 + m.spec.front_end.window_samples])  # doctest: +SKIP
>>> occ.drop.shape, occ.freq_hz[-1] < 8000                             # doctest: +SKIP
((8, 10), True)

No streamlit here, and nothing from core.training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .audio import TARGET_SR
from .decoding import open_audio
from .errors import ConfigError
from .features import FrontEnd
from .loading import LoadedModel

DEFAULT_BANDS = 8
DEFAULT_CELLS = 10


@dataclass
class OcclusionMap:
    """The drop in P(fake) when each time-frequency patch of the model's input is hidden."""

    model: str
    p_fake: float               # P(fake) of the window as it is
    drop: np.ndarray            # [bands, cells]: p_fake minus P(fake) with that patch replaced by the mean
    freq_hz: np.ndarray         # [bands] centre of each group of rows (Hz)
    freq_lo_hz: np.ndarray      # [bands] lowest row centre of each group
    freq_hi_hz: np.ndarray      # [bands] highest row centre of each group
    time_s: np.ndarray          # [cells] centre of each time cell, seconds from the window's start
    cell_s: float               # width of a time cell (s)


def _hz_to_mel(f: np.ndarray, scale: str) -> np.ndarray:
    if scale == "slaney":   # linear below 1 kHz, logarithmic above (librosa's default)
        lin = f / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log, lin)
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray, scale: str) -> np.ndarray:
    if scale == "slaney":
        lin = m * (200.0 / 3)
        log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log, lin)
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def band_centres_hz(fe: FrontEnd) -> np.ndarray:
    """Centre frequency of each of the front end's `n_mels` rows: evenly spaced in Hz for a linear
    filterbank, in mel (HTK or Slaney, as the front end says) otherwise, as torchaudio builds them."""
    f_max = fe.f_max or TARGET_SR / 2
    if fe.scale == "linear":
        return np.linspace(fe.f_min, f_max, fe.n_mels + 2)[1:-1]
    lo, hi = _hz_to_mel(np.array([fe.f_min, f_max], dtype=float), fe.mel_scale)
    return _mel_to_hz(np.linspace(lo, hi, fe.n_mels + 2)[1:-1], fe.mel_scale)


def read_span(source, start_s: float, end_s: float, name: str | None = None) -> np.ndarray:
    """The 16 kHz mono samples of [start_s, end_s) of a file (path, bytes or stream), decoded
    as a stream so only that span is kept, however long the file."""
    a, b = int(round(start_s * TARGET_SR)), int(round(end_s * TARGET_SR))
    parts, pos = [], 0
    with open_audio(source, name) as reader:   # untrusted uploads: in a limited child, as for scoring
        for block in reader.blocks():
            lo, hi = max(a - pos, 0), min(b - pos, len(block))
            if lo < hi:
                parts.append(block[lo:hi])
            pos += len(block)
            if pos >= b:
                break
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _front_end(model: LoadedModel) -> FrontEnd:
    fe = model.spec.front_end
    if not isinstance(fe, FrontEnd) or fe.n_mels < 1:
        raise ConfigError(f"{model.name}: its front end is not a FrontEnd with frequency rows; "
                          "an occlusion map needs one")
    return fe


def _occluded(feats: torch.Tensor, patches: list[tuple[slice, slice]], fill: float) -> torch.Tensor:
    """One copy of `feats` ([1, rows, frames]) per patch, that patch set to `fill`."""
    batch = feats.repeat(len(patches), 1, 1)
    for i, (rows, frames) in enumerate(patches):
        batch[i, rows, frames] = fill
    return batch


@torch.no_grad()
def occlusion_map(model: LoadedModel, window: np.ndarray, bands: int = DEFAULT_BANDS,
                  cells: int = DEFAULT_CELLS, batch_size: int = 16) -> OcclusionMap:
    """Occlude `bands x cells` patches of `model`'s features of `window` (16 kHz samples).

    Rows are grouped into `bands` contiguous frequency groups, and the frames that hold the
    window's audio (not the padding after a short one) into `cells` time cells; each patch is
    replaced by the mean of the window's features, which is what "nothing there" means after
    the front end's normalisation. Raises ConfigError for a model without a mel-like front end.
    """
    fe = _front_end(model)
    x = torch.as_tensor(np.asarray(window, dtype=np.float32)).reshape(1, -1)
    if x.shape[-1] <= fe.n_fft // 2:
        raise ConfigError(f"{model.name}: a window of {x.shape[-1]} samples is too short to frame")
    feats = fe(x).float()                                      # [1, n_mels, frames]
    n_rows, n_frames = feats.shape[1], feats.shape[2]
    used = max(1, min(n_frames, fe.frames_of(x.shape[-1])))    # frames that hold audio, not padding
    row_groups = [g for g in np.array_split(np.arange(n_rows), min(bands, n_rows)) if len(g)]
    frame_groups = [g for g in np.array_split(np.arange(used), min(cells, used)) if len(g)]
    patches = [(slice(int(r[0]), int(r[-1]) + 1), slice(int(t[0]), int(t[-1]) + 1))
               for r in row_groups for t in frame_groups]
    fill = float(feats.mean())
    base = float(model.p_fake(feats)[0])
    scores = []
    for i in range(0, len(patches), max(1, batch_size)):
        scores.append(model.p_fake(_occluded(feats, patches[i:i + batch_size], fill)).float().cpu().numpy())
    drop = base - np.concatenate(scores).reshape(len(row_groups), len(frame_groups))
    centres = band_centres_hz(fe)
    frame_s = fe.hop / TARGET_SR
    return OcclusionMap(
        model=model.name, p_fake=base, drop=drop.astype(np.float32),
        freq_hz=np.array([centres[g].mean() for g in row_groups]),
        freq_lo_hz=np.array([centres[g[0]] for g in row_groups]),
        freq_hi_hz=np.array([centres[g[-1]] for g in row_groups]),
        time_s=np.array([(t[0] + t[-1]) / 2 * frame_s for t in frame_groups]),   # frame t is centred on t * hop
        cell_s=float(np.mean([len(t) for t in frame_groups]) * frame_s))
