"""Command line: `python -m core score|batch|models|train|evaluate|merge|synth ...`.

    python -m core score call.wav other.mp3 --set seed --models resnet,lstm --json
    python -m core batch clips/ --out results.csv
    python -m core models

Every score is P(fake): higher = more likely fake. Errors the user can act on (a bad
file, a missing checkpoint, an unknown model) print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Sequence

from .argtypes import hop_fraction, positive_float, positive_int
from .errors import DetectorError
from .execution import PRECISIONS

PROG = "python -m core"
EXIT_OK, EXIT_NOTHING_SCORED, EXIT_USER_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


# ----------------------------------------------------------------------------- options


def add_model_options(p: argparse.ArgumentParser, scoring: bool = True) -> None:
    g = p.add_argument_group("model set")
    g.add_argument("--set", dest="set_name", default="auto", choices=["auto", "seed", "shipped"],
                   help="which model set scores: 'seed' = the seed's six In-the-Wild checkpoints "
                        "(Hugging Face Hub SanthoshPrabhu/Deepfake_audio_detection, with the seed's exact "
                        "front ends), 'shipped' = the project's own models in assets/models/, 'auto' "
                        "(default) = seed when all its checkpoints are already on disk, else shipped")
    g.add_argument("--models", default=None, metavar="LIST",
                   help="comma-separated subset of senet,resnet,res2net,gnn,darts,lstm (default: all six; "
                        "senet is the slowest, gnn/darts/lstm the fastest)")
    g.add_argument("--weights-dir", default=None, metavar="DIR",
                   help="folder holding the checkpoints by their file names (e.g. "
                        "resnet_model_best_model.pth); looked at first. Default: $DEEPFAKE_WEIGHTS_DIR")
    g.add_argument("--revision", default=None, metavar="REV",
                   help="hub revision (branch, tag or commit) of the seed checkpoints, for the hub cache "
                        "and downloads. Default: $DEEPFAKE_HUB_REVISION or main")
    g.add_argument("--no-download", action="store_true",
                   help="never download from the Hugging Face Hub (also implied by HF_HUB_OFFLINE=1); "
                        "use the folder, the hub cache or the shipped weights only")
    if not scoring:
        return
    s = p.add_argument_group("scoring")
    s.add_argument("--hop", type=hop_fraction, default=0.5, metavar="FRACTION",
                   help="step between analysis windows as a fraction of the window, in (0, 1] "
                        "(default 0.5 = windows overlap by half; 1 = no overlap, fastest)")
    s.add_argument("--window", type=positive_float, default=None, metavar="SECONDS",
                   help="analysis window length in seconds for every model (default: each model's "
                        "training crop, e.g. 8.0 s for the seed CNNs/GNN, 2.5 s for seed DARTS/LSTM). "
                        "Features beyond a model's crop are cut off, so longer windows do not add evidence")
    s.add_argument("--seed-crop", action="store_true",
                   help="score only each model's first window (its training crop), normalised over the whole "
                        "clip: reproduces the seed app's number on any file, but leaves the rest of a long "
                        "file unscored. Cannot be combined with --window")
    s.add_argument("--no-speech-check", action="store_true",
                   help="skip the language and speech check (multilingual Whisper base on each file's first "
                        "30 s, about a second per file): without it, music, no speech or a language the models "
                        "barely trained on are not flagged at the verdict")
    s.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                   help="windows scored together per model call (default 32); lower it to save memory")
    s.add_argument("--workers", type=positive_int, default=2, metavar="N",
                   help="background threads decoding the next files while the models run (default 2)")
    s.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32 (default) or bf16: bfloat16 autocast, 1.3-2.5x faster conv nets on CPUs with "
                        "AMX/AVX512-BF16; scores differ from fp32 by up to about 1e-2 (bench/RESULTS.md)")
    s.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="CPU threads torch may use (default: torch's choice, usually all cores)")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Deepfake audio detection from the command line. Every score is P(fake): "
                    "higher = more likely fake. Each model's verdict compares its P(fake) with a "
                    "threshold whose value and source (model card, or 0.5 as the seed did) are printed "
                    "with it.",
        epilog=textwrap.dedent("""\
            examples:
              python -m core score call.wav --json
              python -m core score a.wav b.mp3 --set seed --models resnet,lstm
              python -m core batch recordings/ --out results.csv
              python -m core batch manifest.csv files.txt --out results.csv --no-resume
              python -m core models --set seed

            exit status: 0 = something was scored; 1 = nothing could be scored; 2 = a usage error,
            a missing or unsafe checkpoint, or an unknown model/set (one line on stderr);
            130 = interrupted."""),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sc = sub.add_parser(
        "score", help="score audio files and print per-model P(fake), verdicts and timelines",
        description="Score each file in sliding windows with every selected model. Prints a table, "
                    "or with --json one JSON document: a list with one object per file (file, audio "
                    "facts, per-model P(fake)/threshold/verdict/windows/source/sha256, ensemble, warnings, "
                    "error). A file that cannot be decoded gets an error entry; the others still score. "
                    "Exit status is non-zero only when no file could be scored.")
    sc.add_argument("files", nargs="+", metavar="FILE",
                    help="audio files: wav, flac, ogg/vorbis, opus, mp3 (m4a/aac with ffmpeg installed)")
    sc.add_argument("--json", action="store_true",
                    help="print one JSON document (a list, one object per file) instead of a table")
    sc.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_model_options(sc)
    sc.set_defaults(func=cmd_score)

    bt = sub.add_parser(
        "batch", help="score many files into a CSV (resumable, one row per file)",
        description="Score every audio file under the given folders (recursively), audio files, file "
                    "lists (.txt, one path per line) and manifest CSVs (a 'path' column; relative paths are "
                    "relative to the list's or manifest's folder) into one CSV row per file: audio facts, "
                    "one p_fake_<model> column per model, the ensemble, its verdict and an error column. "
                    "Bad files become error rows. Rows are written one complete line at a time and synced, "
                    "so an interrupted run (Ctrl-C, SIGTERM, even SIGKILL) can be rerun with the same "
                    "command: files already in the CSV are skipped and each file ends up exactly once. "
                    "Exit status is non-zero only when nothing could be scored.")
    bt.add_argument("sources", nargs="+", metavar="FOLDER_OR_FILES",
                    help="folders (scanned recursively), audio files, .txt file lists or manifest .csv files")
    bt.add_argument("--out", required=True, metavar="CSV", help="output CSV (created, or resumed if it exists)")
    bt.add_argument("--no-resume", action="store_true",
                    help="start the output CSV afresh (overwrites it) instead of skipping files already in it")
    bt.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    bt.add_argument("--no-fsync", action="store_true",
                    help="do not fsync after each row (faster on slow disks; a power cut may lose recent rows, "
                         "a killed process still loses nothing)")
    add_model_options(bt)
    from .ray_engine import add_ray_arguments  # light: imports neither ray nor torch

    add_ray_arguments(bt)
    bt.set_defaults(func=cmd_batch)

    md = sub.add_parser(
        "models", help="list model sets, their models, where each checkpoint would load from, and cards",
        description="List the model sets and their six models: family, front end, checkpoint file, where "
                    "it would be loaded from right now (folder, hub cache, shipped; never downloads), its "
                    "threshold and the threshold's source, and the reported metrics from the card.")
    md.add_argument("--json", action="store_true", help="print JSON instead of text")
    md.add_argument("--sha256", action="store_true", help="also hash each checkpoint found (slow for big files)")
    add_model_options(md, scoring=False)
    md.set_defaults(func=cmd_models, set_name=None)

    rp = sub.add_parser(
        "report", help="score one file and write its case report (one self-contained HTML file)",
        description="Score one file and write a self-contained HTML case report: file name, size and sha256, "
                    "analysis time (UTC), app version, model set with each checkpoint's source and sha256, the "
                    "assessment with P(fake), threshold, inconclusive band and their sources, every model's score, "
                    "the timeline and spectrogram with the most suspicious windows marked, the file's facts and "
                    "cautions, the models' measured accuracy on unseen sources, and a disclaimer. The page makes "
                    "no external request.")
    rp.add_argument("file", metavar="FILE", help="the audio file")
    rp.add_argument("--out", required=True, metavar="HTML", help="where the report goes")
    add_model_options(rp)
    rp.set_defaults(func=cmd_report)

    for name, help_text in (("train", "train the project's models on a labelled folder or manifest"),
                            ("evaluate", "evaluate a model set on labelled audio (EER, ROC, AUC, agreement)"),
                            ("merge", "merge training runs that differ only in --seed into one seed average, "
                                      "with exact out-of-fold validation"),
                            ("synth", "write labelled fake speech from local TTS engines (kokoro, piper, espeak, "
                                      "flite, festival) with a manifest, as extra training sources")):
        tp = sub.add_parser(name, help=help_text, description=help_text + f" (implemented in core/training/"
                            f"{_LAB_MODULES.get(name, 'train')}.py and the modules it calls).", add_help=True)
        tp.set_defaults(func=_train_entry(name))
        if _wants(argv, name):
            _add_train_arguments(name, tp)
    return parser


def _wants(argv: Sequence[str] | None, name: str) -> bool:
    """Is `name` the sub-command of this command line? (core.training is imported only then.)"""
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-")), None)
    return first == name


_LAB_MODULES = {"synth": "synth"}  # lab sub-commands outside core/training/train.py


def _train_module(command: str = "train"):
    """The core.training module behind a lab sub-command, imported only when that command runs."""
    import importlib

    pkg = __package__ or "core"
    mod = _LAB_MODULES.get(command, "train")
    try:
        train = importlib.import_module(f"{pkg}.training.{mod}")
    except ModuleNotFoundError as e:
        if e.name in (f"{pkg}.training", f"{pkg}.training.{mod}"):
            what = "training and evaluation are" if mod == "train" else f"`{command}` is"
            raise DetectorError(f"{what} not available in this checkout "
                                f"(core/training/{mod}.py is missing)") from None
        raise DetectorError(f"core/training/{mod}.py needs a package that is not installed: {e.name} "
                            "(pip install -r requirements-dev.txt)") from None
    return train


def _add_train_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    try:
        mod = _train_module(name)
        getattr(mod, f"add_{name}_arguments")(parser)
    except (DetectorError, AttributeError) as e:
        parser.set_defaults(_train_unavailable=str(e))
        parser.description = f"{parser.description} Not available here: {e}"


def _train_entry(name: str):
    def run(args: argparse.Namespace) -> int:
        if getattr(args, "_train_unavailable", None):
            raise DetectorError(args._train_unavailable)
        mod = _train_module(name)
        fn = getattr(mod, f"{name}_command", None)
        if fn is None:
            raise DetectorError(f"core/training/{_LAB_MODULES.get(name, 'train')}.py has no {name}_command()")
        return int(fn(args) or 0)
    return run


# ----------------------------------------------------------------------------- helpers


def make_detector(args: argparse.Namespace):
    from .inference import Detector

    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    det = Detector.from_set(args.set_name, models=args.models, weights_dir=args.weights_dir,
                            allow_download=not args.no_download, revision=args.revision,
                            hop_fraction=args.hop, window_s=args.window, batch_size=args.batch_size,
                            decode_workers=args.workers, precision=args.precision,
                            seed_crop=getattr(args, "seed_crop", False),
                            spoken_check=not getattr(args, "no_speech_check", True))  # off without scoring options
    for name, why in det.loaded.skipped.items():
        print(f"warning: model {name} skipped, scoring without it: {why}", file=sys.stderr)
    return det


def json_safe(obj):
    """NaN/inf are not JSON: -inf dBFS (digital silence) and friends become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _progress_bar(total: int, unit: str, disable: bool, desc: str = ""):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, disable=disable, desc=desc, dynamic_ncols=True,
                leave=False)


def _fmt_p(p) -> str:
    return "   -  " if p is None else f"{p:6.3f}"


def format_result(res, det) -> str:
    """A readable block per file: per-model P(fake), threshold and source, verdict, warnings."""
    lines = [res.file]
    if res.error:
        lines.append(f"  ERROR: {res.error}")
        return "\n".join(lines)
    f = res.facts
    ch = {1: "mono", 2: "stereo"}.get(f.channels, f"{f.channels} ch")
    lines.append(f"  {f.duration_s:.2f} s, {f.original_rate} Hz {ch}, {f.container}/{f.codec}, "
                 f"peak {f.peak_dbfs:.1f} dBFS, silence {f.silence_ratio:.0%}, "
                 f"bandwidth {f.bandwidth_hz / 1000:.1f} kHz, set {res.set_name}")
    from .spoken import spoken_rows

    heard = spoken_rows(res.spoken)
    if heard:
        lines.append("  " + "; ".join(f"{k.lower()}: {v}" for k, v in heard))
    w = max(8, *(len(n) for n in res.models))
    lines.append(f"  {'model':<{w}}  P(fake)  max    thresh  verdict  windows  weights")
    for name, m in res.models.items():
        if m.error:
            lines.append(f"  {name:<{w}}  ERROR: {m.error}")
            continue
        lines.append(f"  {name:<{w}}  {_fmt_p(m.p_fake)}  {m.max_p_fake:5.3f}  {m.threshold:6.3f}  "
                     f"{m.verdict:<7}  {len(m.windows):>7}  {m.source} {m.sha256[:12]}")
    e = res.ensemble
    if e is not None and e.p_fake is not None:
        lines.append(f"  {'ENSEMBLE':<{w}}  {_fmt_p(e.p_fake)}  {e.max_p_fake:5.3f}  {e.threshold:6.3f}  "
                     f"{e.verdict.upper():<7}  {e.source}")
    elif e is not None:
        lines.append(f"  {'ENSEMBLE':<{w}}  ERROR: {e.error}")
    by_source: dict[str, list[str]] = {}
    for name, m in res.models.items():
        by_source.setdefault(m.threshold_source or "unstated", []).append(f"{name} {m.threshold:.3g}")
    for src, items in by_source.items():
        lines.append(f"  thresholds ({src}): {', '.join(items)}")
    if e is not None:
        lines.append(f"  ensemble threshold ({e.threshold_source}): {e.threshold:.3g}")
    a = res.assessment
    if a is not None:
        lines.append(f"  ASSESSMENT: {a.label.upper()} (P(fake) {a.p_fake:.3f}; inconclusive band "
                     f"[{a.band.low:.2f}, {a.band.high:.2f}): {a.band.source})")
        for why in a.reasons:
            lines.append(f"    because {why}")
        for c in a.cautions:
            lines.append(f"    caution: {c}")
    for wmsg in res.warnings(det.shortest_window_s):
        lines.append(f"  warning: {wmsg}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- commands


def cmd_score(args: argparse.Namespace) -> int:
    det = make_detector(args)
    show = not args.no_progress and sys.stderr.isatty() and len(args.files) > 1
    results = []
    with _progress_bar(len(args.files), "file", not show, "scoring") as bar:
        for res in det.score_many([(f, f) for f in args.files]):
            results.append(res)
            bar.update(1)
            if not args.json:
                print(format_result(res, det), flush=True)
                print()
    if args.json:
        from .report import app_version, utc_now

        docs, when, version = [], utc_now(), app_version()
        for r in results:
            d = r.as_dict()
            d["warnings"] = r.warnings(det.shortest_window_s)  # including "shorter than a window"
            d.update(sha256=_sha256_of_file(r.file), analysed_at=when, app_version=version)
            docs.append(d)
        json.dump(json_safe(docs), sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print("P(fake): higher = more likely fake; verdict 'fake' when P(fake) >= threshold.")
    ok = sum(1 for r in results if r.ensemble is not None and r.ensemble.p_fake is not None)
    if ok < len(results):
        print(f"{len(results) - ok} of {len(results)} files could not be scored", file=sys.stderr)
    return EXIT_OK if ok else EXIT_NOTHING_SCORED


def _sha256_of_file(path: str) -> str | None:
    """The file's sha256, or None for what is not a regular file (a FIFO would block) or unreadable."""
    import stat

    from .weights import sha256_of

    try:
        return sha256_of(path) if stat.S_ISREG(os.stat(path).st_mode) else None
    except OSError:
        return None


def cmd_report(args: argparse.Namespace) -> int:
    from .errors import AudioError
    from .report import case_report

    import stat

    det = make_detector(args)
    try:
        if not stat.S_ISREG(os.stat(args.file).st_mode):   # a FIFO would block the read forever
            print(f"error: {args.file}: not a regular file (a pipe, socket or device)", file=sys.stderr)
            return EXIT_NOTHING_SCORED
        data = Path(args.file).read_bytes()
    except OSError as e:
        print(f"error: {args.file}: cannot read ({e.strerror or e})", file=sys.stderr)
        return EXIT_NOTHING_SCORED
    try:
        page, res = case_report(det, data, Path(args.file).name)
    except AudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_NOTHING_SCORED
    Path(args.out).write_text(page, encoding="utf-8")
    a = res.assessment
    print(f"{args.out}: {a.label if a else res.ensemble.verdict} (ensemble P(fake) {res.ensemble.p_fake:.3f})")
    return EXIT_OK


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so the batch stops between rows and says so."""


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch
    from .ray_engine import engine_of

    ray_engine = engine_of(args) == "ray"
    det = None if ray_engine else make_detector(args)  # Ray workers load their own copies
    bar = None

    def on_start(summary, todo):
        nonlocal bar
        if summary.skipped:
            print(f"resuming {summary.out_csv}: {summary.skipped} of {summary.total} files already there",
                  file=sys.stderr)
        bar = _progress_bar(todo, "file", args.no_progress, "scoring")

    def progress(done, total):
        if bar is not None:
            bar.update(done - bar.n)

    def on_term(signum, frame):
        raise _Terminated()

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        if ray_engine:
            from .ray_engine import run_ray_batch_from_args

            summary = run_ray_batch_from_args(args, progress=progress, on_start=on_start)
        else:
            summary = run_batch(args.sources, args.out, det, progress=progress, resume=not args.no_resume,
                                fsync=not args.no_fsync, on_start=on_start)
    finally:
        signal.signal(signal.SIGTERM, old)
        if bar is not None:
            bar.close()
    print(summary.text())
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.total == 0:
        print("no audio files found in: " + ", ".join(args.sources), file=sys.stderr)
        return EXIT_NOTHING_SCORED
    return EXIT_OK if summary.any_scored else EXIT_NOTHING_SCORED


def cmd_models(args: argparse.Namespace) -> int:
    from .models.registry import SETS, get_set, select_models
    from .weights import resolve_checkpoint, sha256_of, read_card

    names = [args.set_name] if args.set_name not in (None, "auto") else list(SETS)
    out = []
    for set_name in names:
        ms = get_set(set_name)
        entry = {"set": ms.name, "title": ms.title, "hub_repo": ms.hub_repo,
                 "shipped_dir": str(ms.shipped_dir) if ms.shipped_dir else None,
                 "default_threshold": ms.default_threshold, "threshold_source": ms.threshold_source,
                 "models": []}
        for spec in select_models(ms, args.models):
            m = {"name": spec.name, "family": spec.family, "front_end": spec.front_end.name,
                 "window_s": round(spec.front_end.window_s, 3), "checkpoint": spec.checkpoint,
                 "output": spec.output, "description": spec.description}
            try:
                # never downloads here: listing must be quick and offline
                ck = resolve_checkpoint(ms, spec, args.weights_dir, allow_download=False,
                                        revision=args.revision)
                m.update(found=True, path=str(ck.path), source=ck.source,
                         sha256=sha256_of(ck.path) if args.sha256 else None)
                card = read_card(ck.path) or ms.cards.get(spec.name) or {}
            except DetectorError as e:
                m.update(found=False, problem=str(e))
                card = ms.cards.get(spec.name) or {}
            m["threshold"] = card.get("threshold", ms.default_threshold)
            m["threshold_source"] = card.get("threshold_source", ms.threshold_source)
            m["card"] = card
            entry["models"].append(m)
        out.append(entry)
    if args.json:
        json.dump(json_safe(out), sys.stdout, indent=1, allow_nan=False, default=str)
        sys.stdout.write("\n")
        return EXIT_OK
    for entry in out:
        print(f"{entry['set']}: {entry['title']}")
        if entry["hub_repo"]:
            print(f"  hub: {entry['hub_repo']}")
        if entry["shipped_dir"]:
            print(f"  shipped folder: {entry['shipped_dir']}")
        for m in entry["models"]:
            where = f"{m['source']}: {m['path']}" if m["found"] else "not on disk"
            print(f"  {m['name']:<8} {m['family']:<32} front end {m['front_end']} ({m['window_s']} s)")
            print(f"           checkpoint {m['checkpoint']} -> {where}")
            if m.get("sha256"):
                print(f"           sha256 {m['sha256']}")
            print(f"           threshold {m['threshold']} ({m['threshold_source']})")
            rep = m["card"].get("reported_metrics") or m["card"].get("metrics")
            if rep:
                print("           card metrics: " + ", ".join(f"{k} {v}" for k, v in rep.items()
                                                            if not isinstance(v, (dict, list))))
        print()
    return EXIT_OK


# ----------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DetectorError as e:
        msg = " ".join(str(e).split())
        print(f"{PROG} {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `... | head`: not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
