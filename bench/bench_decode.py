"""What decoding in a limited child costs per file, against decoding in the scoring process.

    python bench/bench_decode.py                 # prints a markdown table
    python bench/bench_decode.py --rounds 20 --long-min 30

For each kind of file: the median wall time of a whole decode (open, every 16 kHz block, the
final facts) in-process with `core.audio.AudioReader` (before) and through a warm decoder
child with `core.decoding.open_audio` (after), from a path and from bytes (an upload). Then
the one-off cost of starting a child, and the scorer's peak RSS growth while a long file
streams through a child (memory stays flat: the child sends ~2 MB blocks).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402


def tone(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sin(2 * np.pi * 3100 * t)).astype(np.float32)
    return np.stack([x] * channels, 1) if channels > 1 else x


def make_files(folder: Path) -> dict[str, Path]:
    files = {
        "wav 16 kHz mono, 3 s": ("a.wav", 3, 16_000, 1, {}),
        "wav 44.1 kHz stereo, 10 s": ("b.wav", 10, 44_100, 2, {}),
        "flac 48 kHz, 10 s": ("c.flac", 10, 48_000, 1, {"format": "FLAC"}),
        "mp3 44.1 kHz, 10 s": ("d.mp3", 10, 44_100, 1, {"format": "MP3"}),
        "ogg vorbis 44.1 kHz, 10 s": ("e.ogg", 10, 44_100, 1, {"format": "OGG", "subtype": "VORBIS"}),
    }
    out = {}
    for label, (name, seconds, sr, ch, kw) in files.items():
        sf.write(folder / name, tone(seconds, sr, ch), sr, **kw)
        out[label] = folder / name
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        m4a = folder / "f.m4a"
        subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(folder / "b.wav"), "-c:a", "aac", str(m4a)], check=True)
        out["m4a (aac, via FFmpeg) 44.1 kHz, 10 s"] = m4a
    return out


def decode_s(open_fn, source, name: str) -> float:
    t0 = time.perf_counter()
    with open_fn(source, name) as r:
        for _ in r.blocks():
            pass
    return time.perf_counter() - t0


def median_ms(open_fn, source, name: str, rounds: int) -> float:
    decode_s(open_fn, source, name)   # warm caches (and the child)
    return 1000 * statistics.median(decode_s(open_fn, source, name) for _ in range(rounds))


def child_start_s() -> float:
    from core.decode_pool import DecoderProcess

    t0 = time.perf_counter()
    child = DecoderProcess()
    child.ensure_ready()
    el = time.perf_counter() - t0
    child.stop()
    return el


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def long_file_rss(folder: Path, minutes: float) -> tuple[float, float, float]:
    """(scorer peak RSS before, after, decode seconds) for a long 44.1 kHz file streamed through a child."""
    from core.decoding import open_audio

    p = folder / "long.wav"
    with sf.SoundFile(p, "w", 44_100, 1, "PCM_16") as f:
        for _ in range(int(minutes * 6)):
            f.write(tone(10, 44_100))
    before = peak_rss_mb()
    t0 = time.perf_counter()
    with open_audio(p) as r:
        n = sum(len(b) for b in r.blocks())
    el = time.perf_counter() - t0
    assert abs(n / 16_000 - minutes * 60) < 1
    return before, peak_rss_mb(), el


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--long-min", type=float, default=10.0, help="minutes of the long file (0: skip)")
    args = ap.parse_args(argv)

    import torch

    from core.audio import AudioReader
    from core.decoding import open_audio

    print(f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; Python {platform.python_version()}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}; load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"- median of {args.rounds} decodes per cell, after one warm-up decode\n")
    print("| file | in-process ms (before) | child ms, path (after) | child ms, bytes (after) | overhead ms per file |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        for label, p in make_files(folder).items():
            data = p.read_bytes()
            before = median_ms(AudioReader, p, p.name, args.rounds)
            after_path = median_ms(open_audio, p, p.name, args.rounds)
            after_bytes = median_ms(open_audio, data, p.name, args.rounds)
            print(f"| {label} | {before:.1f} | {after_path:.1f} | {after_bytes:.1f} | {after_path - before:+.1f} |")
        starts = [child_start_s() for _ in range(3)]
        print(f"\nStarting one decoder child (imports torch and the decoders, once per child): "
              f"median {statistics.median(starts):.2f} s of {len(starts)}.")
        if args.long_min > 0:
            before, after, el = long_file_rss(folder, args.long_min)
            print(f"A {args.long_min:g}-minute 44.1 kHz wav through a child: decoded in {el:.1f} s; the scorer's peak "
                  f"RSS {before:.0f} MB before, {after:.0f} MB after (+{after - before:.0f} MB).")
    from core.decode_pool import shutdown

    shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
