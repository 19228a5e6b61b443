"""The dashboard's streamlit-free helpers: display data, thresholds, labels, tables, cards."""

from __future__ import annotations

import csv
import io
import threading

import numpy as np
import pandas as pd
import pytest

from app_helpers import APP_MODELS, write_clip
from core.batch import csv_columns, result_to_row
from core.errors import AudioError
from core.inference import Detector, FileResult, ModelScore, WindowScore
from webui import cards, display, tables


def _score(name, p, thr=0.5, windows=()):
    return ModelScore(name, p, thr, "card", None if p is None else ("fake" if p >= thr else "real"),
                      [WindowScore(*w) for w in windows], error=None if p is not None else "boom")


def _result(file, ps: dict, ens_windows=((0, 1, .2), (1, 2, .7), (2, 3, .9))):
    models = {n: _score(n, p, windows=[(0, 1, p or 0), (1, 2, p or 0)]) for n, p in ps.items()}
    ok = [p for p in ps.values() if p is not None]
    return FileResult(file, None, models, _score("ensemble", float(np.mean(ok)), windows=ens_windows), "seed")


# -- display --------------------------------------------------------------------------------


def test_audio_view_is_bounded_and_finds_a_tone(tmp_path):
    import soundfile as sf

    sr, secs = 8_000, 95.0
    t = np.arange(int(sr * secs)) / sr
    x = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    x[int(40 * sr):int(41 * sr)] = 0.0  # a second of silence at 40 s
    path = tmp_path / "tone.wav"
    sf.write(path, x, sr)
    v = display.audio_view(path, max_columns=400)
    assert v.duration_s == pytest.approx(secs, abs=0.01)
    assert len(v.env_t) <= 400 and v.spec_db.shape[1] <= 400
    assert v.spec_db.shape[0] == len(v.spec_f) == display.spectrogram_geometry(sr, secs, 400)[2]
    assert v.spec_rate == sr and v.spec_f.max() < sr / 2
    assert v.env_t[-1] == pytest.approx(secs, abs=secs / 200)
    assert v.spec_t[-1] == pytest.approx(secs, abs=secs / 100)
    assert np.all(v.env_max >= v.env_min) and v.env_max.max() == pytest.approx(0.5, abs=0.02)
    loud = v.spec_db[:, v.spec_t < 39].mean(axis=1)
    assert abs(v.spec_f[int(np.argmax(loud))] - 1000.0) < 120  # the band nearest 1 kHz is the loudest
    quiet = (v.env_t > 40.2) & (v.env_t < 40.8)
    assert quiet.any() and np.abs(v.env_max[quiet]).max() < 0.05
    assert v.spec_db.max() == 0.0 and v.spec_db.min() >= display.DB_FLOOR
    silent = (v.spec_t > 40.2) & (v.spec_t < 40.8)
    assert silent.any() and np.all(v.spec_db[:, silent] == display.DB_FLOOR), "silence is drawn as silence"


def test_spectrogram_reaches_the_files_nyquist_and_silence_stays_dark(tmp_path):
    """A quiet 48 kHz file with a 12 kHz tone, then digital silence: the spectrogram is drawn at
    the file's rate up to 24 kHz (the tone shows, though the models never hear it), in dB
    relative to the file's peak, so the quiet tone is the top of the scale and silence the floor."""
    import soundfile as sf

    sr = 48_000
    t = np.arange(2 * sr) / sr
    x = np.concatenate([0.01 * np.sin(2 * np.pi * 12_000 * t), np.zeros(sr)]).astype(np.float32)
    sf.write(tmp_path / "hi.wav", x, sr)
    v = display.audio_view(tmp_path / "hi.wav")
    assert v.spec_rate == sr and v.nyquist_hz == 24_000 and 20_000 < v.spec_f.max() < 24_000
    loud = v.spec_db[:, v.spec_t < 1.8].mean(axis=1)
    assert abs(v.spec_f[int(np.argmax(loud))] - 12_000) < 400
    assert v.spec_db.max() == 0.0
    tail = v.spec_t > 2.2
    assert np.all(v.spec_db[:, tail] == display.DB_FLOOR)
    low = v.spec_f < 8_000   # speech bands without content: far below the tone, near the floor
    assert v.spec_db[low][:, v.spec_t < 1.8].max() < -40


def test_audio_view_refuses_garbage_with_the_engines_error():
    with pytest.raises(AudioError):
        display.audio_view(b"definitely not audio" * 10, "x.wav")


# -- thresholds and one-file tables -------------------------------------------------------------


def test_apply_threshold_rejudges_and_recounts_windows():
    r = _result("a.wav", {"resnet": 0.3, "lstm": 0.8, "gnn": None})
    assert tables.apply_threshold(r, None) is r
    c = tables.apply_threshold(r, 0.85, "custom")
    assert [m.verdict for m in c.models.values()] == ["real", "real", None]
    assert c.models["gnn"].error == "boom" and c.models["gnn"].threshold == 0.85
    assert c.ensemble.verdict == "real" and c.ensemble.frac_windows_over == pytest.approx(1 / 3)
    assert {m.threshold_source for m in c.models.values()} == {"custom"}
    assert r.models["lstm"].verdict == "fake", "the original is left alone"
    assert tables.over_threshold_spans(r.ensemble.windows, 0.5) == [(1, 3)]
    assert tables.over_threshold_spans(r.ensemble.windows, 0.95) == []


def test_model_table_lists_models_then_ensemble():
    r = _result("a.wav", {"resnet": 0.3, "gnn": None})
    df = tables.model_table(r, {"resnet": "ResNet18"})
    assert list(df["model"]) == ["resnet", "gnn", "ensemble"]
    assert list(df["verdict"]) == ["real", "error", "real"] and df.loc[1, "error"] == "boom"


# -- many files -----------------------------------------------------------------------------------


def test_csv_bytes_are_the_rows_of_result_to_row():
    names = ["resnet", "lstm"]
    rs = [_result("a.wav", {"resnet": 0.1, "lstm": 0.3}), _result("b, \"odd\".wav", {"resnet": 0.9, "lstm": 0.7}),
          FileResult("bad.wav", None, {}, None, "seed", "bad.wav: cannot decode")]
    rows = list(csv.reader(io.StringIO(tables.csv_bytes(rs, names).decode())))
    assert rows[0] == csv_columns(names)
    for r, got in zip(rs, rows[1:]):
        want = result_to_row(r, names)
        assert got == [str(want[c]) for c in rows[0]]
    df = tables.batch_frame(rs, names)
    assert len(df) == 3 and np.isnan(df.loc[2, "p_fake_ensemble"]) and df.loc[2, "error"]
    assert df["p_fake_resnet"].dtype == float
    assert tables.verdict_counts(rs) == {"fake": 1, "real": 1, "error": 1}
    order = tables.display_order(list(df.columns))
    assert sorted(order) == sorted(df.columns) and order[:3] == ["verdict", "p_fake_ensemble", "p_fake_resnet"]


def test_matrices_agreement_and_split_files():
    names = ["a", "b", "c"]
    rs = [_result("f1", {"a": .9, "b": .8, "c": .7}), _result("f2", {"a": .1, "b": .2, "c": .9}),
          _result("f3", {"a": .6, "b": .1, "c": None}), _result("f4", {"a": .1, "b": .1, "c": .1})]
    s = tables.score_matrix(rs, names)
    v = tables.verdict_matrix(rs, names)
    assert list(s.columns) == names + ["ensemble"] and s.loc["f3", "c"] != s.loc["f3", "c"]
    assert v.loc["f2"].tolist() == [0, 0, 1]
    pct, kap, fleiss, n = tables.agreement(v)
    assert n == 3  # f3 has a failed model: left out of the agreement
    assert pct.loc["a", "b"] == 1.0 and pct.loc["a", "c"] == pytest.approx(2 / 3)
    assert kap.loc["a", "a"] == 1.0 and np.isfinite(fleiss)
    split = tables.split_files(v, s.drop(columns="ensemble"))
    assert list(split["file"]) == ["f3", "f2"] or list(split["file"]) == ["f2", "f3"]
    row = split.set_index("file").loc["f2"]
    assert row["models saying fake"] == "c" and row["models saying real"] == "a, b"
    assert row["fake votes"] == 1 and row["of"] == 3


# -- labels ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path,label", [("real/a.wav", 0), ("x/fake/a.wav", 1), ("data\\FAKE\\a.wav", 1),
                                        ("real/tts/fake/a.wav", 1), ("fake/real/a.wav", 0),
                                        ("bona-fide/a.wav", 0), ("spoof/x/a.wav", 1), ("fakes/a.wav", None),
                                        ("real.wav", None)])
def test_label_from_path(path, label):
    assert tables.label_from_path(path) == label


def test_labels_from_a_mapped_table():
    table = pd.DataFrame({"clip": ["data/x/a.wav", "b.wav", "dup/c.wav", "other/c.wav", "e.wav"],
                          "truth": ["spoof", "bonafide", "spoof", "bonafide", ""]})
    files = ["x/a.wav", "uploads/b.wav", "c.wav", "e.wav", "missing.wav"]
    labels, missing = tables.labels_from_table(table, "clip", "truth", ["spoof"], files)
    assert labels == {"x/a.wav": 1, "uploads/b.wav": 0}
    assert missing == ["c.wav", "e.wav", "missing.wav"]  # c.wav is ambiguous, e.wav has no label
    assert tables.default_fake_values(["bonafide", "spoof", "FAKE", "real"]) == ["spoof", "FAKE"]


def test_label_metrics_match_core_metrics():
    from core import metrics

    rng = np.random.default_rng(0)
    files = [f"f{i}" for i in range(30)]
    y = np.array([i % 2 for i in range(30)])
    s = pd.DataFrame({"m": np.clip(y * 0.3 + rng.uniform(0, 0.7, 30), 0, 1)}, index=files)
    v = (s >= 0.5).astype(float)
    lm = tables.label_metrics(s, v, dict(zip(files, y)))
    row = lm["summary"].iloc[0]
    assert row["EER"] == pytest.approx(metrics.eer(y, s["m"])[0])
    assert row["AUC"] == pytest.approx(metrics.roc_auc(y, s["m"]))
    assert np.array_equal(lm["confusion"]["m"], metrics.confusion(y, v["m"].astype(int)))
    one_class = tables.label_metrics(s, v, {f: 1 for f in files})
    assert np.isnan(one_class["summary"].iloc[0]["EER"]) and not one_class["roc"]


# -- cards ----------------------------------------------------------------------------------------


def test_card_sections_of_a_trained_card():
    card = {"name": "resnet", "family": "ResNet (compact)", "description": "4-stage ResNet",
            "architecture": {"class": "SeedAverage", "members": 3, "member_class": "CompactCNN"},
            "parameters": 219123,
            "training_data": {"source": "../shared/data", "clips": 735,
                              "clips_per_group": {"r9y9": {"real": 61, "fake": 84}, "fsdd": {"real": 90, "fake": 0}}},
            "validation": {"protocol": "leave-one-source-out over the pool's source repositories; whole clips",
                           "pooled_eer": 0.123, "pooled_auc": 0.95,
                           "per_group": {"r9y9": {"eer": 0.1, "auc": 0.97}, "yourtts": {"eer": 0.2, "auc": 0.9}}},
            "threshold": 0.42, "threshold_source": "EER threshold on pooled validation scores"}
    secs = {title: (kind, body) for kind, title, body in cards.card_sections(card)}
    assert secs["Description"] == ("text", "4-stage ResNet")
    arch = dict(zip(secs["Architecture"][1]["metric"], secs["Architecture"][1]["value"]))
    assert arch == {"class": "SeedAverage", "members": "3", "member class": "CompactCNN"}
    assert secs["Parameters"] == ("text", "219123")
    assert secs["Validation: protocol"][0] == "text"
    figs = dict(zip(secs["Validation"][1]["metric"], secs["Validation"][1]["value"]))
    assert figs == {"pooled eer": "0.123", "pooled auc": "0.95"}
    per = secs["Validation: per group"][1]
    assert list(per["per group"]) == ["r9y9", "yourtts"] and list(per["eer"]) == [0.1, 0.2]
    counts = secs["Training data: clips per group"][1].set_index("clips per group")
    assert counts.loc["r9y9", "fake"] == 84
    assert cards.card_threshold(card) == ("0.4200", "EER threshold on pooled validation scores")


# -- the cached detector is shared by every session: concurrent scoring must not mix ------------


def test_one_detector_scores_two_files_at_once_without_mixing(seed_weights, tmp_path):
    det = Detector.from_set("seed", models=",".join(APP_MODELS), weights_dir=seed_weights, allow_download=False)
    a = write_clip(tmp_path / "a.wav", 9.0, seed=1).read_bytes()
    b = write_clip(tmp_path / "b.wav", 6.0, seed=2, sr=22_050).read_bytes()
    alone = {n: det.score(d, name=n) for n, d in (("a", a), ("b", b))}
    got: dict = {}

    def work(n, d):
        for i in range(3):
            got[(n, i)] = det.score(d, name=n)

    threads = [threading.Thread(target=work, args=x) for x in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(got) == 6
    for (n, _), r in got.items():
        assert r.file == n
        for m in APP_MODELS:
            assert r.models[m].p_fake == pytest.approx(alone[n].models[m].p_fake, abs=1e-6)


def test_window_choices_put_the_most_suspicious_moment_first():
    cells = [(i * 0.5, i * 0.5 + 0.5, p) for i, p in enumerate(np.sin(np.linspace(0, 9, 1000)) ** 2)]
    r = _result("long.wav", {"a": 0.5}, ens_windows=cells)
    every = tables.window_choices(r, limit=2000)
    assert len(every) == 1000 and every[0][2] == max(c[2] for c in cells)
    assert [c[2] for c in every] == sorted((c[2] for c in cells), reverse=True)
    few = tables.window_choices(r, limit=50)
    assert few == every[:50] and all(c[3] for c in few)   # the top 50 are all over threshold 0.5
    tied = _result("t.wav", {"a": 0.5}, ens_windows=[(0, .5, .7), (.5, 1, .9), (1, 1.5, .7)])
    assert [c[0] for c in tables.window_choices(tied)] == [.5, 0, 1]   # equals in time order


def test_a_click_on_the_timeline_gives_the_windows_start():
    assert tables.start_from_selection([{"x": 3.2, "customdata": [3.0, 3.5]}]) == 3.0
    assert tables.start_from_selection([{"x": 7.25}]) == 7.25
    assert tables.start_from_selection([{"x": -0.1}]) == 0.0
    assert tables.start_from_selection([]) is None and tables.start_from_selection(None) is None
    assert tables.start_from_selection([{"x": "a"}, {"x": 2.0}]) == 2.0
    m = _score("m", 0.5, windows=[(0, 1, .2), (1, 2, .8), (2, 3, .8)])
    assert tables.suspicious_window(m) == (1, 2) and tables.suspicious_window(_score("x", None)) is None


def test_short_labels_show_the_name_and_only_the_folders_that_tell_names_apart():
    paths = ["clips/speechresearch/a/very/long/folder/gt/001.wav", "clips/x/fake/001.wav", "clips/x/b.wav", "c.wav"]
    assert tables.short_labels(paths) == ["gt/001.wav", "fake/001.wav", "b.wav", "c.wav"]
    assert tables.short_labels(["a/x.wav", "a/x.wav"]) == ["a/x.wav", "a/x.wav"]   # same path: as far as it goes
    df = tables.with_names(pd.DataFrame({"file": ["deep/er/one.wav", "two.wav"]}))
    assert list(df["name"]) == ["one.wav", "two.wav"] and list(df["file"]) == ["deep/er/one.wav", "two.wav"]
    order = tables.display_order(["file", "set", "verdict", "verdict_a", "p_fake_a", "p_fake_ensemble", "name"])
    assert order[:5] == ["name", "verdict", "p_fake_ensemble", "p_fake_a", "verdict_a"]


def test_breakdown_per_source_and_generator():
    """Generators hold only fakes: each is ranked against every real file; accuracy is per group."""
    files = ["r1", "r2", "r3", "f1", "f2", "f3", "f4"]
    labels = {"r1": 0, "r2": 0, "r3": 0, "f1": 1, "f2": 1, "f3": 1, "f4": 1}
    scores = pd.DataFrame({"m": [.1, .2, .6, .9, .8, .3, .05]}, index=files)
    verdicts = (scores >= 0.5).astype(float)
    gen = {"r1": "ground_truth", "r2": "ground_truth", "r3": "ground_truth", "f1": "vits", "f2": "vits",
           "f3": "wavegan", "f4": "wavegan"}
    auc = tables.group_metrics(scores, verdicts, labels, gen, "AUC").set_index("group")
    assert auc.loc["vits", "m"] == 1.0 and auc.loc["vits", "compared with"] == "all real files"
    assert auc.loc["wavegan", "m"] == pytest.approx(2 / 6)    # f3 beats r1 and r2, of 2 x 3 pairs
    assert auc.loc["ground_truth", "compared with"] == "all fake files"
    acc = tables.group_metrics(scores, verdicts, labels, gen, "accuracy at threshold").set_index("group")
    assert acc.loc["vits", "m"] == 1.0 and acc.loc["wavegan", "m"] == 0.0
    assert acc.loc["ground_truth", "m"] == pytest.approx(2 / 3) and acc.loc["ground_truth", "files"] == 3
    src = {f: "repoA" for f in ("r1", "f1", "f2")} | {f: "repoB" for f in ("r2", "r3", "f3", "f4")}
    eer = tables.group_metrics(scores, verdicts, labels, src, "EER").set_index("group")
    assert eer.loc["repoA", "compared with"] == "its own files" and eer.loc["repoA", "m"] == 0.0
    assert tables.auc_note(0.3).startswith("ranks inversely") and tables.auc_note(0.9) == ""
    table = pd.DataFrame({"path": ["x/r1", "x/f3"], "label": ["real", "fake"], "generator": ["ground_truth", "wavegan"],
                          "source_repo": ["o/a", ""]})
    groups = tables.groups_from_table(table, "path", ["r1", "f3", "other"])
    assert groups == {"source_repo": {"r1": "o/a"}, "generator": {"r1": "ground_truth", "f3": "wavegan"}}


def test_the_unseen_sentence_gives_the_ensembles_eer_with_its_interval():
    import json
    from pathlib import Path
    from types import SimpleNamespace

    from webui.cards import unseen_sentence

    card = json.loads((Path(__file__).resolve().parents[1] / "assets" / "models" / "ensemble.json").read_text())
    r = card["dev_eval"]["restored"]
    text = unseen_sentence(SimpleNamespace(loaded=SimpleNamespace(ensemble_card=card)))
    lo, hi = r["eer_interval"]
    assert f"**{r['eer']:.0%}** (95% interval {lo:.0%}-{hi:.0%})" in text
    del r["eer_interval"]
    assert "interval" not in unseen_sentence(SimpleNamespace(loaded=SimpleNamespace(ensemble_card=card)))
