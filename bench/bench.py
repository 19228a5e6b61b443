"""Speed and memory of the inference engine, measured (never asserted in tests).

    python bench/bench.py                       # seed-shape set (random weights) + shipped set if present
    python bench/bench.py --quick               # a small run (fewer clips, shorter audio, 1 vs 10 min)
    python bench/bench.py --models resnet,gnn,darts,lstm --record bench/RESULTS.md

Prints a markdown report:
  * per model: ms per 10 s of audio on the batch path (windows batched, front end shared,
    batch norms folded, pools before activations, conv weights channels-last), the same with
    `--precision bf16`, and on the naive path the seed uses (one window at a time, batch size 1,
    the model computing its own features, the model exactly as built and loaded), with the ratios;
  * the ensemble's real-time factor (seconds of compute per second of audio, decoding included);
  * batch throughput (files/s) on synthetic clips of 3-15 s through `run_batch` (the CLI's
    `batch`) in fp32 and bf16, and the naive path over the same clips, one file at a time, with
    the ratios, and how far bf16's scores and verdicts are from fp32's;
  * peak RSS of each measurement (each runs in its own subprocess; VmHWM from /proc, which unlike
    `resource.getrusage` does not inherit the driver's peak across fork+exec);
  * peak RSS when scoring a 10 min and a 2 h file (synthesised to a temporary file in
    blocks), to show that memory does not grow with the length of the audio.

The seed-shape set is built with random weights into a temporary folder (speed does not
depend on the values); the shipped set is measured when assets/models holds its weights.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SR = 16_000
ALL = "senet,resnet,res2net,gnn,darts,lstm"


# ============================================================================ synthetic audio


def synth(seconds: float, sr: int, seed: int):
    """Noise + gliding harmonic tones with a syllable-rate envelope (no exact silence)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    f0 = 110 + 60 * rng.random() + 30 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 6))
    ph = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 6))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 3.5 * t + rng.uniform(0, 6)) ** 2
    x = 0.15 * x + 0.01 * rng.standard_normal(n)
    return (x / (np.abs(x).max() + 1e-9) * 0.7).astype(np.float32)


def write_clips(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n clips of 3-15 s, mixed rates (16/22.05/44.1 kHz) and formats (wav PCM16, flac)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        sr = (16000, 22050, 44100)[i % 3]
        ext = ("wav", "flac")[(i // 3) % 2]
        p = folder / f"clip{i:03d}.{ext}"
        sf.write(p, synth(float(rng.uniform(3, 15)), sr, seed + i), sr, subtype="PCM_16")
        out.append(p)
    return out


def write_long(path: Path, seconds: float, sr: int = 22050, block_s: float = 60.0) -> Path:
    """A long file written block by block (never whole in memory)."""
    import soundfile as sf

    with sf.SoundFile(path, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        done, i = 0.0, 0
        while done < seconds:
            s = min(block_s, seconds - done)
            x = synth(s, sr, 1000 + i)
            if i % 5 == 4:
                x[: len(x) // 4] *= 0.001  # some quiet stretches
            f.write(x)
            done += s
            i += 1
    return path


def write_seed_weights(folder: Path, models: list[str]) -> Path:
    import torch

    from core.models.registry import get_set

    folder.mkdir(parents=True, exist_ok=True)
    s = get_set("seed")
    for name in models:
        spec = s.spec(name)
        torch.manual_seed(0)
        torch.save(spec.build({}).state_dict(), folder / spec.checkpoint)
    return folder


# ============================================================================ phases (each in a subprocess)


def _rss_mb() -> float:
    """Peak resident set of this process image, in MB.

    Linux's `getrusage().ru_maxrss` carries the parent's peak across fork+exec (so a child looks
    at least as big as the bench driver was); VmHWM in /proc/self/status belongs to this image
    only. getrusage is the fallback where /proc is missing.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process so far: less sensitive to a shared machine than wall time."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _detector(cfg: dict, models: str, **kw):
    import torch

    from core.inference import Detector

    torch.set_num_threads(cfg["threads"])
    return Detector.from_set(cfg["set"], models=models, weights_dir=cfg.get("weights_dir"),
                             allow_download=False, **kw)


def seed_way(det) -> list:
    """The detector's models as the seed's code runs them: built by the registry and filled from the
    same checkpoint, nothing else (batch norms unfolded, PyTorch's default NCHW layout, float32).
    The engine's own modules (core/execution.py) are left as they are, so both paths can be
    measured in one process."""
    import dataclasses

    from core.weights import load_weights

    return [dataclasses.replace(m, module=load_weights(m.spec.build(m.card), m.checkpoint.path))
            for m in det.models]


def _naive_file(det, models, samples) -> dict:
    """The seed's way, extended to the same windows: each model on its own, one window at a time,
    its features computed for it alone, batch size 1."""
    import numpy as np
    import torch

    from core.features import compute
    from core.inference import window_starts

    out = {}
    for m in models:
        fe = m.spec.front_end
        win, hop = det.window_samples(fe), det.hop_samples(fe)
        ps = []
        for a, b in window_starts(len(samples), win, hop):
            feats = compute(fe, torch.from_numpy(np.ascontiguousarray(samples[a:b]))[None])
            ps.append(float(m.p_fake(feats)[0]))
        out[m.name] = float(np.mean(ps))
    return out


def phase_permodel(cfg: dict) -> dict:
    """ms per 10 s of audio for one model: batch path vs naive path, on the same audio."""
    from core.audio import AudioFacts

    det = _detector(cfg, cfg["model"], batch_size=cfg["batch_size"])
    x = synth(cfg["seconds"], SR, 7)
    import numpy as np

    facts = AudioFacts("bench", "WAV", "FLOAT", SR, 1, duration_s=len(x) / SR,
                       peak_dbfs=float(20 * np.log10(np.abs(x).max())))
    naive_models = seed_way(det)
    det.score_samples(x[: 3 * SR], facts)  # warm-up (allocations, lazy init)
    _naive_file(det, naive_models, x[: 3 * SR])
    naive_x = x[: int(cfg["naive_seconds"] * SR)]
    batch_s = bf16_s = naive_s = float("inf")
    for _ in range(cfg.get("repeat", 2)):  # best of n: the machine may be shared
        t0 = time.perf_counter()
        det.score_samples(x, facts)
        batch_s = min(batch_s, time.perf_counter() - t0)
        det.precision = "bf16"
        det.score_samples(x[: 3 * SR], facts)  # warm-up: autocast's first call
        t0 = time.perf_counter()
        det.score_samples(x, facts)
        bf16_s = min(bf16_s, time.perf_counter() - t0)
        det.precision = "fp32"
        t0 = time.perf_counter()
        _naive_file(det, naive_models, naive_x)
        naive_s = min(naive_s, time.perf_counter() - t0)
    return {"model": cfg["model"], "front_end": det.models[0].spec.front_end.name,
            "batch_ms_per_10s": 1000 * batch_s / (len(x) / SR / 10),
            "bf16_ms_per_10s": 1000 * bf16_s / (len(x) / SR / 10),
            "naive_ms_per_10s": 1000 * naive_s / (len(naive_x) / SR / 10),
            "params_m": sum(p.numel() for p in det.models[0].module.parameters()) / 1e6,
            "rss_mb": _rss_mb()}


def phase_ensemble(cfg: dict) -> dict:
    """Real-time factor of the whole selection on one file (decoding included)."""
    import soundfile as sf

    det = _detector(cfg, cfg["models"], batch_size=cfg["batch_size"])
    p = Path(cfg["tmp"]) / "ensemble.wav"
    sf.write(p, synth(cfg["seconds"], 44100, 3), 44100, subtype="PCM_16")
    det.score(write_short(Path(cfg["tmp"]) / "warm.wav"))
    t0 = time.perf_counter()
    det.score(p)
    el = time.perf_counter() - t0
    return {"rtf": el / cfg["seconds"], "seconds": cfg["seconds"], "elapsed": el, "rss_mb": _rss_mb()}


def write_short(p: Path) -> Path:
    import soundfile as sf

    if not p.exists():
        sf.write(p, synth(3.0, SR, 1), SR)
    return p


def phase_batch(cfg: dict) -> dict:
    """run_batch (the CLI's batch) over the clips: decoding in threads, windows batched."""
    from core.batch import run_batch

    import csv

    det = _detector(cfg, cfg["models"], batch_size=cfg["batch_size"], precision=cfg.get("precision", "fp32"))
    det.score(write_short(Path(cfg["tmp"]) / "warm.wav"))
    out = Path(cfg["tmp"]) / f"batch_{os.getpid()}.csv"
    c0, t0 = _cpu_s(), time.perf_counter()
    s = run_batch([Path(c) for c in cfg["clips"]], out, det, resume=False)
    el, cpu = time.perf_counter() - t0, _cpu_s() - c0
    assert s.scored == len(cfg["clips"]), s.text()
    with open(out, newline="") as f:  # the scores, to compare precisions
        scores = {r["file"]: dict({k[7:]: float(v) for k, v in r.items() if k.startswith("p_fake_") and v},
                                  verdict=r["verdict"]) for r in csv.DictReader(f)}
    return {"files": len(cfg["clips"]), "elapsed": el, "files_per_s": len(cfg["clips"]) / el,
            "audio_s": s.audio_s, "cpu_s": cpu, "rss_mb": _rss_mb(), "scores": scores,
            "precision": det.precision}


def phase_naive(cfg: dict) -> dict:
    """One file at a time, decoded whole, each model on its own windows with batch size 1."""
    from core.audio import load_audio

    det = _detector(cfg, cfg["models"], batch_size=1)
    models = seed_way(det)
    _naive_file(det, models, synth(3.0, SR, 1))
    audio_s = 0.0
    c0, t0 = _cpu_s(), time.perf_counter()
    for c in cfg["clips"]:
        a = load_audio(c)
        audio_s += a.duration_s
        _naive_file(det, models, a.samples)
    el, cpu = time.perf_counter() - t0, _cpu_s() - c0
    return {"files": len(cfg["clips"]), "elapsed": el, "files_per_s": len(cfg["clips"]) / el,
            "audio_s": audio_s, "cpu_s": cpu, "rss_mb": _rss_mb()}


def phase_long(cfg: dict) -> dict:
    """Score one long file through the streaming path; report peak RSS before and after."""
    det = _detector(cfg, cfg["models"], batch_size=cfg["batch_size"])
    before = _rss_mb()
    t0 = time.perf_counter()
    res = det.score(cfg["path"])
    el = time.perf_counter() - t0
    return {"duration_s": res.facts.duration_s, "elapsed": el, "rss_loaded_mb": before, "rss_mb": _rss_mb(),
            "windows": {k: len(v.windows) for k, v in res.models.items()}}


PHASES = {"permodel": phase_permodel, "ensemble": phase_ensemble, "batch": phase_batch,
          "naive": phase_naive, "long": phase_long}


def run_phase(name: str, cfg: dict, timeout: float | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]), HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--phase", name, "--config", json.dumps(cfg)],
                       capture_output=True, text=True, env=env, timeout=timeout)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"phase {name} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    out = json.loads(lines[-1][7:])
    _log(f"  {name} {cfg.get('model') or cfg.get('models')}: {time.perf_counter() - t0:.1f} s")
    return out


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ============================================================================ report


def machine_facts(threads: int) -> list[str]:
    import torch

    from core.execution import bf16_native

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return [f"- date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
            f"- machine: {cpu}, {os.cpu_count()} logical CPUs{mem}; {platform.system()} {platform.release()}",
            f"- Python {platform.python_version()}, torch {torch.__version__}, torch threads {threads}; "
            f"native bfloat16 (oneDNN): {'yes' if bf16_native() else 'no'}",
            f"- load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}"]


def fmt(x: float, nd: int = 1) -> str:
    return f"{x:,.{nd}f}"


def bench_set(set_name: str, models: list[str], cfg0: dict, clips: list[Path], naive_clips: list[Path],
              args) -> list[str]:
    cfg = dict(cfg0, set=set_name)
    sel = ",".join(models)
    md = [f"### Set `{set_name}`" + (" (seed shapes, random weights)" if set_name == "seed" else ""),
          "", f"Models: {sel}. Hop 50 %, batch size {cfg['batch_size']} on the batch path.", "",
          "| model | front end | params (M) | batch path ms / 10 s audio | naive ms / 10 s audio | speed-up "
          "| batch path, bf16: ms / 10 s | bf16 speed-up | peak RSS (MB) |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in models:
        naive_seconds = args.naive_seconds_slow if m == "senet" else args.naive_seconds
        r = run_phase("permodel", dict(cfg, model=m, seconds=args.permodel_seconds, naive_seconds=naive_seconds))
        md.append(f"| {m} | {r['front_end']} | {fmt(r['params_m'])} | {fmt(r['batch_ms_per_10s'])} | "
                  f"{fmt(r['naive_ms_per_10s'])} | {r['naive_ms_per_10s'] / r['batch_ms_per_10s']:.1f}x | "
                  f"{fmt(r['bf16_ms_per_10s'])} | {r['naive_ms_per_10s'] / r['bf16_ms_per_10s']:.1f}x | "
                  f"{fmt(r['rss_mb'], 0)} |")
    e = run_phase("ensemble", dict(cfg, models=sel, seconds=args.ensemble_seconds))
    md += ["", f"Ensemble of all {len(models)} on a {e['seconds']:.0f} s 44.1 kHz file (decode + resample "
           f"included): **real-time factor {e['rtf']:.3f}** ({1 / e['rtf']:.1f}x faster than real time), "
           f"peak RSS {fmt(e['rss_mb'], 0)} MB.", ""]
    b_all = run_phase("batch", dict(cfg, models=sel, clips=[str(c) for c in clips]))
    # the ratio: batch (fp32, bf16) and naive on the same subset, alternated (best of `rounds`) so
    # that all see the same share of a machine that may be busy with other work
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for key, phase, extra in (("fp32", "batch", {}), ("bf16", "batch", {"precision": "bf16"}),
                                  ("naive", "naive", {})):
            r = run_phase(phase, dict(cfg, models=sel, clips=[str(c) for c in naive_clips], **extra))
            if key not in best or r["elapsed"] < best[key]["elapsed"]:
                best[key] = r
    b_sub, b16, nv = best["fp32"], best["bf16"], best["naive"]
    ratio, ratio16 = b_sub["files_per_s"] / nv["files_per_s"], b16["files_per_s"] / nv["files_per_s"]
    cpu_ratio = nv["cpu_s"] / b_sub["cpu_s"]
    diffs = [abs(b16["scores"][f][k] - v) for f, row in b_sub["scores"].items() for k, v in row.items()
             if k != "verdict" and k in b16["scores"].get(f, {})]
    flips = sum(b16["scores"][f]["verdict"] != row["verdict"] for f, row in b_sub["scores"].items())

    def row(label, r):
        return (f"| {label} | {r['files']} | {fmt(r['audio_s'], 0)} | {fmt(r['elapsed'])} | {fmt(r['cpu_s'])} | "
                f"{r['files_per_s']:.2f} | {r['audio_s'] / r['elapsed']:.1f} | {fmt(r['rss_mb'], 0)} |")

    md += ["| path | clips | audio (s) | wall time (s) | CPU time (s) | files / s | audio s / s | peak RSS (MB) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|",
           row("batch (`run_batch`: decoding in threads, shared front ends, batched windows)", b_all),
           row("batch, on the naive subset", b_sub),
           row("batch with `--precision bf16`, on the naive subset", b16),
           row("naive (the seed's way: one file at a time, per-model features, batch size 1, models as built)", nv),
           "", f"**Batch path vs naive path on the same {nv['files']} clips: {ratio:.1f}x the throughput in fp32, "
           f"{ratio16:.1f}x with `--precision bf16`** (wall clock; target >= 5x); fp32: {cpu_ratio:.1f}x less "
           f"CPU time. bf16 against fp32 on these clips: max |P(fake) difference| {max(diffs, default=0):.1e} "
           f"over {len(diffs)} model and ensemble scores, {flips} of {len(b_sub['scores'])} ensemble verdicts "
           "changed.", ""]
    return md


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=ALL, help="comma-separated models to measure (default: all six)")
    ap.add_argument("--set", dest="sets", default="both", choices=["seed", "shipped", "both"],
                    help="which sets: the seed-shape set (random weights), the shipped set (if its weights "
                         "are in assets/models), or both (default)")
    ap.add_argument("--clips", type=int, default=200, help="synthetic clips for batch throughput (default 200)")
    ap.add_argument("--naive-clips", type=int, default=40,
                    help="clips (an evenly spaced subset) for the naive path, which is slow (default 40)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all CPUs)")
    ap.add_argument("--batch-size", type=int, default=32, help="windows per model call on the batch path")
    ap.add_argument("--long-models", default="resnet,lstm",
                    help="models for the 10 min vs 2 h memory check (default resnet,lstm: one per front end)")
    ap.add_argument("--no-long", action="store_true", help="skip the long-file memory check")
    ap.add_argument("--quick", action="store_true",
                    help="a small run: 30 clips (10 naive), 30 s per-model audio, 1 min vs 10 min long files")
    ap.add_argument("--rounds", type=int, default=1,
                    help="batch-vs-naive rounds on the subset, alternated; the best of each is kept (default 1)")
    ap.add_argument("--repeat", type=int, default=2, help="per-model timings: best of this many runs (default 2)")
    ap.add_argument("--record", metavar="MD", help="also write the report to this markdown file")
    ap.add_argument("--note", default="", help="a line added to the report (e.g. what else was running)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.phase:
        print("RESULT " + json.dumps(PHASES[args.phase](json.loads(args.config))), flush=True)
        return 0

    args.permodel_seconds = 30.0 if args.quick else 60.0
    args.naive_seconds = 15.0 if args.quick else 30.0
    args.naive_seconds_slow = 10.0 if args.quick else 16.0
    args.ensemble_seconds = 30.0 if args.quick else 60.0
    if args.quick:
        args.clips, args.naive_clips = min(args.clips, 30), min(args.naive_clips, 10)
    long_cases = [(60.0, "1 min"), (600.0, "10 min")] if args.quick else [(600.0, "10 min"), (7200.0, "2 h")]

    from core.models.registry import get_set, select_models
    from core.weights import resolve_checkpoint

    seed_names = {s.name for s in get_set("seed").specs}
    wanted = [m.strip() for m in (args.models or "").split(",") if m.strip()] or None
    models = [s.name for s in select_models(get_set("seed"), [m for m in wanted if m in seed_names] if wanted
                                            else None)]
    shipped_models = [s.name for s in select_models(get_set("shipped"), wanted)]   # may hold whisper
    tmp = Path(tempfile.mkdtemp(prefix="deepfake_bench_"))
    t_start = time.perf_counter()
    try:
        _log(f"writing {args.clips} clips and seed-shape weights to {tmp}")
        clips = write_clips(tmp / "clips", args.clips)
        step = max(1, len(clips) // max(1, args.naive_clips))
        naive_clips = clips[::step][: args.naive_clips]
        wdir = write_seed_weights(tmp / "weights", models)
        cfg0 = {"threads": args.threads, "batch_size": args.batch_size, "tmp": str(tmp), "weights_dir": None,
                "repeat": args.repeat}

        md = ["# Inference engine benchmark", ""] + machine_facts(args.threads)
        if args.note:
            md.append(f"- note: {args.note}")
        md += ["", "Command: `python bench/bench.py " + " ".join(sys.argv[1:] if argv is None else argv) + "`",
               "", "The seed-shape set has random weights (its P(fake) values mean nothing; time and memory do not "
               "depend on them). "
               "Each measurement runs in its own subprocess; peak RSS is that process's maximum resident set "
               "(VmHWM: model weights, torch runtime and audio included).", ""]

        if args.sets in ("seed", "both"):
            md += bench_set("seed", models, dict(cfg0, weights_dir=str(wdir)), clips, naive_clips, args)
        if args.sets in ("shipped", "both"):
            shipped = get_set("shipped")
            try:
                for s in select_models(shipped, shipped_models):
                    resolve_checkpoint(shipped, s, None, allow_download=False)
                md += bench_set("shipped", shipped_models, cfg0, clips, naive_clips, args)
            except Exception as e:  # no shipped weights yet
                md += ["### Set `shipped`", "", f"Not measured: {' '.join(str(e).split())[:300]}", ""]

        if not args.no_long:
            long_models = [s.name for s in select_models(get_set("seed"), args.long_models)]
            lw = write_seed_weights(tmp / "weights", [m for m in long_models if m not in models]) if \
                any(m not in models for m in long_models) else wdir
            md += ["### Memory: a long file is streamed", "",
                   f"Seed-shape {', '.join(long_models)}; the file is 22.05 kHz mono PCM16 WAV, decoded in "
                   "blocks, resampled and cut into windows as it streams.", "",
                   "| file | peak RSS after loading models (MB) | peak RSS after scoring (MB) | time (s) | "
                   "real-time factor | windows |", "|---|---:|---:|---:|---:|---|"]
            for seconds, label in long_cases:
                p = write_long(tmp / f"long_{int(seconds)}.wav", seconds)
                r = run_phase("long", dict(cfg0, set="seed", weights_dir=str(lw), models=",".join(long_models),
                                           path=str(p)))
                p.unlink()
                md.append(f"| {label} ({fmt(r['duration_s'], 0)} s) | {fmt(r['rss_loaded_mb'], 0)} | "
                          f"{fmt(r['rss_mb'], 0)} | {fmt(r['elapsed'])} | {r['elapsed'] / r['duration_s']:.3f} | "
                          + ", ".join(f"{k} {v}" for k, v in r["windows"].items()) + " |")
            md.append("")
        md += [f"Total bench time {time.perf_counter() - t_start:.0f} s; load average at end: "
               f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}.", ""]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = "\n".join(md)
    print(report)
    if args.record:
        Path(args.record).write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
