"""The Ray engine (core/ray_engine.py): same rows as the local engine, same resume, Ray optional.

The Ray tests start one small local Ray instance for this module (2 CPUs, no dashboard) and
shut it down afterwards. They skip only when Ray is not installed (`pip install -r
requirements-ray.txt`; CI installs it).
"""

from __future__ import annotations

import csv
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST_MODELS, REPO, AudioMaker, python_env, write_seed_weights

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed: pip install -r requirements-ray.txt")

N_FILES = 30
SCORE_COLUMNS_PREFIX = ("p_fake_", "threshold_")


# ----------------------------------------------------------------------------- the 30 files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """30 files named by a manifest CSV: 24 clips in three formats and 6 that cannot be scored."""
    root = tmp_path_factory.mktemp("ray_corpus")
    make = AudioMaker(root / "audio")
    entries = []
    for i in range(24):
        fmt = ("wav", "flac", "ogg")[i % 3]
        p = make.clip(f"clip{i:02d}.{fmt}", seconds=0.6 + 0.35 * (i % 7), seed=i,
                      sr=(16_000, 22_050, 44_100)[i % 3])
        entries.append(p)
    for k in range(4):  # garbage, empty, header only, random bytes
        entries.append(make.broken(f"bad{k}.wav", k))
    entries.append(make.write("silent.wav", np.zeros(8000, np.float32)))  # digital silence: an error row
    entries.append(root / "audio" / "missing.wav")                      # named but not there
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for p in entries:
            w.writerow([Path(p).relative_to(root).as_posix(), "x"])
    assert len(entries) == N_FILES
    return {"root": root, "manifest": manifest}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_seed_weights(tmp_path_factory.mktemp("ray_weights"), tuple(FAST_MODELS.split(",")))


@pytest.fixture(scope="module")
def local_csv(corpus, weights, tmp_path_factory) -> Path:
    """The reference: the local engine's output for the same manifest and models."""
    from core.batch import run_batch
    from core.inference import Detector

    det = Detector.from_set("seed", models=FAST_MODELS, weights_dir=weights, allow_download=False)
    out = tmp_path_factory.mktemp("ray_local") / "local.csv"
    s = run_batch([corpus["manifest"]], out, det, fsync=False)
    assert s.total == N_FILES and s.scored + s.errors == N_FILES
    return out


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module (2 CPUs, no dashboard), shut down afterwards."""
    if not HAS_RAY:
        pytest.skip("Ray is not installed: pip install -r requirements-ray.txt")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
             object_store_memory=96 * 1024 * 1024,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}})
    try:
        yield ray
    finally:
        ray.shutdown()


# ----------------------------------------------------------------------------- helpers


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def assert_same_rows(got: Path, want: Path) -> None:
    """Same header, each file exactly once, every column equal (scores to the CSV's 6 decimals)."""
    h1, rows1 = read_rows(got)
    h2, rows2 = read_rows(want)
    assert h1 == h2
    files1 = [r["file"] for r in rows1]
    assert len(files1) == len(set(files1)), "a file appears twice"
    by_file1, by_file2 = {r["file"]: r for r in rows1}, {r["file"]: r for r in rows2}
    assert set(by_file1) == set(by_file2)
    for name, want_row in by_file2.items():
        got_row = by_file1[name]
        for col in h2:
            a, b = got_row[col], want_row[col]
            if col.startswith(SCORE_COLUMNS_PREFIX) and a and b:
                # the CSV rounds to 6 decimals: allow the last digit, nothing more
                assert math.isclose(float(a), float(b), abs_tol=1.01e-6), (name, col, a, b)
            else:
                assert a == b, (name, col, a, b)


# ----------------------------------------------------------------------------- without Ray


def test_core_imports_without_ray_and_the_cli_says_how_to_install(tmp_path, corpus):
    """With `ray` unimportable: the CLI (which imports core.ray_engine) runs, and `--engine ray`
    exits 2 with one line naming requirements-ray.txt."""
    blocker = tmp_path / "blocker" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError(\"No module named 'ray' (blocked by the test)\")\n")
    env = python_env()
    env["PYTHONPATH"] = str(tmp_path / "blocker") + ":" + env["PYTHONPATH"]
    out = tmp_path / "out.csv"
    r = subprocess.run([sys.executable, "-m", "core", "batch", str(corpus["manifest"]), "--out", str(out),
                        "--engine", "ray", "--set", "seed", "--models", FAST_MODELS, "--no-progress"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "pip install -r requirements-ray.txt" in r.stderr
    assert not out.exists() or out.stat().st_size == 0
    assert "Traceback" not in r.stderr


def test_ray_options_parse_and_need_the_ray_engine():
    import argparse

    from core.errors import ConfigError
    from core.ray_engine import add_ray_arguments, engine_of

    p = argparse.ArgumentParser()
    add_ray_arguments(p)
    a = p.parse_args([])
    assert (a.engine, a.address, a.num_workers) == ("local", None, None)
    assert engine_of(a) == "local"
    a = p.parse_args(["--engine", "ray", "--address", "ray://head:10001", "--num-workers", "3"])
    assert (a.engine, a.address, a.num_workers) == ("ray", "ray://head:10001", 3)
    assert engine_of(a) == "ray"
    with pytest.raises(ConfigError, match="--engine ray"):
        engine_of(p.parse_args(["--address", "auto"]))
    with pytest.raises(SystemExit):
        p.parse_args(["--engine", "ray", "--num-workers", "0"])


def test_scorer_actor_rows_equal_the_local_rows_and_never_raise(corpus, weights, local_csv):
    """The actor class on its own (no Ray): a batch of paths -> the local engine's rows."""
    import json

    from core.batch import expand_sources
    from core.ray_engine import ScorerActor

    files = expand_sources([corpus["manifest"]])[:8] + expand_sources([corpus["manifest"]])[-6:]
    actor = ScorerActor(dict(set_name="seed", models=FAST_MODELS, weights_dir=str(weights), allow_download=False))
    out = actor({"path": np.array([str(Path(f).resolve()) for f in files]), "name": np.array(files)})
    rows = [json.loads(r) for r in out["row"]]
    _, ref = read_rows(local_csv)
    ref = {r["file"]: r for r in ref}
    assert [r["file"] for r in rows] == files
    for row in rows:
        for col, want in ref[row["file"]].items():
            got = "" if row[col] is None else str(row[col])
            if col.startswith(SCORE_COLUMNS_PREFIX) and got and want:
                assert math.isclose(float(got), float(want), abs_tol=1.01e-6), (col, got, want)
            else:
                assert got == want, (row["file"], col, got, want)
    assert sum(a > 0 for a in out["audio_s"]) == sum(1 for r in rows if r["p_fake_ensemble"] != "")
    assert sum(out["cpu_s"]) > 0 and out["load_cpu_s"][0] > 0 and not any(out["load_cpu_s"][1:])

    # a failure inside score_many for the batch: the batch is redone file by file, never raised
    real = actor.detector.score_many
    actor.detector.score_many = lambda items, **kw: real(items, **kw) if len(items) == 1 else iter([1 / 0])
    out2 = actor({"path": np.array([str(Path(f).resolve()) for f in files]), "name": np.array(files)})
    assert [json.loads(r)["file"] for r in out2["row"]] == files
    assert [json.loads(r) for r in out2["row"]] == rows


def test_scorer_actor_refuses_a_partial_set(tmp_path):
    """The local engine scores with what loads; an actor must not, or its rows would miss columns
    the driver's CSV header has."""
    from core.errors import WeightsError
    from core.ray_engine import ScorerActor

    partial = write_seed_weights(tmp_path / "w", ("gnn", "lstm"))
    with pytest.raises(WeightsError, match="darts"):
        ScorerActor(dict(set_name="seed", models=FAST_MODELS, weights_dir=str(partial), allow_download=False))


# ----------------------------------------------------------------------------- on Ray


@needs_ray
def test_no_cluster_at_the_address_is_a_config_error_and_the_output_is_untouched(corpus, weights, local_csv,
                                                                                 tmp_path, monkeypatch):
    import ray

    from core.errors import ConfigError
    from core.ray_engine import run_batch_ray

    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no_ray_here"))  # no cluster file of a `ray start` here
    out = tmp_path / "kept.csv"
    out.write_bytes(local_csv.read_bytes())
    with pytest.raises(ConfigError, match="ray start --head"):
        run_batch_ray([corpus["manifest"]], out, "seed", FAST_MODELS, weights, address="auto", resume=False,
                      allow_download=False)
    assert out.read_bytes() == local_csv.read_bytes()  # --no-resume did not wipe it: nothing ran
    assert not ray.is_initialized()


@needs_ray
@pytest.mark.slow
def test_ray_engine_gives_the_local_rows_and_resumes(ray_local, corpus, weights, local_csv, tmp_path):
    from core.ray_engine import run_batch_ray

    out = tmp_path / "ray.csv"
    stats: dict = {}
    s = run_batch_ray([corpus["manifest"]], out, "seed", FAST_MODELS, weights, num_workers=2,
                      files_per_batch=4, allow_download=False, fsync=False, stats=stats)
    assert s.total == N_FILES and s.skipped == 0
    assert stats["workers"] == 2 and stats["worker_cpu_s"] > 0 and stats["worker_load_cpu_s"] > 0
    _, ref = read_rows(local_csv)
    assert s.errors == sum(1 for r in ref if not r["p_fake_ensemble"]) >= 6
    assert s.scored == N_FILES - s.errors
    assert_same_rows(out, local_csv)

    # rerun on the same output: nothing to do, nothing added
    before = out.read_bytes()
    s2 = run_batch_ray([corpus["manifest"]], out, "seed", FAST_MODELS, weights, num_workers=2,
                       allow_download=False)
    assert (s2.skipped, s2.scored, s2.errors, s2.previously_scored) == (N_FILES, 0, 0, s.scored)
    assert out.read_bytes() == before


@needs_ray
@pytest.mark.slow
def test_cli_ray_engine_resumes_a_killed_local_run(ray_local, corpus, weights, local_csv, tmp_path):
    """`python -m core batch --engine ray --address ...` finishes what a killed local run left."""
    lines = local_csv.read_bytes().splitlines(keepends=True)
    out = tmp_path / "resumed.csv"
    out.write_bytes(b"".join(lines[:13]) + lines[13][: len(lines[13]) // 2])  # 12 rows + half a row
    address = ray_local.get_runtime_context().gcs_address
    r = subprocess.run([sys.executable, "-m", "core", "batch", str(corpus["manifest"]), "--out", str(out),
                        "--engine", "ray", "--address", address, "--num-workers", "1", "--set", "seed",
                        "--models", FAST_MODELS, "--weights-dir", str(weights), "--no-download",
                        "--no-progress", "--no-fsync", "--no-speech-check"],  # as the reference ran
                       cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "12 already there" in r.stdout + r.stderr
    assert_same_rows(out, local_csv)


@needs_ray
@pytest.mark.slow
def test_a_worker_without_the_weights_stops_the_job_with_the_weights_error(ray_local, corpus, tmp_path):
    from core.errors import WeightsError
    from core.ray_engine import run_batch_ray

    partial = write_seed_weights(tmp_path / "w", ("gnn",))
    out = tmp_path / "none.csv"
    with pytest.raises(WeightsError, match="darts"):
        run_batch_ray([corpus["manifest"]], out, "seed", FAST_MODELS, partial, num_workers=1,
                      allow_download=False)
    _, rows = read_rows(out)
    assert rows == []  # no error rows: a resume after fixing the weights scores every file
