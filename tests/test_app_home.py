"""Home: the active set, where each checkpoint came from, the cards, the set switch, the sidebar."""

from __future__ import annotations

import pytest

from app_helpers import APP_MODELS, new_app, no_exception, shipped_set_present
from core.models.registry import get_set


@pytest.fixture
def app_env(monkeypatch, seed_weights):
    monkeypatch.setenv("DEEPFAKE_WEIGHTS_DIR", str(seed_weights))
    return seed_weights


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


def test_switch_to_the_shipped_set(app_env):
    at = new_app()
    at.selectbox(key="w_dd_set").set_value("shipped").run()
    no_exception(at)
    assert at.session_state["dd_set"] == "shipped"
    if shipped_set_present():
        models = frame_with(at, "weights from")
        assert set(models["weights from"]) == {"shipped"}
        assert any("shipped" in s.value for s in at.sidebar.success)
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
