"""Time the Whisper tiny.en encoder (core/models/whisper.py) on 4 s windows, on CPU.

Why: before a Whisper-feature detector goes in the registry we need to know what it costs per
window next to the compact CNNs (bench/RESULTS.md). Front end and encoder are timed apart;
the real-time factor is compute time over audio time (below 1 = faster than real time).

    python bench/bench_whisper.py --threads 1 2 --rounds 5

Measured 2026-12-01 on the project's 2-CPU machine while other jobs held about one core
(load average 1.8-2.1), median of 7: 1 thread, one 4 s window 40 ms (real-time factor 0.010),
16 windows 655 ms (41 ms a window, RTF 0.010); 2 threads, one window 130-520 ms and
16 windows 350-1190 ms (RTF 0.008-0.019): with a core taken, a second thread mostly waits.
Log-mel is 1 ms a window. ctranslate2 itself (float32, 2 threads): 26 ms / 1 window, 543 ms / 16.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models.whisper import WHISPER_LOGMEL80, load_whisper_encoder  # noqa: E402

WINDOW_S = 4.0


def _median_s(fn, rounds: int) -> float:
    fn()                                    # warm-up: allocator, oneDNN kernels
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    enc = load_whisper_encoder()
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("| threads | batch | front end ms | encoder ms | ms / window | real-time factor |")
    print("|---|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for b in args.batches:
            audio = 0.1 * torch.randn(b, int(WINDOW_S * 16000), generator=g)
            mel = WHISPER_LOGMEL80(audio)
            with torch.inference_mode():
                t_fe = _median_s(lambda: WHISPER_LOGMEL80(audio), args.rounds)
                t_enc = _median_s(lambda: enc(mel), args.rounds)
            total = t_fe + t_enc
            print(f"| {threads} | {b} | {1e3 * t_fe:.1f} | {1e3 * t_enc:.1f} | {1e3 * total / b:.1f} | "
                  f"{total / (b * WINDOW_S):.4f} |")


if __name__ == "__main__":
    main()
