"""The Batch scoring page: uploads and a server folder, the table, the plots and the CSV."""

from __future__ import annotations

import csv
import io
import os
import re

import numpy as np
import pytest

from app_helpers import (APP_MODELS, arr, find_chart, media_files, new_app, no_exception,  # noqa: F401
                         trace_names, write_clip)
from core.batch import csv_columns, run_batch

PAGE = "pages/2_Batch_scoring.py"
BAD = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"garbage" * 10


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three good files in three formats and rates, and one broken file, in one folder."""
    d = tmp_path_factory.mktemp("batch")
    write_clip(d / "one.wav", 4.0, seed=1)
    write_clip(d / "two.flac", 9.0, seed=2, sr=22_050, format="FLAC")
    write_clip(d / "three.ogg", 3.0, seed=4, sr=48_000, format="OGG", subtype="VORBIS")
    (d / "zz_broken.wav").write_bytes(BAD)
    return d


def table(at):
    frames = [d.value for d in at.dataframe if "p_fake_ensemble" in d.value.columns]
    assert len(frames) == 1
    return frames[0]


def norm(s: str) -> str:
    return re.sub(r"0x[0-9a-f]+", "0x", s)


def test_uploads_give_a_row_per_file_and_the_clis_csv(app_env, engine, clips, media_files, tmp_path):
    names = ["one.wav", "two.flac", "three.ogg", "zz_broken.wav"]
    at = new_app(PAGE)
    up = at.file_uploader(key="batch_upload")
    for n in names:
        up.upload(n, (clips / n).read_bytes(), "audio/wav")
    at.run()
    assert at.button(key="batch_run").label == "Score 4 files"
    at.button(key="batch_run").click().run()
    no_exception(at)

    expected = {r.file: r for r in engine.score_many([(n, (clips / n).read_bytes()) for n in names])}
    df = table(at)
    assert sorted(df.columns) == sorted(csv_columns(APP_MODELS) + ["name"])
    assert list(df.columns[:3]) == ["name", "verdict", "p_fake_ensemble"]
    assert sorted(df["file"]) == sorted(names) and list(df["name"]) == list(df["file"])
    for _, row in df.iterrows():
        exp = expected[row["file"]]
        if exp.error:
            assert norm(row["error"]) == norm(exp.error) and np.isnan(row["p_fake_ensemble"])
            assert row["verdict"] == ""
            continue
        for m in APP_MODELS:
            assert row[f"p_fake_{m}"] == pytest.approx(exp.models[m].p_fake, abs=2e-6)
        assert row["p_fake_ensemble"] == pytest.approx(exp.ensemble.p_fake, abs=2e-6)
        assert row["verdict"] == exp.ensemble.verdict
        assert row["original_rate"] == exp.facts.original_rate
        for m in APP_MODELS:
            assert row[f"verdict_{m}"] == exp.models[m].verdict
    # the bad file is listed with its error, not dropped
    assert any(norm(expected["zz_broken.wav"].error) == norm(e.value) for e in at.error)

    # the CSV: same header as the CLI's batch on the same files, same numbers
    data = media_files(at.download_button(key="batch_csv"))
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    cli_out = tmp_path / "cli.csv"
    run_batch([clips], cli_out, engine, fsync=False)
    cli_rows = list(csv.reader(io.StringIO(cli_out.read_text())))
    assert rows[0] == cli_rows[0] == csv_columns(APP_MODELS)
    assert len(rows) == len(cli_rows) == 1 + len(names)
    ours = {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}
    theirs = {os.path.basename(r[0]): dict(zip(cli_rows[0], r)) for r in cli_rows[1:]}
    assert set(ours) == set(theirs)
    for f, r in ours.items():
        c = theirs[f]
        for col in rows[0]:
            if col in ("file", "error"):
                continue
            if col.startswith("p_fake_") and r[col]:
                assert float(r[col]) == pytest.approx(float(c[col]), abs=2e-6), (f, col)
            else:
                assert r[col] == c[col], (f, col)
        assert bool(r["error"]) == bool(c["error"])

    hist = find_chart(at, "P(fake) per model")
    assert trace_names(hist) == [*APP_MODELS, "ensemble"]
    for t in hist["data"]:
        assert len(arr(t["x"])) == 3  # the three good files
    counts = find_chart(at, "Ensemble verdicts")["data"][0]
    got = dict(zip(counts["x"], arr(counts["y"]).tolist()))
    verdicts = [r.ensemble.verdict for r in expected.values() if not r.error]
    assert got == {"fake": verdicts.count("fake"), "real": verdicts.count("real"), "error": 1}


def test_filters_and_custom_threshold(app_env, engine, clips):
    names = ["one.wav", "two.flac", "zz_broken.wav"]
    at = new_app(PAGE)
    for n in names:
        at.file_uploader(key="batch_upload").upload(n, (clips / n).read_bytes(), "audio/wav")
    at.run()
    at.button(key="batch_run").click().run()
    at.multiselect(key="batch_filter_verdict").set_value(["error"]).run()
    assert list(table(at)["file"]) == ["zz_broken.wav"]
    at.multiselect(key="batch_filter_verdict").set_value(["fake", "real", "error"])
    at.text_input(key="batch_filter_text").input("TWO").run()
    assert list(table(at)["file"]) == ["two.flac"]
    at.text_input(key="batch_filter_text").input("").run()
    # a custom threshold re-judges without rescoring: the CSV's threshold column follows it
    p = engine.score((clips / "one.wav").read_bytes()).ensemble.p_fake
    thr = float(np.clip(round(p, 2) + 0.01, 0, 1))
    at.session_state["dd_threshold_mode"] = "custom"
    at.session_state["dd_custom_threshold"] = thr
    at.run()
    no_exception(at)
    df = table(at).set_index("file")
    assert df.loc["one.wav", "threshold_ensemble"] == pytest.approx(thr)
    assert df.loc["one.wav", "verdict"] == "real"


def test_folder_under_the_root_only(app_env, engine, tmp_path, monkeypatch, media_files):
    root = tmp_path / "root"
    write_clip(root / "real" / "a.wav", 2.0, seed=1)
    write_clip(root / "fake" / "b.wav", 3.0, seed=2)
    write_clip(root / "fake" / "deeper" / "c c.wav", 2.5, seed=3)
    outside = tmp_path / "outside"
    write_clip(outside / "secret.wav", 2.0, seed=9)
    os.symlink(outside, root / "escape")
    monkeypatch.setenv("DEEPFAKE_DATA_ROOT", str(root))

    at = new_app(PAGE)
    at.radio(key="batch_source").set_value("folder").run()
    no_exception(at)
    assert any(str(root.resolve()) in m.value for m in at.markdown)
    for bad, why in (("../outside", "'..' is not allowed"), (str(outside), "is outside the data root"),
                     ("escape", "leads outside the data root")):
        at.text_input(key="batch_folder").input(bad).run()
        no_exception(at)
        assert any(why in e.value for e in at.error), (bad, [e.value for e in at.error])
        assert at.button(key="batch_run").disabled
    at.text_input(key="batch_folder").input(str(root / "fake")).run()   # absolute, under the root
    no_exception(at)
    assert not at.error and at.button(key="batch_run").label == "Score 2 files"
    at.text_input(key="batch_folder").input("").run()
    assert at.button(key="batch_run").label == "Score 3 files"
    at.button(key="batch_run").click().run()
    no_exception(at)
    df = table(at)
    assert sorted(df["file"]) == ["fake/b.wav", "fake/deeper/c c.wav", "real/a.wav"]
    # the name first: the file name, not the folders a long path starts with
    assert list(df.columns[:1]) == ["name"] and sorted(df["name"]) == ["a.wav", "b.wav", "c c.wav"]
    assert not any("secret" in f for f in df["file"])
    exp = engine.score(root / "fake" / "b.wav")
    assert df.set_index("file").loc["fake/b.wav", "p_fake_ensemble"] == pytest.approx(exp.ensemble.p_fake, abs=2e-6)
    assert at.session_state["dd_last_batch"].origin.startswith("folder")


def test_no_root_configured_says_how(app_env):
    at = new_app(PAGE)
    at.radio(key="batch_source").set_value("folder").run()
    no_exception(at)
    assert any("DEEPFAKE_DATA_ROOT" in i.value for i in at.info)
    assert at.button(key="batch_run").disabled


def test_sessions_do_not_share_batches(app_env, clips):
    a, b = new_app(PAGE), new_app(PAGE)
    a.file_uploader(key="batch_upload").upload("one.wav", (clips / "one.wav").read_bytes(), "audio/wav")
    a.run()
    a.button(key="batch_run").click().run()
    b.run()
    no_exception(a), no_exception(b)
    assert list(table(a)["file"]) == ["one.wav"]
    assert "dd_last_batch" not in b.session_state
    assert not [d for d in b.dataframe if "p_fake_ensemble" in d.value.columns]
    b.switch_page("pages/3_Compare_models.py").run()
    no_exception(b)
    assert b.radio(key="compare_source").value == "uploads"
    assert any("score a batch on the Batch scoring page" in i.value for i in b.info)
    assert not b.get("plotly_chart")


def test_a_failing_model_leaves_the_others_in_the_row(app_env, engine, clips, monkeypatch):
    from core.loading import LoadedModel

    original = LoadedModel.p_fake

    def broken(self, feats, *args):
        if self.name == "lstm":
            raise RuntimeError("simulated lstm failure")
        return original(self, feats, *args)

    monkeypatch.setattr(LoadedModel, "p_fake", broken)
    at = new_app(PAGE)
    at.file_uploader(key="batch_upload").upload("one.wav", (clips / "one.wav").read_bytes(), "audio/wav")
    at.run()
    at.button(key="batch_run").click().run()
    no_exception(at)
    row = table(at).iloc[0]
    assert np.isnan(row["p_fake_lstm"]) and "lstm: RuntimeError: simulated lstm failure" in row["error"]
    monkeypatch.setattr(LoadedModel, "p_fake", original)
    exp = engine.score((clips / "one.wav").read_bytes())
    others = [m for m in APP_MODELS if m != "lstm"]
    for m in others:
        assert row[f"p_fake_{m}"] == pytest.approx(exp.models[m].p_fake, abs=2e-6)
    assert row["p_fake_ensemble"] == pytest.approx(np.mean([exp.models[m].p_fake for m in others]), abs=2e-6)
    assert any("model lstm failed" in w.value for w in at.warning)
