"""`python -m core`: score (--json schema, table, exit codes), batch (rows, resume, kills), models, help."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import FAST_MODELS, REPO, python_env, speechlike
from core.__main__ import build_parser, main
from core.batch import csv_columns

SR = 16_000


def cli(*args, timeout=300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *map(str, args)], cwd=REPO, env=python_env(),
                          capture_output=True, text=True, timeout=timeout, **kw)


def model_args(weights) -> list[str]:
    return ["--set", "seed", "--models", FAST_MODELS, "--weights-dir", str(weights), "--no-download"]


def tiny_files(folder: Path, n: int, seconds: float = 0.4, broken_every: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    base = speechlike(seconds, seed=1)
    out = []
    for i in range(n):
        p = folder / f"f{i:04d}.wav"
        if broken_every and i % broken_every == broken_every - 1:
            p.write_bytes(b"broken" * 10)
        else:
            sf.write(p, base * (0.3 + 0.7 * ((i * 37) % 100) / 100), SR, subtype="PCM_16")
        out.append(p)
    return out


def csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def check_complete(path: Path, files: list[Path], columns: list[str]) -> None:
    """Every file exactly once, the header once, every row complete."""
    assert path.read_bytes().endswith(b"\n")
    recs = csv_rows(path)
    assert recs[0] == columns and all(len(r) == len(columns) for r in recs)
    names = [r[0] for r in recs[1:]]
    assert sorted(os.path.abspath(n) for n in names) == sorted(str(f) for f in files)
    assert len(names) == len(set(names))


# ---------------------------------------------------------------------------- score


def test_score_json_schema_with_a_bad_file(fast_weights, make):
    good = make.clip("good.wav", 3.0, sr=22050)
    bad = make.broken("bad.wav")
    r = cli("score", good, bad, "--json", *model_args(fast_weights))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert isinstance(doc, list) and len(doc) == 2
    g, b = doc
    assert g["file"] == str(good) and b["file"] == str(bad)
    assert g["audio"]["original_rate"] == 22050 and g["audio"]["duration_s"] == pytest.approx(3.0, abs=1e-3)
    for k in ("channels", "codec", "container", "peak_dbfs", "clipped_fraction", "silence_ratio"):
        assert k in g["audio"]
    assert set(g["models"]) == {"gnn", "darts", "lstm"}
    for name, m in g["models"].items():
        assert 0 <= m["p_fake"] <= 1 and m["verdict"] in ("fake", "real")
        assert m["threshold"] == 0.5 and m["threshold_source"]
        assert m["source"] == "local folder" and len(m["sha256"]) == 64
        assert m["windows"] and set(m["windows"][0]) == {"start", "end", "p_fake"}
        assert m["windows"][-1]["end"] == pytest.approx(3.0, abs=1e-3)
        assert m["p_fake"] == pytest.approx(np.mean([w["p_fake"] for w in m["windows"]]))
    assert g["ensemble"]["p_fake"] == pytest.approx(np.mean([m["p_fake"] for m in g["models"].values()]))
    assert g["error"] is None
    assert b["error"] and "bad.wav" in b["error"] and b["models"] == {} and b["ensemble"] is None


def test_score_exit_status_when_nothing_scores(fast_weights, make, capsys):
    bad = make.broken("bad.wav")
    assert main(["score", str(bad), "--json", *model_args(fast_weights)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc[0]["error"]


def test_score_json_survives_digital_silence_facts(fast_weights, make, capsys):
    silent = make.write("silent.wav", np.zeros(SR, np.float32))
    ok = make.clip("ok.wav", 1.0)
    assert main(["score", str(silent), str(ok), "--json", *model_args(fast_weights)]) == 0
    doc = json.loads(capsys.readouterr().out)  # strict JSON: no -Infinity
    assert "silence" in doc[0]["error"] and doc[1]["error"] is None


def test_score_table(fast_weights, make, capsys):
    p = make.clip("t.wav", 1.0, sr=8000)
    assert main(["score", str(p), *model_args(fast_weights), "--hop", "1", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "P(fake)" in out and "higher = more likely fake" in out
    for name in ("gnn", "darts", "lstm", "ENSEMBLE"):
        assert name in out
    assert "seed's rule" in out                    # threshold source
    assert "local folder" in out                   # where the weights came from
    assert "Low sample rate (8000 Hz)" in out      # warnings
    assert "Shorter" in out


def test_window_option_changes_windows(fast_weights, make, capsys):
    p = make.clip("w.wav", 5.0)
    assert main(["score", str(p), "--json", *model_args(fast_weights), "--window", "1", "--hop", "0.5"]) == 0
    doc = json.loads(capsys.readouterr().out)
    w = doc[0]["models"]["lstm"]["windows"]
    assert len(w) == 9 and all(x["end"] - x["start"] == pytest.approx(1.0) for x in w)


@pytest.mark.parametrize("argv,needle", [
    (["--models", "lstm,nope"], "known models"),
    (["--set", "seed", "--models", "lstm", "--weights-dir", "{empty}", "--no-download"],
     "lstm_model_best_model.pth"),
])
def test_user_errors_are_one_line_exit_2(argv, needle, fast_weights, make, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    p = make.clip("e.wav", 0.5)
    base = ["--set", "seed", "--weights-dir", str(fast_weights), "--no-download"]
    args = [a.replace("{empty}", str(empty)) for a in argv]
    assert main(["score", str(p), *base, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err
    assert err.startswith("python -m core score: error:")


def test_user_error_in_a_real_process_has_no_traceback(make):
    r = cli("score", make.clip("x.wav", 0.5), "--set", "seed", "--models", "nope")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "known models" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["score", "x.wav", "--hop", "0"], ["score", "x.wav", "--hop", "1.5"],
                                  ["score", "x.wav", "--window", "-2"], ["score", "x.wav", "--batch-size", "0"],
                                  ["batch", "x"], ["score"], ["bogus"]])
def test_bad_options_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "usage:" in capsys.readouterr().err


# ---------------------------------------------------------------------------- help


def test_help_explains_every_option(capsys):
    for cmd in ("score", "batch", "models"):
        parser = build_parser([cmd])
        sub = next(a for a in parser._actions if a.dest == "command").choices[cmd]
        for action in sub._actions:
            assert action.help and len(action.help) > 10, (cmd, action.dest)
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        for action in sub._actions:
            for opt in action.option_strings:
                assert opt in out
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for cmd in ("score", "batch", "models", "train", "evaluate", "exit status"):
        assert cmd in top


def test_train_and_evaluate_are_wired(capsys):
    for cmd in ("train", "evaluate"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert f"python -m core {cmd}" in out
        try:
            import core.training.train as train
        except ModuleNotFoundError:
            continue
        # the options come from core.training.train itself
        probe = __import__("argparse").ArgumentParser()
        getattr(train, f"add_{cmd}_arguments")(probe)
        for action in probe._actions:
            for opt in action.option_strings:
                assert opt in out


def test_train_missing_module_is_a_clean_error(monkeypatch, capsys):
    import importlib

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "core.training.train":
            raise ModuleNotFoundError("No module named 'core.training.train'", name="core.training.train")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    assert main(["evaluate"]) == 2
    err = capsys.readouterr().err
    assert "core/training/train.py is missing" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- models


def test_models_lists_sets_sources_and_cards(fast_weights, capsys):
    assert main(["models", "--set", "seed", "--weights-dir", str(fast_weights), "--json", "--sha256"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["set"] for e in doc] == ["seed"]
    ms = {m["name"]: m for m in doc[0]["models"]}
    assert list(ms) == ["senet", "resnet", "res2net", "gnn", "darts", "lstm"]
    assert ms["lstm"]["found"] and ms["lstm"]["source"] == "local folder" and len(ms["lstm"]["sha256"]) == 64
    assert not ms["senet"]["found"] and "senet_model_best_model.pth" in ms["senet"]["problem"]
    assert ms["darts"]["card"]["reported_metrics"]["tnr"] == 0.0
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "seed:" in out and "shipped:" in out and "threshold" in out


# ---------------------------------------------------------------------------- batch


def test_batch_rows_error_row_resume(fast_weights, tmp_path, capsys):
    files = tiny_files(tmp_path / "in", 8, broken_every=4)
    out = tmp_path / "res.csv"
    assert main(["batch", str(tmp_path / "in"), "--out", str(out), *model_args(fast_weights), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "6 scored, 2 error rows" in text
    cols = csv_columns(FAST_MODELS.split(","))
    check_complete(out, files, cols)
    rows = {Path(r[0]).name: r for r in csv_rows(out)[1:]}
    assert rows["f0003.wav"][cols.index("error")] and rows["f0003.wav"][cols.index("p_fake_ensemble")] == ""
    assert float(rows["f0000.wav"][cols.index("p_fake_ensemble")]) >= 0
    before = out.read_bytes()
    assert main(["batch", str(tmp_path / "in"), "--out", str(out), *model_args(fast_weights)]) == 0
    assert out.read_bytes() == before  # rerun adds nothing
    assert "8 already there" in capsys.readouterr().out
    # --no-resume rewrites
    assert main(["batch", str(tmp_path / "in"), "--out", str(out), *model_args(fast_weights),
                 "--no-resume", "--no-progress"]) == 0
    check_complete(out, files, cols)


def test_batch_exit_status(fast_weights, tmp_path, capsys):
    bad = tiny_files(tmp_path / "bad", 2, broken_every=1)
    assert main(["batch", *map(str, bad), "--out", str(tmp_path / "b.csv"), *model_args(fast_weights),
                 "--no-progress"]) == 1
    (tmp_path / "none").mkdir()
    assert main(["batch", str(tmp_path / "none"), "--out", str(tmp_path / "n.csv"), *model_args(fast_weights),
                 "--no-progress"]) == 1
    assert "no audio files" in capsys.readouterr().err


def test_batch_file_list_and_manifest(fast_weights, tmp_path):
    files = tiny_files(tmp_path / "data" / "clips", 4)
    lst = tmp_path / "data" / "list.txt"
    lst.write_text("clips/f0000.wav\nclips/f0001.wav\n")
    man = tmp_path / "data" / "manifest.csv"
    man.write_text("path,label\nclips/f0002.wav,real\nclips/f0003.wav,fake\nclips/f0000.wav,real\n")
    out = tmp_path / "o.csv"
    assert main(["batch", str(lst), str(man), "--out", str(out), *model_args(fast_weights), "--no-progress"]) == 0
    check_complete(out, files, csv_columns(FAST_MODELS.split(",")))


def _start_batch(folder: Path, out: Path, weights: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core", "batch", str(folder), "--out", str(out),
                             "--set", "seed", "--models", "darts,lstm", "--weights-dir", str(weights),
                             "--no-download", "--no-progress", "--batch-size", "8",
                             "--no-speech-check"],  # about resuming; the check costs ~0.6 s a file
                            cwd=REPO, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_rows(out: Path, proc: subprocess.Popen, rows: int, timeout: float = 120) -> int:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if out.exists():
            n = out.read_bytes().count(b"\n") - 1
            if n >= rows:
                return n
        if proc.poll() is not None:
            pytest.fail(f"batch ended before it could be stopped: {proc.stderr.read()}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("batch produced no rows in time")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_batch_resumes_with_every_file_once(sig, fast_weights, tmp_path):
    files = tiny_files(tmp_path / "in", 200, seconds=0.3, broken_every=25)
    out = tmp_path / "k.csv"
    cols = csv_columns(["darts", "lstm"])
    proc = _start_batch(tmp_path / "in", out, fast_weights)
    seen = _wait_for_rows(out, proc, 5)
    proc.send_signal(sig)
    stdout, _ = proc.communicate(timeout=60)
    after_kill = out.read_bytes().count(b"\n") - 1
    assert seen <= after_kill < 200, "the run was not stopped partway"
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and "interrupted" in stdout
        scored, errors = (int(x) for x in re.search(r"(\d+) scored, (\d+) error rows", stdout).groups())
        assert scored + errors == after_kill  # the summary counts exactly the rows on disk
    else:
        assert proc.returncode == -signal.SIGKILL
    # rerun the same command: it finishes the rest
    proc2 = _start_batch(tmp_path / "in", out, fast_weights)
    stdout2, stderr2 = proc2.communicate(timeout=300)
    assert proc2.returncode == 0, stderr2
    assert f"{after_kill} already there" in stdout2
    check_complete(out, files, cols)
    recs = csv_rows(out)[1:]
    assert sum(1 for r in recs if r[cols.index("p_fake_ensemble")] == "") == 8  # the broken ones
