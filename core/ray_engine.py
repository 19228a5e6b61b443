"""Batch scoring on a Ray cluster: the same rows as `core.batch.run_batch`, many machines.

    python -m core batch archive/ --out results.csv --engine ray                    # local Ray
    python -m core batch archive/ --out results.csv --engine ray --address auto     # a running cluster
    python -m core batch list.txt --out results.csv --engine ray --address ray://head:10001 --num-workers 16

How it runs:

  * the driver expands the sources exactly as the local engine does (folders, audio files,
    `.txt` file lists, manifest CSVs with a `path` column: `core.batch.expand_sources`) and
    skips files already in the output CSV (the same resume rule, the same kill-safe appends);
  * Ray Data spreads the remaining paths over a fixed pool of actors (`map_batches` with
    `ActorPoolStrategy`); each actor loads the model set once (`Detector.from_set`) and scores
    a batch of files with `Detector.score_many`, returning one row per file built by
    `core.batch.result_to_row` (a bad file is an error row, never an exception);
  * each actor's Detector decodes in limited child processes (core.decoding), so a file that
    crashes or hangs its decoder is that file's error row, never a dead actor;
  * the driver appends each row as it arrives, one complete synced line at a time, in whatever
    order the workers finish: the CSV holds the same rows as a local run, in another order.

Every worker reads the files and the weights itself, so every node needs the repository (the
same path as the driver, or on PYTHONPATH), `requirements-ray.txt`, the audio at the same path
(a shared file system) and the weights (the same `--weights-dir` on shared storage, a filled
Hugging Face cache, or hub access).

Ray is optional: this module imports without it, and asking for the Ray engine without Ray
installed raises a ConfigError that says `pip install -r requirements-ray.txt`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

from typing import TYPE_CHECKING

from .argtypes import non_negative_float, positive_int
from .errors import ConfigError, DetectorError, WeightsError

if TYPE_CHECKING:  # pragma: no cover
    from .batch import BatchSummary

# core.batch (and with it torch) is imported where it is used, so that the CLI can add the
# Ray options to its parser without paying for torch, and `core` imports without Ray.

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL_HINT = "pip install -r requirements-ray.txt"
DEFAULT_FILES_PER_BATCH = 8
MAX_BLOCKS = 50_000


# ----------------------------------------------------------------------------- optional import


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def require_ray():
    """`import ray` (with Ray Data), or a ConfigError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"the Ray engine needs Ray Data, which is not installed ({e}); install it with "
                          f"`{INSTALL_HINT}` (from the repository root), or use the default --engine local"
                          ) from None
    return ray


# ----------------------------------------------------------------------------- the worker side


class _OnDevice:
    """Wrap a module so it runs on `device` while the engine feeds and reads CPU tensors."""

    def __init__(self, module, device):
        self.module, self.device = module.to(device), device

    def __call__(self, x):
        return self.module(x.to(self.device)).float().cpu()

    def __getattr__(self, name):  # eval(), parameters(), ... reach the wrapped module
        return getattr(self.module, name)


class ScorerActor:
    """One Ray actor: loads the model set once, then scores batches of paths into CSV rows.

    Input batches are `{"path": [...], "name": [...]}`: the absolute path to read, and the name
    the row carries (the path as the sources gave it, as the local engine writes it).
    Output batches are `{"name", "row", "audio_s", "cpu_s", "load_cpu_s"}` lists: a row is
    `result_to_row(result, model_names)` serialised as JSON (exact for floats), so the driver
    writes the same lines as the local engine; then the seconds of audio scored, the actor's
    CPU seconds per row, and its model-loading CPU seconds (once, with its first batch).
    """

    def __init__(self, detector_kwargs: dict, threads: int | None = None, use_gpu: bool = False):
        import torch

        from .inference import Detector

        if threads:
            torch.set_num_threads(int(threads))
        c0 = time.process_time()
        # load errors (a missing checkpoint on this node, ...) stop the job: they are not
        # rows, or a resume would skip every file this worker touched
        self.detector = Detector.from_set(**detector_kwargs)
        if self.detector.loaded.skipped:   # a partial set here would write rows the header does not match
            raise WeightsError("; ".join(f"{n}: {why}" for n, why in self.detector.loaded.skipped.items()))
        self.load_cpu_s = time.process_time() - c0   # reported once, with the first batch
        self.device = "cpu"
        if use_gpu and torch.cuda.is_available():
            self.device = "cuda"
            for m in self.detector.models:
                m.module = _OnDevice(m.module, torch.device("cuda"))
        self.names = [m.name for m in self.detector.models]

    def __call__(self, batch: dict) -> dict:
        from .batch import result_to_row

        c0 = time.process_time()
        paths = [str(p) for p in batch["path"]]
        names = [str(n) for n in batch["name"]]
        rows, audio = [], []
        for res in self._score(names, paths):
            rows.append(json.dumps(result_to_row(res, self.names)))
            audio.append(float(res.facts.duration_s) if res.facts is not None and res.ensemble is not None
                         and res.ensemble.p_fake is not None else 0.0)
        # CPU seconds this actor process spent (all its threads), shared out over the rows
        cpu = (time.process_time() - c0) / max(1, len(rows))
        load, self.load_cpu_s = self.load_cpu_s, 0.0
        return {"name": names, "row": rows, "audio_s": audio, "cpu_s": [cpu] * len(rows),
                "load_cpu_s": [load] + [0.0] * (len(rows) - 1)}

    def _score(self, names: list[str], paths: list[str]):
        try:
            return list(self.detector.score_many(list(zip(names, paths))))
        except Exception:  # never lose a batch to one file: redo it file by file
            return [self._score_one(n, p) for n, p in zip(names, paths)]

    def _score_one(self, name: str, path: str):
        from .inference import FileResult

        try:
            return next(self.detector.score_many([(name, path)]))
        except Exception as e:
            return FileResult(name, None, {}, None, self.detector.set_name,
                              f"{name}: unexpected failure ({type(e).__name__}: {e})")


# ----------------------------------------------------------------------------- the driver side


def _detector_error_from(exc: BaseException) -> DetectorError | None:
    """The DetectorError a worker raised, dug out of Ray's wrappers (or None)."""
    from . import errors

    e, seen = exc, set()
    while isinstance(e, BaseException) and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DetectorError):
            return e
        e = e.__cause__ or e.__context__ or getattr(e, "cause", None)
    # an actor that died in its constructor reaches the driver as text: its last error line
    found = re.findall(r"core\.errors\.(DetectorError|AudioError|WeightsError|ConfigError): (.+)", str(exc))
    if found:
        name, message = found[-1]
        return getattr(errors, name)(message.strip())
    return None


def _connect(ray, address: str | None, runtime_env: dict | None, init_kwargs: dict | None) -> bool:
    """Connect to (or start) Ray. Returns True when this call started the connection."""
    if ray.is_initialized():
        return False
    env = dict(runtime_env or {})
    env_vars = dict(env.get("env_vars") or {})
    # workers import `core` from the same checkout as the driver (a cluster's nodes hold the
    # repository at the same path, or on their own PYTHONPATH, which is kept)
    env_vars.setdefault("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), "${PYTHONPATH}"]))
    env["env_vars"] = env_vars
    # workers' own logs stay in Ray's session folder (/tmp/ray/session_latest/logs): a model
    # load failure comes back as this run's error, a bad file as its error row
    kw = dict(logging_level="WARNING", log_to_driver=False, runtime_env=env)
    if address in (None, "", "local"):
        kw.update(include_dashboard=False)
    else:
        kw.update(address=address)
    kw.update(init_kwargs or {})
    # ray.init installs its own SIGTERM handler (exit at once); keep the caller's, so that the
    # CLI's SIGTERM stops between rows and says "interrupted", as the local engine does
    main = threading.current_thread() is threading.main_thread()
    caller_sigterm = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(**kw)
    except ConnectionError as e:
        raise ConfigError(f"cannot connect to the Ray cluster at {address!r} ({e}); start one with "
                          "`ray start --head` or check --address (auto, or ray://HOST:10001)") from None
    except Exception as e:
        if address in (None, "", "local"):
            raise
        raise ConfigError(f"cannot connect to the Ray cluster at {address!r} "
                          f"({type(e).__name__}: {e}); check --address (auto, or ray://HOST:10001)") from None
    if main and callable(caller_sigterm):
        signal.signal(signal.SIGTERM, caller_sigterm)
    return True


def _plan_workers(ray, num_workers: int | None, cpus_per_worker: float, gpus_per_worker: float | None
                  ) -> tuple[int, float, float]:
    res = ray.cluster_resources()
    gpus = float(res.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 else 0.0
    if gpus_per_worker > 0 and gpus <= 0:
        raise ConfigError("--gpus-per-worker asks for GPUs but the Ray cluster has none; use 0")
    if num_workers is None:
        cpus = float(res.get("CPU", 1))
        n = int(cpus // max(cpus_per_worker, 1e-9))
        if gpus_per_worker > 0:
            n = min(n, int(gpus // gpus_per_worker))
        num_workers = max(1, n)
    return int(num_workers), float(cpus_per_worker), float(gpus_per_worker)


def run_batch_ray(sources: Iterable[str | os.PathLike], out_csv: str | os.PathLike, set_name: str = "auto",
                  models: str | list[str] | None = None, weights_dir: str | os.PathLike | None = None, *,
                  address: str | None = None, num_workers: int | None = None, cpus_per_worker: float = 1,
                  gpus_per_worker: float | None = None, files_per_batch: int = DEFAULT_FILES_PER_BATCH,
                  resume: bool = True, fsync: bool = True, allow_download: bool = True,
                  revision: str | None = None, detector_options: dict | None = None,
                  threads: int | None = None, progress: Callable[[int, int], None] | None = None,
                  on_start: Callable[["BatchSummary", int], None] | None = None,
                  runtime_env: dict | None = None, ray_init_kwargs: dict | None = None,
                  stats: dict | None = None) -> "BatchSummary":
    """Score every audio file named by `sources` into `out_csv` on Ray, one row per file.

    The same rows, columns, error rows and resume rule as `core.batch.run_batch` (rows arrive
    in the order workers finish). `address`: None starts a private local Ray instance (unless
    Ray is already initialised in this process, which is then used as it is); "auto" joins the
    cluster started on this machine with `ray start`; "ray://HOST:10001" connects through Ray
    Client. `num_workers` actors (default: as many as the cluster's CPUs allow at
    `cpus_per_worker` each) each load the model set once; `gpus_per_worker` defaults to 1 when
    the cluster has GPUs, else 0. `detector_options` go to `Detector` (hop_fraction, window_s,
    batch_size, decode_workers, precision). `progress(done, todo)` and `on_start(summary, todo)` behave as
    in `run_batch`. A `stats` dict, if given, receives `workers`, `worker_cpu_s` (CPU seconds
    the actors spent scoring, summed over actors) and `worker_load_cpu_s` (spent loading models):
    what a CPU-hour buys, whatever else shares the machines.
    """
    t0 = time.monotonic()
    if files_per_batch < 1:
        raise ConfigError(f"files per batch must be at least 1, got {files_per_batch}")
    if num_workers is not None and num_workers < 1:
        raise ConfigError(f"--num-workers must be at least 1, got {num_workers}")
    ray = require_ray()  # before anything else: without Ray, say so at once

    from .batch import (BatchSummary, _Lock, _row_bytes, _write_all, csv_columns, expand_sources, plan_resume,
                        resume_columns)
    from .loading import resolve_set_name
    from .models.registry import get_set, select_models

    out = Path(out_csv)
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; --out needs a CSV file name")
    out.parent.mkdir(parents=True, exist_ok=True)

    # one set for every worker: "auto" is decided here, once
    resolved = resolve_set_name(set_name, weights_dir)
    names = [s.name for s in select_models(get_set(resolved), models)]
    columns = csv_columns(names)
    detector_kwargs = dict(set_name=resolved, models=names,
                           weights_dir=str(Path(weights_dir).resolve()) if weights_dir else None,
                           allow_download=allow_download, revision=revision, **(detector_options or {}))

    summary = BatchSummary(str(out))
    files = expand_sources(sources)
    summary.total = len(files)
    stats = stats if stats is not None else {}
    with _Lock(out):
        todo = plan_resume(out, files, columns, resume, summary,
                           spoken_check=bool((detector_options or {}).get("spoken_check", False)))
        columns = resume_columns(out, columns) if resume else columns
        summary.older_layout = columns != csv_columns(names)
        # connect first: a cluster that cannot be reached leaves the output as it was
        with _ray_session(ray, address, runtime_env, ray_init_kwargs, needed=bool(todo)):
            plan = _plan_workers(ray, num_workers, cpus_per_worker, gpus_per_worker) if todo else None
            if not resume:
                os.truncate(out, 0)
            fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size == 0:
                    _write_all(fd, _row_bytes({c: c for c in columns}, columns), fsync)
                if on_start:
                    on_start(summary, len(todo))
                if todo:
                    n_workers, cpus, gpus = plan
                    stats.update(workers=n_workers, cpus_per_worker=cpus, gpus_per_worker=gpus,
                                 worker_cpu_s=0.0, worker_load_cpu_s=0.0)
                    with _quiet_data_context(ray):
                        _stream_rows(ray, todo, columns, detector_kwargs, summary, fd, fsync, progress, stats,
                                     n_workers=n_workers, cpus=cpus, gpus=gpus, files_per_batch=files_per_batch,
                                     threads=threads)
            finally:
                os.close(fd)
    summary.seconds = time.monotonic() - t0
    return summary


@contextmanager
def _ray_session(ray, address, runtime_env, init_kwargs, needed: bool):
    """Connected to Ray inside (when `needed`); disconnected afterwards if this opened it."""
    started = _connect(ray, address, runtime_env, init_kwargs) if needed else False
    try:
        yield
    finally:
        if started:
            ray.shutdown()


_CONTEXT = dict(
    enable_progress_bars=False,            # the CLI shows its own bar
    enable_operator_progress_bars=False,
    enable_auto_log_stats=False,
    actor_init_retry_on_errors=False,      # a worker that cannot load the models stops the job
)


@contextmanager
def _quiet_data_context(ray):
    """Ray Data settings for this run; the caller's own settings are put back afterwards."""
    ctx = ray.data.DataContext.get_current()
    log = logging.getLogger("ray.data")
    saved = {k: getattr(ctx, k) for k in _CONTEXT}
    saved_order, saved_level = ctx.execution_options.preserve_order, log.level
    try:
        for k, v in _CONTEXT.items():
            setattr(ctx, k, v)
        ctx.execution_options.preserve_order = False   # rows land as workers finish
        log.setLevel(logging.ERROR)                    # no per-run INFO/WARNING chatter
        yield ctx
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)
        ctx.execution_options.preserve_order = saved_order
        log.setLevel(saved_level)


def _stream_rows(ray, todo, columns, detector_kwargs, summary, fd, fsync, progress, stats, *, n_workers, cpus,
                 gpus, files_per_batch, threads):
    from .batch import _row_bytes, _write_all

    # small blocks: a worker's rows reach the CSV after each batch, not after a huge block
    n_blocks = max(1, min(MAX_BLOCKS, math.ceil(len(todo) / files_per_batch)))
    items = [{"path": os.path.abspath(f), "name": f} for f in todo]
    ds = ray.data.from_items(items, override_num_blocks=n_blocks)
    ds = ds.map_batches(
        ScorerActor, batch_size=files_per_batch, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=n_workers),
        fn_constructor_kwargs=dict(detector_kwargs=detector_kwargs,
                                   threads=threads or max(1, int(cpus)), use_gpu=gpus > 0),
        num_cpus=cpus, num_gpus=gpus or None)
    written = 0
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
            stats["worker_cpu_s"] += float(sum(batch["cpu_s"]))
            stats["worker_load_cpu_s"] += float(sum(batch["load_cpu_s"]))
            for row_json, audio_s in zip(batch["row"], batch["audio_s"]):
                row = json.loads(str(row_json))
                _write_all(fd, _row_bytes(row, columns), fsync)
                written += 1
                summary.count(row, float(audio_s))
                if progress:
                    progress(written, len(todo))
    except KeyboardInterrupt:
        summary.interrupted = True
    except DetectorError:
        raise
    except Exception as e:
        err = _detector_error_from(e)
        if err is not None:
            raise type(err)(f"a Ray worker could not load the models: {err}") from None
        raise DetectorError(f"the Ray job failed after {written} rows ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}); "
                            "the rows written are kept: rerun the same command to resume") from e


# ----------------------------------------------------------------------------- CLI glue


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--engine` switch and the Ray options of `python -m core batch` (Ray is not imported)."""
    g = parser.add_argument_group("engine (Ray needs: pip install -r requirements-ray.txt)")
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="'local' (default): this process, decoding in threads while the models run; "
                        "'ray': a pool of Ray actors, each loading the models once, on this machine or a "
                        "cluster (same rows, same resume; rows land in the order workers finish)")
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="with --engine ray: 'auto' joins the cluster started here with `ray start --head`, "
                        "'ray://HOST:10001' connects to a remote head through Ray Client; default: a private "
                        "Ray instance on this machine for this run. Every node needs this repository, "
                        "requirements-ray.txt, the audio at the same path and the weights")
    g.add_argument("--num-workers", type=positive_int, default=None, metavar="N",
                   help="with --engine ray: actors scoring in parallel, each holding one copy of the models "
                        "(default: the cluster's CPUs / --cpus-per-worker, or its GPUs when it has any)")
    g.add_argument("--cpus-per-worker", type=positive_int, default=1, metavar="N",
                   help="with --engine ray: CPUs reserved per actor, also its torch threads (default 1)")
    g.add_argument("--gpus-per-worker", type=non_negative_float, default=None, metavar="G",
                   help="with --engine ray: GPUs per actor, e.g. 1 or 0.5 (default: 1 when the cluster has "
                        "GPUs, else 0)")
    g.add_argument("--files-per-task", type=positive_int, default=DEFAULT_FILES_PER_BATCH, metavar="N",
                   help=f"with --engine ray: files an actor scores per call (default {DEFAULT_FILES_PER_BATCH}); "
                        "rows reach the CSV after each call, so an interrupted run loses at most this many "
                        "files per actor")


def engine_of(args: argparse.Namespace) -> str:
    """'local' or 'ray'; Ray-only options without `--engine ray` are refused rather than ignored."""
    engine = getattr(args, "engine", "local") or "local"
    if engine != "ray":
        given = [flag for flag, attr, default in (("--address", "address", None), ("--num-workers", "num_workers", None),
                                                  ("--cpus-per-worker", "cpus_per_worker", 1),
                                                  ("--gpus-per-worker", "gpus_per_worker", None),
                                                  ("--files-per-task", "files_per_task", DEFAULT_FILES_PER_BATCH))
                 if getattr(args, attr, default) != default]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply to the Ray engine: add --engine ray")
    return engine


def detector_kwargs_from_args(args: argparse.Namespace) -> dict:
    """The model-set and Detector options of a parsed `batch` command line (as `make_detector` reads them)."""
    return dict(set_name=getattr(args, "set_name", "auto"), models=getattr(args, "models", None),
                weights_dir=getattr(args, "weights_dir", None),
                allow_download=not getattr(args, "no_download", False), revision=getattr(args, "revision", None),
                hop_fraction=getattr(args, "hop", 0.5), window_s=getattr(args, "window", None),
                batch_size=getattr(args, "batch_size", 32), decode_workers=getattr(args, "workers", 2),
                precision=getattr(args, "precision", "fp32"), seed_crop=getattr(args, "seed_crop", False),
                spoken_check=not getattr(args, "no_speech_check", True))


def run_ray_batch_from_args(args: argparse.Namespace, detector_kwargs: dict | None = None,
                            progress: Callable[[int, int], None] | None = None,
                            on_start: Callable[["BatchSummary", int], None] | None = None) -> "BatchSummary":
    """`python -m core batch ... --engine ray`: run_batch_ray with the parsed options.

    `detector_kwargs` (default: read from `args`) holds set_name, models, weights_dir,
    allow_download, revision and the Detector options (hop_fraction, window_s, batch_size,
    decode_workers). Returns the BatchSummary; the CLI prints it and picks the exit status.
    """
    kw = dict(detector_kwargs if detector_kwargs is not None else detector_kwargs_from_args(args))
    load = {k: kw.pop(k) for k in ("set_name", "models", "weights_dir", "allow_download", "revision") if k in kw}
    return run_batch_ray(args.sources, args.out, load.get("set_name", "auto"), load.get("models"),
                         load.get("weights_dir"), address=getattr(args, "address", None),
                         num_workers=getattr(args, "num_workers", None),
                         cpus_per_worker=getattr(args, "cpus_per_worker", 1),
                         gpus_per_worker=getattr(args, "gpus_per_worker", None),
                         files_per_batch=getattr(args, "files_per_task", DEFAULT_FILES_PER_BATCH),
                         resume=not getattr(args, "no_resume", False), fsync=not getattr(args, "no_fsync", False),
                         allow_download=load.get("allow_download", True), revision=load.get("revision"),
                         detector_options=kw, threads=getattr(args, "threads", None),
                         progress=progress, on_start=on_start)
