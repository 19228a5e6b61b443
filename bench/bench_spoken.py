"""What the language and speech check (core/spoken.py) and the Whisper encoders cost, measured.

    python bench/bench_spoken.py [--threads 2] [--rounds 5]

Prints a markdown table: loading multilingual Whisper base (encoder + decoder) once, the check
per file (always 30 s of padded audio, so its cost does not depend on the file's length), and
one 4 s window through the tiny.en and base encoders (what a `whisper` detector pays per window).
Peak RSS is the process's, after everything ran.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _median_s(fn, rounds: int) -> float:
    fn()                                     # warm-up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    from core.models.whisper import WHISPER_LOGMEL80, shared_encoder
    from core.models.whisper_decoder import load_language_id
    from core.spoken import check_spoken

    t = time.perf_counter()
    lid = load_language_id()
    load_s = time.perf_counter() - t
    import core.models.whisper_decoder as wd
    wd.shared_language_id = lambda: lid      # the check uses the instance loaded above

    rng = np.random.default_rng(0)
    rows = [("load Whisper base encoder + decoder (once per process)", load_s * 1000)]
    for seconds in (3, 30, 120):
        x = (0.05 * rng.standard_normal(seconds * 16000)).astype(np.float32)
        rows.append((f"spoken check, {seconds} s file", _median_s(lambda: check_spoken(x), a.rounds) * 1000))
    window = torch.from_numpy((0.05 * rng.standard_normal((1, WHISPER_LOGMEL80.window_samples))).astype(np.float32))
    for name in ("tiny.en", "base"):
        enc = shared_encoder(name)
        mel = WHISPER_LOGMEL80(window)
        with torch.no_grad():
            ms = _median_s(lambda: enc.layer_outputs(mel), a.rounds) * 1000
        rows.append((f"{name} encoder, one 4 s window (all layers)", ms))
    peak_mb = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak_mb = int(line.split()[1]) / 1024
    print(f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
          f"{os.cpu_count()} CPUs; torch threads {a.threads}; load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}; median of {a.rounds}")
    print(f"- peak RSS of the process: {peak_mb:.0f} MB\n")
    print("| what | ms |\n|---|---|")
    for what, ms in rows:
        print(f"| {what} | {ms:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
