"""core/batch.py: sources, one row per file, error rows, resume, repair of a half-written row."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import speechlike
from core.batch import (ASSESSMENT_COLUMNS, SPOKEN_COLUMNS, _Lock, csv_columns, expand_sources, read_done, read_results, repair_csv,
                        result_to_row, run_batch)
from core.errors import ConfigError
from core.inference import Detector

SR = 16_000


@pytest.fixture(scope="module")
def det2(fast_weights):
    """The two fastest seed models: what the big batch tests use."""
    return Detector.from_set("seed", models="darts,lstm", weights_dir=fast_weights, allow_download=False)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_valid_csv(path: Path, columns: list[str]) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    with open(path, newline="") as f:
        recs = list(csv.reader(f))
    assert recs[0] == columns
    assert all(len(r) == len(columns) for r in recs[1:])
    assert sum(1 for r in recs if r == columns) == 1  # the header once
    return read_rows(path)


def small_tree(make, n_ok=4, n_bad=1) -> list[Path]:
    files = [make.clip(f"d{i % 2}/sub/c{i}.wav", 0.5 + 0.2 * i, seed=i) for i in range(n_ok)]
    files += [make.broken(f"d0/bad{i}.wav", i) for i in range(n_bad)]
    return files


# ---------------------------------------------------------------------------- sources


def test_expand_folders_lists_and_manifests(make, tmp_path):
    a = make.clip("root/a.wav", 0.3)
    b = make.clip("root/deep/er/B.WAV", 0.3)
    (make.folder / "root" / "notes.txt").write_text("not a list, not audio")  # inside a folder: ignored
    c = make.clip("other/c.flac", 0.3, format="FLAC")
    lst = make.folder / "other" / "list.txt"
    lst.write_text("# files to score\n\nc.flac\n" + str(a) + "\n  ../root/deep  \nmissing.wav\n")
    man = make.folder / "m" / "manifest.csv"
    man.parent.mkdir()
    man.write_text("path,label\n../root/a.wav,real\n../other/c.flac,fake\n")
    got = expand_sources([make.folder / "root", lst, man])
    norm = [os.path.normpath(os.path.abspath(g)) for g in got]
    want = [str(a), str(b), str(c), str(make.folder / "other" / "missing.wav")]
    assert norm == [os.path.normpath(w) for w in want]  # each once, order of first mention


def test_manifest_without_path_column(make):
    man = make.folder / "m.csv"
    man.parent.mkdir(parents=True, exist_ok=True)
    man.write_text("file,label\na.wav,real\n")
    with pytest.raises(ConfigError, match="'path' column"):
        expand_sources([man])


def test_symlink_loop_is_not_followed_forever(make):
    a = make.clip("loop/a.wav", 0.3)
    os.symlink(make.folder / "loop", make.folder / "loop" / "again")
    assert expand_sources([make.folder / "loop"]) == [str(a)]


def test_shared_manifest_paths_resolve():
    from conftest import SHARED_DATA

    man = SHARED_DATA / "manifest.csv"
    if not man.is_file():
        pytest.skip("../shared/data not present")
    files = expand_sources([man])
    assert len(files) > 100 and all(Path(f).is_file() for f in files[:50])


# ---------------------------------------------------------------------------- the CSV


def test_repair_csv_cuts_only_a_partial_last_line(tmp_path):
    p = tmp_path / "r.csv"
    p.write_bytes(b"a,b\n1,2\n3,")
    assert repair_csv(p) == 2 and p.read_bytes() == b"a,b\n1,2\n"
    assert repair_csv(p) == 0 and p.read_bytes() == b"a,b\n1,2\n"
    p.write_bytes(b"a,b")  # a header cut short
    repair_csv(p)
    assert p.read_bytes() == b""
    p.write_bytes(b"")
    assert repair_csv(p) == 0
    assert repair_csv(tmp_path / "absent.csv") == 0
    big = b"h\n" + b"x" * 200_000  # a partial line longer than the scan block
    p.write_bytes(big)
    repair_csv(p)
    assert p.read_bytes() == b"h\n"


def test_read_done_refuses_another_layout(tmp_path):
    p = tmp_path / "o.csv"
    p.write_text(",".join(csv_columns(["lstm"])) + "\n")
    with pytest.raises(ConfigError, match="only in the file: none; only in this run: p_fake_darts.*--no-resume"):
        read_done(p, csv_columns(["darts", "lstm"]))
    old = [c for c in csv_columns(["lstm"]) if c != "warnings"]   # a CSV without the warnings column
    p.write_text(",".join(old) + "\n")
    with pytest.raises(ConfigError, match="only in this run: warnings"):
        read_done(p, csv_columns(["lstm"]))
    p.write_text(",".join(csv_columns(["lstm"])) + "\n")
    assert read_done(p, csv_columns(["lstm"])) == {}


# ---------------------------------------------------------------------------- run_batch


def test_batch_rows_error_rows_and_resume(det2, make, tmp_path):
    files = small_tree(make, n_ok=4, n_bad=2)
    out = tmp_path / "out" / "results.csv"
    s = run_batch([make.folder], out, det2)
    cols = csv_columns(["darts", "lstm"])
    rows = assert_valid_csv(out, cols)
    assert len(rows) == 6 and s.total == 6 and s.scored == 4 and s.errors == 2 and s.skipped == 0
    assert sorted(os.path.abspath(r["file"]) for r in rows) == sorted(str(f) for f in files)
    for r in rows:
        if "bad" in r["file"]:
            assert r["error"] and r["p_fake_ensemble"] == "" and r["verdict"] == ""
        else:
            assert r["error"] == "" and 0 <= float(r["p_fake_ensemble"]) <= 1
            assert r["verdict"] in ("fake", "real") and float(r["duration_s"]) > 0
            assert float(r["p_fake_ensemble"]) == pytest.approx(
                (float(r["p_fake_darts"]) + float(r["p_fake_lstm"])) / 2, abs=1e-5)
            for m in ("darts", "lstm"):   # each model's own verdict, at its own threshold
                thr = next(x.threshold for x in det2.models if x.name == m)
                assert r[f"verdict_{m}"] == ("fake" if float(r[f"p_fake_{m}"]) >= thr else "real")
    assert "bad" in s.text() and s.any_scored

    # rerun: nothing new, nothing duplicated
    s2 = run_batch([make.folder], out, det2)
    assert s2.skipped == 6 and s2.scored == s2.errors == 0 and s2.any_scored
    assert len(assert_valid_csv(out, cols)) == 6

    # a new file: only that one is scored
    make.clip("d1/new.wav", 0.7, seed=42)
    s3 = run_batch([make.folder], out, det2)
    assert (s3.skipped, s3.scored) == (6, 1)
    rows = assert_valid_csv(out, cols)
    assert len(rows) == 7 and len({r["file"] for r in rows}) == 7

    # --no-resume starts afresh
    s4 = run_batch([make.folder], out, det2, resume=False)
    assert s4.skipped == 0 and s4.scored == 5 and len(assert_valid_csv(out, cols)) == 7


@pytest.mark.parametrize("version", ["before the verdicts", "before the language check"])
def test_a_csv_from_an_earlier_version_resumes_in_its_own_layout(det2, make, tmp_path, version):
    """Resuming a CSV an earlier version wrote (before `verdict_<model>` and the assessment, or
    before the language check's columns) keeps that file one table: new rows are appended in its
    layout, and the summary says how to get the newer columns."""
    files = small_tree(make, n_ok=3, n_bad=0)
    out = tmp_path / "old.csv"
    run_batch([files[0]], out, det2)
    new_cols = csv_columns(["darts", "lstm"])
    old_cols = [c for c in new_cols if c not in SPOKEN_COLUMNS]
    if version == "before the verdicts":
        old_cols = [c for c in old_cols if not c.startswith("verdict_") and c not in ASSESSMENT_COLUMNS]
    rows = read_rows(out)
    with open(out, "w", newline="") as f:   # the same row as an older version wrote it
        w = csv.writer(f, lineterminator="\n")
        w.writerow(old_cols)
        w.writerows([[r[c] for c in old_cols] for r in rows])
    s = run_batch([make.folder], out, det2)
    assert (s.skipped, s.scored) == (1, 2) and s.older_layout
    assert "verdict_<model>" in s.text() and "assessment" in s.text() and "--no-resume" in s.text()
    assert len(assert_valid_csv(out, old_cols)) == 3
    s2 = run_batch([make.folder], out, det2, resume=False)
    assert not s2.older_layout and len(assert_valid_csv(out, new_cols)) == 3


def test_half_written_last_row_is_repaired_on_resume(det2, make, tmp_path):
    small_tree(make, n_ok=3, n_bad=0)
    out = tmp_path / "r.csv"
    run_batch([make.folder], out, det2)
    data = out.read_bytes()
    lines = data.split(b"\n")
    # drop the last complete row and leave half of it, as a kill in mid-write would
    cut = b"\n".join(lines[:-2]) + b"\n" + lines[-2][: len(lines[-2]) // 2]
    out.write_bytes(cut)
    s = run_batch([make.folder], out, det2)
    assert s.repaired_bytes == len(lines[-2]) // 2 and s.scored == 1 and s.skipped == 2
    rows = assert_valid_csv(out, csv_columns(["darts", "lstm"]))
    assert len(rows) == 3 and len({r["file"] for r in rows}) == 3
    assert "half-written" in s.text()


def test_header_only_and_cut_header_files(det2, make, tmp_path):
    small_tree(make, n_ok=2, n_bad=0)
    cols = csv_columns(["darts", "lstm"])
    out = tmp_path / "h.csv"
    out.write_text(",".join(cols) + "\n")
    assert run_batch([make.folder], out, det2).scored == 2
    assert len(assert_valid_csv(out, cols)) == 2
    out.write_text(",".join(cols)[:20])  # killed while writing the header
    assert run_batch([make.folder], out, det2).scored == 2
    assert len(assert_valid_csv(out, cols)) == 2


def test_interrupt_between_rows_keeps_a_valid_csv(det2, make, tmp_path):
    small_tree(make, n_ok=6, n_bad=0)
    out = tmp_path / "i.csv"

    def stop_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    s = run_batch([make.folder], out, det2, progress=stop_after_two)
    assert s.interrupted and s.scored == 2 and "rerun" in s.text()
    assert len(assert_valid_csv(out, csv_columns(["darts", "lstm"]))) == 2
    s2 = run_batch([make.folder], out, det2)
    assert (s2.skipped, s2.scored) == (2, 4)
    assert len(assert_valid_csv(out, csv_columns(["darts", "lstm"]))) == 6


def test_a_second_writer_is_refused(det2, make, tmp_path):
    small_tree(make, n_ok=1, n_bad=0)
    out = tmp_path / "l.csv"
    with _Lock(out):
        with pytest.raises(ConfigError, match="another batch job"):
            run_batch([make.folder], out, det2)


def test_nothing_scored_and_out_is_a_folder(det2, make, tmp_path):
    make.broken("only/bad.wav")
    s = run_batch([make.folder / "only"], tmp_path / "n.csv", det2)
    assert s.errors == 1 and not s.any_scored
    with pytest.raises(ConfigError, match="folder"):
        run_batch([make.folder], tmp_path, det2)


def test_read_results_ignores_a_partial_row(det2, make, tmp_path):
    small_tree(make, n_ok=2, n_bad=1)
    out = tmp_path / "p.csv"
    run_batch([make.folder], out, det2)
    with open(out, "ab") as f:
        f.write(b"/x/half.wav,seed,1.0")
    df = read_results(out)
    assert len(df) == 3 and "p_fake_lstm" in df.columns
    assert df["p_fake_ensemble"].isna().sum() == 1


def test_result_to_row_reports_model_errors(det2, make, monkeypatch):
    p = make.clip("e.wav", 1.0)
    darts = next(m for m in det2.models if m.name == "darts")
    monkeypatch.setattr(darts.module, "forward", lambda *a: (_ for _ in ()).throw(RuntimeError("boom\nline2")))
    res = det2.score(p)
    row = result_to_row(res, ["darts", "lstm"])
    assert row["p_fake_darts"] == "" and row["p_fake_lstm"] != ""
    assert "darts: RuntimeError: boom line2" in row["error"] and "\n" not in row["error"]
    assert row["p_fake_ensemble"] == pytest.approx(row["p_fake_lstm"])


def test_thousand_files_ten_percent_broken(det2, tmp_path):
    """1,000 files, 100 of them broken -> 900 scores and 100 error rows, each file once."""
    import soundfile as sf

    folder = tmp_path / "k"
    folder.mkdir()
    rng = np.random.default_rng(0)
    base = speechlike(0.25, seed=0)
    from conftest import AudioMaker

    maker = AudioMaker(folder)
    names = []
    for i in range(1000):
        sub = folder / f"g{i % 10}"
        sub.mkdir(exist_ok=True)
        if i % 10 == 3:
            names.append(maker.broken(f"g{i % 10}/f{i:04d}.wav", i // 10))
        else:
            p = sub / f"f{i:04d}.wav"
            sf.write(p, (base * rng.uniform(0.2, 1.0)).astype(np.float32), SR, subtype="PCM_16")
            names.append(p)
    out = tmp_path / "k.csv"
    s = run_batch([folder], out, det2, fsync=False)
    assert (s.total, s.scored, s.errors) == (1000, 900, 100)
    rows = assert_valid_csv(out, csv_columns(["darts", "lstm"]))
    assert len(rows) == 1000 and len({r["file"] for r in rows}) == 1000
    assert sum(1 for r in rows if r["p_fake_ensemble"] != "") == 900
    assert sum(1 for r in rows if r["error"] != "" and r["p_fake_ensemble"] == "") == 100
    assert all(("f%04d" % i) in r["file"] for r in rows for i in [int(Path(r["file"]).stem[1:])])


def test_each_row_carries_the_files_warnings(det2, make, tmp_path):
    """The batch CSV says what the Analyze page says about a recording: a cut-off WAV and an
    8 kHz file are scored and flagged, a clean 16 kHz file has an empty warnings cell."""
    clean = make.write("clean.wav", speechlike(4.0), SR)
    make.write("low_rate.wav", speechlike(4.0, sr=8000), 8000)
    data = clean.read_bytes()
    (make.folder / "cut.wav").write_bytes(data[: len(data) // 2])
    out = tmp_path / "w.csv"
    run_batch([make.folder], out, det2)
    rows = {Path(r["file"]).name: r for r in assert_valid_csv(out, csv_columns(["darts", "lstm"]))}
    assert all(r["p_fake_ensemble"] and not r["error"] for r in rows.values())
    assert rows["clean.wav"]["warnings"] == ""
    assert "cut off or damaged" in rows["cut.wav"]["warnings"] and "promises 4.0 s" in rows["cut.wav"]["warnings"]
    assert rows["low_rate.wav"]["warnings"].startswith("Low sample rate (8000 Hz)")


def test_resuming_with_the_other_speech_check_setting_is_refused(det2, make, tmp_path):
    """A CSV scored with the language check off must not gain rows with it on (or the reverse):
    the table would mix rows with and without its columns. Refused, with what to do; the file
    is left as it was."""
    from core.batch import refuse_other_speech_check
    from core.spoken import CHECK_FAILED

    files = small_tree(make, n_ok=3, n_bad=1)
    out = tmp_path / "off.csv"
    run_batch([files[0], files[-1]], out, det2)          # det2 runs without the check
    refuse_other_speech_check(out, spoken_check=False)    # the same setting: fine
    with pytest.raises(ConfigError, match="check off; resume it with --no-speech-check"):
        refuse_other_speech_check(out, spoken_check=True)
    # the same file as a run with the check on would have written it
    rows = read_rows(out)
    cols = csv_columns(["darts", "lstm"])
    for r in rows:
        if r["p_fake_ensemble"]:
            r.update(language="en", language_p="0.97", no_speech_p="0.01")
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    on = out.read_bytes()
    with pytest.raises(ConfigError, match="check on; resume it with the speech check on"):
        run_batch([make.folder], out, det2)
    assert out.read_bytes() == on, "a refused resume writes nothing"
    refuse_other_speech_check(out, spoken_check=True)
    # a row whose check could not run counts as checked; an error row (no score) counts as neither
    for r in rows:
        r.update(language="", language_p="", no_speech_p="")
        if r["p_fake_ensemble"]:
            r["warnings"] = f"{CHECK_FAILED} (RuntimeError: boom)"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    refuse_other_speech_check(out, spoken_check=True)
