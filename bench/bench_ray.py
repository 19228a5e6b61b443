"""Throughput of the Ray engine against the local engine on the same files.

    .venv/bin/python bench/bench_ray.py                          # seed set, 30 clips, 1 and 2 workers
    .venv/bin/python bench/bench_ray.py --set shipped --files 60
    .venv/bin/python bench/bench_ray.py --set seed --models gnn,darts,lstm --workers 1 2

Prints one markdown table row per engine run: files, seconds of audio, wall time (model
loading included: the local engine's, or Ray's actors starting and loading theirs), the time
to the first row, and audio-hours scored per CPU-hour two ways: by wall clock (audio seconds /
(wall seconds x CPUs reserved), start-up included; pessimistic on a shared machine) and by CPU
time (audio seconds / CPU seconds the scoring processes actually used, start-up excluded; what a
dedicated CPU-hour buys). Also the CPU seconds each worker spent loading the models. These
are the numbers behind the cost estimate in the README.

Weights: by default random-weight stand-ins of the set's exact architectures are written to a
temporary folder (same tensors, same compute: the speed is the real set's speed without
needing its weights); `--real-weights` uses the set as `python -m core` would find it.
Clips: the first `--files` clips of ../shared/data/manifest.csv when it is there (real speech in
wav/flac/mp3/ogg), else synthetic 3-15 s clips. Everything runs with one torch thread per CPU
used (local: 1 thread; Ray: `--cpus-per-worker` threads per actor), so the numbers compare CPU
for CPU. Needs `pip install -r requirements-ray.txt`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))


def write_stand_in_weights(set_name: str, models: list[str], folder: Path) -> None:
    """Random weights in the set's exact shapes (and cards where the architecture needs one)."""
    import torch

    from core.models.registry import get_set

    ms = get_set(set_name)
    for spec in ms.specs:
        if spec.name not in models:
            continue
        card: dict = {}
        if spec.name == "darts" and set_name == "shipped":
            from core.models.darts import SearchedDarts

            torch.manual_seed(0)
            card = {"architecture": {"genotype": SearchedDarts().derive_genotype()}}
        torch.manual_seed(0)
        module = spec.build(card)
        path = folder / spec.checkpoint
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
            if card:
                path.with_suffix(".json").write_text(json.dumps(card))
        else:
            torch.save(module.state_dict(), path)


def pick_clips(n: int, folder: Path) -> list[str]:
    manifest = SHARED / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as f:
            rows = [r for r in csv.DictReader(f) if float(r.get("duration_s") or 0) >= 1.0]
        rows.sort(key=lambda r: r["path"])
        step = max(1, len(rows) // n)  # spread over the sources, not the first folder only
        return [str(SHARED / r["path"]) for r in rows[::step][:n]]
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        secs = rng.uniform(3, 15)
        t = np.arange(int(secs * 16000)) / 16000
        x = 0.3 * np.sin(2 * np.pi * (120 + 40 * np.sin(t)) * t) + 0.02 * rng.standard_normal(t.size)
        p = folder / f"clip{i:03d}.wav"
        sf.write(p, x.astype("float32"), 16000)
        out.append(str(p))
    return out


def row(engine, set_name, models, workers, cpus, s, wall, first, cpu_s, load_cpu_s) -> dict:
    used = workers * cpus
    return {"engine": engine, "set": set_name, "models": ",".join(models), "workers x CPUs": f"{workers} x {cpus}",
            "files": s.scored + s.errors, "audio s": round(s.audio_s, 1), "wall s": round(wall, 1),
            "to first row s": "-" if first is None else round(first, 1),
            "audio-h / CPU-h (wall)": round(s.audio_s / (wall * used), 2) if wall > 0 else 0.0,
            "audio-h / CPU-h (CPU time)": round(s.audio_s / cpu_s, 2) if cpu_s > 0 else "-",
            "load CPU s / worker": round(load_cpu_s / workers, 1),
            "files/s": round((s.scored + s.errors) / wall, 2) if wall > 0 else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", dest="set_name", default="seed", choices=["seed", "shipped"])
    ap.add_argument("--models", default=None, help="subset, e.g. gnn,darts,lstm (default: all six)")
    ap.add_argument("--files", type=int, default=30)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray pool sizes to run (default 1 2)")
    ap.add_argument("--cpus-per-worker", type=int, default=1)
    ap.add_argument("--real-weights", action="store_true")
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = ap.parse_args()

    import torch

    from core.batch import run_batch
    from core.inference import Detector
    from core.models.registry import get_set, select_models
    from core.ray_engine import require_ray, run_batch_ray

    ray = require_ray()
    models = [s.name for s in select_models(get_set(args.set_name), args.models)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        weights = None
        if not args.real_weights:
            weights = tmp / "weights"
            weights.mkdir()
            write_stand_in_weights(args.set_name, models, weights)
        clips_dir = tmp / "clips"
        clips_dir.mkdir()
        files = pick_clips(args.files, clips_dir)
        list_file = tmp / "files.txt"
        list_file.write_text("\n".join(files) + "\n")
        results = []

        torch.set_num_threads(1)
        times: list[float] = []
        t0, c0 = time.monotonic(), time.process_time()
        det = Detector.from_set(args.set_name, models=models, weights_dir=weights, allow_download=False)
        c1 = time.process_time()
        s = run_batch([list_file], tmp / "local.csv", det, fsync=False,
                      progress=lambda done, total: times.append(time.monotonic() - t0))
        wall, cpu = time.monotonic() - t0, time.process_time() - c1
        results.append(row("local (1 thread)", args.set_name, models, 1, 1, s, wall, times[0] if times else None,
                           cpu, c1 - c0))

        for w in args.workers:
            t0 = time.monotonic()
            ray.init(num_cpus=w * args.cpus_per_worker, include_dashboard=False, logging_level="ERROR",
                     log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
            init_s = time.monotonic() - t0
            times, stats = [], {}
            t0 = time.monotonic()
            s = run_batch_ray([list_file], tmp / f"ray{w}.csv", args.set_name, models, weights, num_workers=w,
                              cpus_per_worker=args.cpus_per_worker, gpus_per_worker=0, allow_download=False,
                              fsync=False, stats=stats,
                              progress=lambda done, total: times.append(time.monotonic() - t0))
            wall = time.monotonic() - t0
            ray.shutdown()
            results.append(row(f"ray (local instance; its {init_s:.0f} s init not counted)", args.set_name, models,
                               w, args.cpus_per_worker, s, wall, times[0] if times else None,
                               stats.get("worker_cpu_s", 0.0), stats.get("worker_load_cpu_s", 0.0)))

        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
                   platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
        print(f"# bench_ray {date.today()} | {cpu}, {os.cpu_count()} cores | load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} | torch {torch.__version__}, ray {ray.__version__} | "
              f"{'real' if args.real_weights else 'random-weight stand-in'} weights | {len(files)} clips from "
              f"{'../shared/data' if (SHARED / 'manifest.csv').is_file() else 'synthetic audio'}")
        cols = list(results[0])
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in results:
            print("| " + " | ".join(str(r[c]) for c in cols) + " |")
        if args.json:
            print(json.dumps(results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
