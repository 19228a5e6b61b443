"""Real training clips passed through a neural codec, written as labelled fakes.

    python -m core.training.codec_resynth CACHE [CACHE ...] --models DIR --out OUT
        [--per-source 30] [--bitrates 3200,6000,9200] [--group-by bitrate|source] [--seed 0]

Why: codec-decoded speech (RVQ reconstructions, codec language models) is what the detectors miss
most on sources they never saw, and the training pool holds few such decodes. A clip and its
resynthesis share speaker, room and words, so the codec is the only thing that tells them apart.

The codec is Lyra v2 (SoundStream: encoder, residual vector quantiser, GAN decoder; Google,
Apache-2.0). Its three TFLite models (`soundstream_encoder.tflite`, `quantizer.tflite`,
`lyragan.tflite`) are in the public repository google/lyra under `lyra/model_coeffs/`; `--models`
names a folder holding them. They run with the `ai-edge-litert` interpreter (requirements-dev).
Lyra works on 20 ms frames at 16 kHz (the caches' rate): 4 bits per quantiser, so 3.2, 6 and
9.2 kbit/s use 16, 30 and 46 of its 46 quantisers.

Input: decoded caches (`core.training.decoded_pool`); only `train` clips labelled real are read.
Output: OUT/lyra/<bitrate>/<key>.wav (16-bit PCM, 16 kHz) and OUT/manifest.csv in the `synth`
manifest format (label fake, attack_type codec_resynthesis). `--group-by bitrate` makes one source
per bitrate (`codec/lyra-3200`); `--group-by source` one per source of the originals
(`codec/lyra:<source>`). Runs resume: a clip whose file and row are there is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from ..argtypes import positive_int
from ..audio import TARGET_SR
from ..errors import ConfigError
from .decoded_pool import read_index
from .synth import MANIFEST, EngineUnavailable, _append_row, _save_clip, read_manifest

FRAME = 320                    # Lyra's hop: 20 ms at 16 kHz
BITS_PER_QUANTIZER = 4
BITRATES = (3200, 6000, 9200)  # the bitrates Lyra v2 ships
MAX_SECONDS = 12.0             # the start of each original that is resynthesised
MODEL_FILES = ("soundstream_encoder.tflite", "quantizer.tflite", "lyragan.tflite")
LICENSE = "Apache-2.0 (Lyra v2 models, google/lyra); original clip's licence"


def quantizers_for(bitrate: int) -> int:
    """Quantisers used at `bitrate` bit/s: bits per 20 ms frame over 4 bits per quantiser."""
    if bitrate not in BITRATES:
        raise ConfigError(f"Lyra runs at {', '.join(map(str, BITRATES))} bit/s, not {bitrate}")
    return bitrate * FRAME // TARGET_SR // BITS_PER_QUANTIZER


class LyraCodec:
    """Encode, quantise, dequantise and decode, frame by frame. The models keep streaming state
    between calls, so every clip gets fresh interpreters."""

    def __init__(self, model_dir: str | Path):
        self.model_dir = Path(model_dir)

    def load(self) -> None:
        missing = [f for f in MODEL_FILES if not (self.model_dir / f).is_file()]
        if missing:
            raise EngineUnavailable(f"{self.model_dir} lacks {', '.join(missing)} (google/lyra, lyra/model_coeffs/)")
        try:
            from ai_edge_litert.interpreter import Interpreter  # noqa: F401
        except ImportError as err:
            raise EngineUnavailable(f"the TFLite interpreter is not installed ({err}); pip install ai-edge-litert") from err

    def _runners(self):
        from ai_edge_litert.interpreter import Interpreter

        def interp(name):
            return Interpreter(model_path=str(self.model_dir / name), num_threads=1)

        quantizer = interp("quantizer.tflite")
        return (interp("soundstream_encoder.tflite").get_signature_runner(),
                quantizer.get_signature_runner("encode"), quantizer.get_signature_runner("decode"),
                interp("lyragan.tflite").get_signature_runner())

    def resynthesize(self, x: np.ndarray, bitrate: int) -> np.ndarray:
        """16 kHz float samples in [-1, 1] -> their decode at `bitrate` (whole frames only)."""
        nq = quantizers_for(bitrate)
        encode, quantize, dequantize, decode = self._runners()
        x = np.asarray(x, np.float32)
        out = []
        for i in range(0, len(x) // FRAME * FRAME, FRAME):
            features = encode(input_audio=x[None, i:i + FRAME])["output_0"]
            codes = quantize(input_frames=features, num_quantizers=np.array(nq, np.int32))["output_0"].reshape(-1)
            indices = np.full((len(codes), 1, 1), -1, np.int32)   # unused quantisers are marked -1
            indices[:nq, 0, 0] = codes[:nq]
            lossy = dequantize(encoding_indices=indices)["output_0"]
            out.append(decode(input_audio=lossy.astype(np.float32))["output_0"].reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def pick_reals(caches: list[str], per_source: int, seed: int = 0) -> list[tuple[str, object]]:
    """Up to `per_source` real `train` clips of each source, drawn at random but fixed by `seed`,
    as (cache, clip) pairs in a stable order."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, list] = {}
    for cache in caches:
        for it in read_index(cache, "train"):
            if it.label == 0:
                by_source.setdefault(it.group, []).append((cache, it))
    picked = []
    for source in sorted(by_source):
        clips = sorted(by_source[source], key=lambda ci: ci[1].key)
        take = rng.permutation(len(clips))[:per_source]
        picked += [clips[i] for i in sorted(take)]
    return picked


def bitrate_of(key: str, bitrates: tuple[int, ...], seed: int = 0) -> int:
    """The bitrate of one clip, drawn from its key and the seed alone: the same in any run."""
    h = int(hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()[:8], 16)
    return int(bitrates[h % len(bitrates)])


def source_of(group_by: str, bitrate: int, original_source: str) -> str:
    if group_by == "bitrate":
        return f"codec/lyra-{bitrate}"
    if group_by == "source":
        return f"codec/lyra:{original_source}"
    raise ConfigError(f"--group-by is bitrate or source, not {group_by!r}")


def resynthesize_pool(caches: list[str], model_dir: str | Path, out_dir: str | Path, per_source: int = 30,
                      bitrates: tuple[int, ...] = BITRATES, group_by: str = "bitrate", seed: int = 0,
                      codec=None, progress: bool = True, log=None) -> dict:
    """Write the resyntheses and their manifest; returns counts {made, kept, failed}."""
    from tqdm import tqdm

    log = log or (lambda msg: print(msg, file=sys.stderr))
    for b in bitrates:
        quantizers_for(b)
    source_of(group_by, bitrates[0], "")
    codec = codec or LyraCodec(model_dir)
    codec.load()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    rows = read_manifest(manifest)
    counts = {"made": 0, "kept": 0, "failed": 0}
    picked = pick_reals(caches, per_source, seed)
    for cache, it in tqdm(picked, desc="lyra", unit="clip", disable=not progress, file=sys.stderr):
        bitrate = bitrate_of(it.key, bitrates, seed)
        rel = f"lyra/{bitrate}/{it.key}.wav"
        if rel in rows and (out / rel).is_file():
            counts["kept"] += 1
            continue
        try:
            x = it.audio(cache)[: int(MAX_SECONDS * TARGET_SR)]
            duration = _save_clip(out / rel, codec.resynthesize(x, bitrate), TARGET_SR)
        except Exception as err:  # one clip that fails is one missing fake, not a failed run
            counts["failed"] += 1
            log(f"codec_resynth: {it.key} ({it.group}) failed: {err}")
            continue
        row = {"path": rel, "label": "fake", "split": "train", "source_repo": source_of(group_by, bitrate, it.group),
               "generator": f"lyra-v2 soundstream {bitrate / 1000:g} kbps",
               "speaker_or_corpus": it.meta.get("speaker_or_corpus", ""), "language": it.meta.get("language", ""),
               "attack_type": "codec_resynthesis", "duration_s": f"{duration:.3f}", "sample_rate": TARGET_SR,
               "license": LICENSE, "channels": 1, "file_format": "wav", "text": "",
               "settings": json.dumps({"bitrate": bitrate, "original": it.meta.get("path", it.key),
                                       "original_source": it.group}, sort_keys=True)}
        _append_row(manifest, row)
        rows[rel] = row
        counts["made"] += 1
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.codec_resynth", description=__doc__.split("\n\n")[1])
    p.add_argument("caches", nargs="+", help="decoded caches (core.training.decoded_pool)")
    p.add_argument("--models", required=True, metavar="DIR", help="folder with Lyra's three .tflite files")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--per-source", type=positive_int, default=30, metavar="N", help="originals per real source (30)")
    p.add_argument("--bitrates", default=",".join(map(str, BITRATES)), metavar="LIST",
                   help="bitrates drawn from, one per clip (default 3200,6000,9200)")
    p.add_argument("--group-by", choices=("bitrate", "source"), default="bitrate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    try:
        bitrates = tuple(int(b) for b in a.bitrates.split(",") if b.strip())
    except ValueError:
        raise SystemExit(f"--bitrates takes comma-separated integers, not {a.bitrates!r}")
    try:
        counts = resynthesize_pool(a.caches, a.models, a.out, a.per_source, bitrates, a.group_by, a.seed,
                                   progress=not a.no_progress)
    except (ConfigError, EngineUnavailable) as err:
        print(f"codec_resynth: {err}", file=sys.stderr)
        return 2
    print(f"made {counts['made']}, kept {counts['kept']}, failed {counts['failed']}; manifest: {Path(a.out) / MANIFEST}")
    return 0 if counts["made"] or counts["kept"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
