"""The Compare page: scores side by side, agreement, split files, metrics against labels."""

from __future__ import annotations

import numpy as np
import pytest

from app_helpers import APP_MODELS, arr, find_chart, new_app, no_exception, trace_names, write_clip
from core import metrics

BATCH, PAGE = "pages/2_Batch_scoring.py", "pages/3_Compare_models.py"


@pytest.fixture(scope="module")
def labelled_root(tmp_path_factory):
    """real/ and fake/ folders, 4 files each, plus one broken file."""
    root = tmp_path_factory.mktemp("labelled")
    for i in range(4):
        write_clip(root / "real" / f"r{i}.wav", 2.0 + i, seed=20 + i)
        write_clip(root / "fake" / f"f{i}.wav", 2.5 + i, seed=40 + i, sr=22_050)
    (root / "fake" / "broken.wav").write_bytes(b"not audio" * 30)
    return root


def expected(engine, root):
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.wav") if "broken" not in p.name)
    res = {f: engine.score(root / f) for f in files}
    scores = {m: np.array([res[f].models[m].p_fake for f in files]) for m in APP_MODELS}
    scores["ensemble"] = np.array([res[f].ensemble.p_fake for f in files])
    verdicts = {m: np.array([res[f].models[m].verdict == "fake" for f in files], int) for m in APP_MODELS}
    verdicts["ensemble"] = np.array([res[f].ensemble.verdict == "fake" for f in files], int)
    labels = np.array([1 if f.startswith("fake/") else 0 for f in files])
    return files, scores, verdicts, labels


def test_compare_last_batch_with_folder_labels(app_env, engine, labelled_root, monkeypatch):
    monkeypatch.setenv("DEEPFAKE_DATA_ROOT", str(labelled_root))
    at = new_app(BATCH)
    at.radio(key="batch_source").set_value("folder").run()
    at.button(key="batch_run").click().run()
    no_exception(at)
    at.switch_page(PAGE).run()
    no_exception(at)
    files, scores, verdicts, labels = expected(engine, labelled_root)
    assert at.radio(key="compare_source").value == "batch"
    assert any("broken.wav" in e.value for e in at.error), "the bad file is listed, not dropped"

    bars = find_chart(at, "P(fake) per file and model")
    assert trace_names(bars) == [*APP_MODELS, "ensemble"]
    for t in bars["data"]:
        assert list(t["x"]) == files
        assert np.allclose(arr(t["y"]), scores[t["name"]], atol=2e-6)
    assert list(bars["layout"]["xaxis"]["ticktext"]) == [f.split("/")[-1] for f in files]   # names, not folders
    assert bars["layout"]["legend"]["y"] > 1, "the legend sits above the plot, clear of the file names"
    heat_fig = find_chart(at, "Files x models")
    heat = heat_fig["data"][0]
    assert list(heat["x"]) == [*APP_MODELS, "ensemble"] and list(heat["y"]) == files
    assert list(heat_fig["layout"]["yaxis"]["ticktext"]) == [f.split("/")[-1] for f in files]
    assert np.allclose(arr(heat["z"]), np.stack([scores[m] for m in heat["x"]], axis=1), atol=2e-6)

    pct = find_chart(at, "Percent agreement")["data"][0]
    kap = find_chart(at, "Cohen's kappa")["data"][0]
    for i, a in enumerate(APP_MODELS):
        for j, b in enumerate(APP_MODELS):
            assert arr(pct["z"])[i, j] == pytest.approx(metrics.percent_agreement(verdicts[a], verdicts[b]))
            assert arr(kap["z"])[i, j] == pytest.approx(metrics.cohen_kappa(verdicts[a], verdicts[b]))
    fleiss = metrics.fleiss_kappa(np.stack([verdicts[m] for m in APP_MODELS], axis=1))
    shown = {m.label: m.value for m in at.metric}
    assert shown["Fleiss' kappa (all models)"] == f"{fleiss:.3f}"
    n_split = sum(1 for k in range(len(files)) if 0 < sum(verdicts[m][k] for m in APP_MODELS) < len(APP_MODELS))
    assert shown["Files where the models split"] == str(n_split)
    if n_split:
        split = next(d.value for d in at.dataframe if "models saying fake" in d.value.columns)
        assert len(split) == n_split

    # labels from the real/ and fake/ folders are picked up on their own
    assert at.radio(key="compare_label_source").value == "folders"
    summary = next(d.value for d in at.dataframe if "EER" in d.value.columns).set_index("model")
    for m in [*APP_MODELS, "ensemble"]:
        e, t = metrics.eer(labels, scores[m])
        assert summary.loc[m, "EER"] == pytest.approx(e, abs=1e-6)
        assert summary.loc[m, "AUC"] == pytest.approx(metrics.roc_auc(labels, scores[m]), abs=1e-6)
        assert summary.loc[m, "files"] == len(files)
    roc = find_chart(at, "ROC curves")
    assert trace_names(roc)[0] == "chance"
    assert [n.split(" ")[0] for n in trace_names(roc)[1:]] == [*APP_MODELS, "ensemble"]
    inverse = [m for m in [*APP_MODELS, "ensemble"] if metrics.roc_auc(labels, scores[m]) < 0.5]
    notes = [w.value for w in at.warning if "AUC below 0.5" in w.value]
    assert bool(notes) == bool(inverse) and all(m in notes[0] for m in inverse)
    for m in inverse:
        assert summary.loc[m, "note"].startswith("ranks inversely")
    for m in [*APP_MODELS, "ensemble"]:
        cm = find_chart(at, f"{m}<br><sup>confusion at its threshold")
        want = metrics.confusion(labels, verdicts[m])
        assert np.array_equal(arr(cm["data"][0]["z"]), want)


def test_compare_uploads_with_a_mapped_label_column(app_env, engine, tmp_path):
    clips = {f"clip{i}.wav": write_clip(tmp_path / f"clip{i}.wav", 2.0 + i / 2, seed=60 + i).read_bytes()
             for i in range(5)}
    truth = {"clip0.wav": "bonafide", "clip1.wav": "spoof", "clip2.wav": "spoof", "clip3.wav": "bonafide",
             "clip4.wav": "spoof"}
    gens = {"bonafide": "ground_truth"}
    manifest = "recording,truth,speaker,source_repo,generator\n" + "".join(
        f"some/dir/{k},{v},s{i},{'o/a' if i < 3 else 'o/b'},{gens.get(v, 'vits' if i % 2 else 'hifigan')}\n"
        for i, (k, v) in enumerate(truth.items()))
    at = new_app(PAGE)
    assert at.radio(key="compare_source").value == "uploads"
    for n, b in clips.items():
        at.file_uploader(key="compare_upload").upload(n, b, "audio/wav")
    at.run()
    no_exception(at)
    assert at.radio(key="compare_label_source").value == "none"
    at.radio(key="compare_label_source").set_value("table").run()
    at.file_uploader(key="compare_labels_csv").upload("labels.csv", manifest.encode(), "text/csv")
    at.run()
    no_exception(at)
    at.selectbox(key="compare_path_col").set_value("recording")
    at.selectbox(key="compare_label_col").set_value("truth").run()
    at.multiselect(key="compare_fake_values_truth").set_value(["spoof"]).run()
    no_exception(at)
    assert any("Matched labels for 5 of 5 files" in c.value for c in at.caption)
    files = sorted(clips)
    labels = np.array([1 if truth[f] == "spoof" else 0 for f in files])
    res = {f: engine.score(clips[f], name=f) for f in files}
    summary = next(d.value for d in at.dataframe if "EER" in d.value.columns).set_index("model")
    for m in APP_MODELS:
        s = np.array([res[f].models[m].p_fake for f in files])
        assert summary.loc[m, "EER"] == pytest.approx(metrics.eer(labels, s)[0], abs=1e-6)
        assert summary.loc[m, "fake"] == 3 and summary.loc[m, "real"] == 2
    # the manifest's source_repo and generator columns give a breakdown per group
    assert at.radio(key="compare_group_by").options == ["source_repo", "generator"]
    groups = next(d.value for d in at.dataframe if "compared with" in d.value.columns).set_index("group")
    assert sorted(groups.index) == ["o/a", "o/b"] and list(groups["files"]) == [3, 2]
    sub = [f for f in files if f in ("clip0.wav", "clip1.wav", "clip2.wav")]
    y = np.array([1 if truth[f] == "spoof" else 0 for f in sub])
    for m in APP_MODELS:
        s = np.array([res[f].models[m].p_fake for f in sub])
        assert groups.loc["o/a", m] == pytest.approx(metrics.eer(y, s)[0], abs=1e-6)
    at.radio(key="compare_group_by").set_value("generator").run()
    at.radio(key="compare_group_metric").set_value("AUC").run()
    no_exception(at)
    groups = next(d.value for d in at.dataframe if "compared with" in d.value.columns).set_index("group")
    assert sorted(groups.index) == ["ground_truth", "hifigan", "vits"]
    assert groups.loc["vits", "compared with"] == "all real files"
    vits = [f for f in files if truth[f] == "spoof" and files.index(f) % 2] + [f for f in files if truth[f] != "spoof"]
    y = np.array([1 if truth[f] == "spoof" else 0 for f in vits])
    for m in APP_MODELS:
        s = np.array([res[f].models[m].p_fake for f in vits])
        assert groups.loc["vits", m] == pytest.approx(metrics.roc_auc(y, s), abs=1e-6)
    # the upload was scored once: rerunning the page reuses the run
    run = at.session_state["dd_compare_run"]
    at.run()
    assert at.session_state["dd_compare_run"] is run


@pytest.mark.parametrize("n", [10, 200])
def test_charts_stay_readable_at_10_and_200_files(n):
    """Every file labelled in the heatmap (a row high enough to read), names not folders on the
    bars, the legend above them; confusion titles short enough for a narrow column."""
    import pandas as pd

    from webui import plots

    rng = np.random.default_rng(0)
    files = [f"clips/some_long_source_name/speaker_{i % 7}/take_{i:03d}.wav" for i in range(n)]
    scores = pd.DataFrame(rng.uniform(size=(n, 3)), index=files, columns=["resnet", "lstm", "ensemble"])
    heat = plots.heatmap_figure(scores)
    assert list(heat.layout.yaxis.ticktext) == [f.split("/")[-1] for f in files]
    assert heat.layout.height >= 13 * n and heat.layout.yaxis.tickfont.size >= 10
    bars = plots.grouped_bars_figure(scores.iloc[:30])
    assert bars.layout.legend.y > 1 and bars.layout.xaxis.ticktext[0] == "take_000.wav"
    title = plots.confusion_figure(np.eye(2, dtype=int), "ensemble").layout.title.text
    assert title.split("<br>")[0] == "ensemble"
