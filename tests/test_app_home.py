"""Home: the active set, where each checkpoint came from, the cards, the set switch, the sidebar."""

from __future__ import annotations

import pytest

from app_helpers import APP_MODELS, new_app, no_exception, shipped_set_present, write_clip
from core.models.registry import get_set


def frame_with(at, column):
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert frames, f"no table with a {column!r} column"
    return frames[0]


def test_home_shows_the_set_its_sources_and_cards(app_env):
    at = new_app()
    no_exception(at)
    text = " ".join(m.value for m in at.markdown)
    assert "evidence, not proof" in text and "miss generators they never saw" in text
    assert "higher = more likely fake" in text
    models = frame_with(at, "weights from")
    assert list(models["model"]) == list(APP_MODELS)
    assert set(models["weights from"]) == {"local folder"}
    seed = get_set("seed")
    for _, row in models.iterrows():
        assert row["checkpoint"].endswith(seed.spec(row["model"]).checkpoint)
        assert row["threshold source"] == seed.cards[row["model"]]["threshold_source"]
    # one card per model: threshold with its source, training data, the reported figures
    titles = [e.label for e in at.expander]
    for m in APP_MODELS:
        assert any(t.startswith(f"{m} — ") and "local folder" in t for t in titles), titles
    assert text.count("**Training data.** In-the-Wild") == len(APP_MODELS)
    metrics = [d.value for d in at.dataframe if list(d.value.columns) == ["metric", "value"]]
    assert len(metrics) == len(APP_MODELS)
    resnet = dict(zip(metrics[0]["metric"], metrics[0]["value"]))
    assert resnet["accuracy"] == "0.928" and resnet["tnr"] == "0.872"
    assert len(at.json) == len(APP_MODELS)  # the raw card of each
    # where each seed checkpoint is right now (senet154 is not in the test folder)
    status = frame_with(at, "found in").set_index("model")
    assert status.loc["senet", "found in"] == "missing"
    assert all(status.loc[m, "found in"] == "local folder" for m in APP_MODELS)
    assert any("DEEPFAKE_WEIGHTS_DIR" in m.value and "Hugging Face cache" in m.value for m in at.markdown)


def test_missing_seed_checkpoints_are_an_error_message(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_DIR", str(tmp_path))  # an empty folder; the hub is offline
    at = new_app(models=("gnn", "lstm"))
    no_exception(at)
    err = " ".join(e.value for e in at.error)
    assert "could not be loaded" in err and "gnn_model_best_model.pth" in err
    assert any("DEEPFAKE_WEIGHTS_DIR" in i.value for i in at.info)
    # the other pages say the same, and do not crash
    for page in ("pages/1_Analyze_a_file.py", "pages/2_Batch_scoring.py", "pages/3_Compare_models.py"):
        at.switch_page(page).run()
        no_exception(at)
        assert any("could not be loaded" in e.value for e in at.error), page


def test_a_damaged_checkpoint_is_a_sidebar_warning_and_the_rest_load(monkeypatch, tmp_path, seed_weights):
    import shutil

    from core.models.registry import get_set

    seed = get_set("seed")
    for name in ("gnn", "lstm"):
        shutil.copy(seed_weights / seed.spec(name).checkpoint, tmp_path)
    (tmp_path / seed.spec("darts").checkpoint).write_bytes(b"half a download")
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_DIR", str(tmp_path))
    at = new_app(models=("gnn", "darts", "lstm"))
    no_exception(at)
    assert not at.error
    warn = [w.value for w in at.sidebar.warning]
    assert len(warn) == 1 and "darts" in warn[0] and "cannot read the checkpoint" in warn[0], warn
    assert any("2 models" in s.value for s in at.sidebar.success)


def test_switch_to_the_shipped_set(app_env, tmp_path):
    at = new_app()
    at.selectbox(key="w_dd_set").set_value("shipped").run()
    no_exception(at)
    assert at.session_state["dd_set"] == "shipped"
    if shipped_set_present():
        models = frame_with(at, "weights from")
        assert set(models["weights from"]) == {"shipped"}
        assert any("shipped" in s.value for s in at.sidebar.success)
        # the trained set scores an upload exactly as the engine does
        from core.inference import Detector

        data = write_clip(tmp_path / "x.wav", 4.0, seed=8).read_bytes()
        want = Detector.from_set("shipped", models=",".join(APP_MODELS), allow_download=False).score(data, "x.wav")
        at.switch_page("pages/1_Analyze_a_file.py").run()
        at.file_uploader(key="analyze_upload").upload("x.wav", data, "audio/wav")
        at.run()
        no_exception(at)
        msgs = [e.value for e in [*at.success, *at.error, *at.warning, *at.info]]
        assert any(f"ensemble P(fake) = **{want.ensemble.p_fake:.3f}**" in m
                   and want.ensemble.threshold_source in m for m in msgs), (want.ensemble, msgs)
        at.switch_page("Home.py").run()
    else:  # trained weights not in this checkout yet: a message, never a crash
        assert any("could not be loaded" in e.value and "shipped" in e.value for e in at.error)
    at.selectbox(key="w_dd_set").set_value("seed").run()
    no_exception(at)
    assert set(frame_with(at, "weights from")["weights from"]) == {"local folder"}


def test_sidebar_choice_holds_across_pages(app_env):
    at = new_app()
    at.multiselect(key="w_dd_models").set_value(["gnn", "lstm"]).run()
    at.radio(key="w_dd_threshold_mode").set_value("custom").run()
    at.slider(key="w_dd_custom_threshold").set_value(0.7).run()
    no_exception(at)
    for page in ("pages/1_Analyze_a_file.py", "pages/2_Batch_scoring.py", "pages/3_Compare_models.py", "Home.py"):
        at.switch_page(page).run()
        no_exception(at)
        assert at.multiselect(key="w_dd_models").value == ["gnn", "lstm"], page
        assert at.radio(key="w_dd_threshold_mode").value == "custom", page
        assert at.slider(key="w_dd_custom_threshold").value == pytest.approx(0.7), page
        assert any("(2 models" in s.value for s in at.sidebar.success), page
    assert list(frame_with(at, "weights from")["model"]) == ["gnn", "lstm"]


def test_reload_button(app_env):
    at = new_app()
    at.button(key="home_reload").click().run()
    no_exception(at)
    assert list(frame_with(at, "weights from")["model"]) == list(APP_MODELS)


def test_streamlit_config_caps_uploads_and_sends_no_statistics():
    import tomllib

    from app_helpers import REPO

    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert 100 <= cfg["server"]["maxUploadSize"] <= 2000  # MB: long recordings fit, not unbounded
    assert cfg["server"]["headless"] is True
    assert cfg["browser"]["gatherUsageStats"] is False
    assert cfg["theme"]["base"] in ("light", "dark")


def test_a_shipped_shape_set_shows_its_cards_thresholds(monkeypatch, tmp_path):
    """Trained-set layout (safetensors + JSON cards) from a local folder: cards and per-model thresholds."""
    import json

    from safetensors.torch import save_file

    from core.inference import Detector

    folder = tmp_path / "shipped_like"
    folder.mkdir()
    shipped = get_set("shipped")
    thresholds = {"resnet": 0.37, "gnn": 0.42, "lstm": 0.61}
    for n, thr in thresholds.items():
        spec = shipped.spec(n)
        m = spec.build({})
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(folder / spec.checkpoint))
        (folder / f"{n}.json").write_text(json.dumps({
            "name": n, "family": spec.family, "threshold": thr,
            "threshold_source": f"EER threshold of {n} on validation",
            "training_data": {"source": "pool", "clips": 700},
            "validation": {"protocol": "leave-one-source-out over the source repositories of the pool",
                           "pooled_eer": 0.1 + thr / 10, "per_group": {"a": {"eer": 0.1}, "b": {"eer": 0.2}}}}))
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_DIR", str(folder))
    at = new_app(models=tuple(thresholds), set_name="shipped")
    no_exception(at)
    models = frame_with(at, "weights from").set_index("model")
    for n, thr in thresholds.items():
        assert models.loc[n, "threshold"] == thr
        assert models.loc[n, "threshold source"] == f"EER threshold of {n} on validation"
    per_source = [d.value for d in at.dataframe if "per group" in d.value.columns]
    assert len(per_source) == 3 and list(per_source[0]["per group"]) == ["a", "b"]
    assert any("leave-one-source-out" in m.value for m in at.markdown)

    data = write_clip(tmp_path / "x.wav", 5.0, seed=12).read_bytes()
    want = Detector.from_set("shipped", models=",".join(thresholds), weights_dir=folder,
                             allow_download=False).score(data, "x.wav")
    at.switch_page("pages/1_Analyze_a_file.py").run()
    at.file_uploader(key="analyze_upload").upload("x.wav", data, "audio/wav")
    at.run()
    no_exception(at)
    table = next(d.value for d in at.dataframe if "P(fake)" in d.value.columns).set_index("model")
    for n, thr in thresholds.items():
        assert table.loc[n, "threshold"] == thr
        assert table.loc[n, "P(fake)"] == pytest.approx(want.models[n].p_fake, abs=1e-9)
        assert table.loc[n, "verdict"] == ("fake" if want.models[n].p_fake >= thr else "real")
