"""The web app as an attack surface (streamlit.testing.v1.AppTest).

* Folder scoring cannot reach outside the operator's data root, however the path is typed
  ('..' in every disguise, absolute and home paths, NUL bytes, links to files or folders
  outside, chains of links); nothing outside is listed, shown or scored.
* Upload size is capped and error details are not sent to the browser (config.toml, as
  Streamlit itself parses it).
* Two sessions scoring different files at the same time (forced to overlap) each see only
  their own results.
* A model that fails (raises or returns NaN) shows as that model's error on the Analyze page
  while the other models still report and the ensemble is the mean of those.
* An upload's name is only a label: a name with '..' writes nothing anywhere.
"""

from __future__ import annotations

import os
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from app_helpers import REPO, new_app, no_exception, write_clip
from core.inference import Detector
from core.loading import LoadedModel

ANALYZE = "pages/1_Analyze_a_file.py"
BATCH = "pages/2_Batch_scoring.py"
MODELS = ("gnn", "lstm", "darts")     # the fast ones: these tests are about isolation, not the models


@pytest.fixture(scope="module")
def engine(seed_weights):
    return Detector.from_set("seed", models=",".join(MODELS), weights_dir=seed_weights, allow_download=False)


def page_text(at) -> str:
    """Everything the page shows as text (markdown, captions, alerts, code, expanders' text)."""
    parts = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "text", "code", "title"):
        parts += [str(e.value) for e in getattr(at, kind)]
    for d in at.dataframe:
        parts.append(d.value.to_csv())
    return "\n".join(parts)


# ============================================================================ the data root


@pytest.fixture
def root_tree(tmp_path, monkeypatch):
    root, outside = tmp_path / "data", tmp_path / "private"
    write_clip(root / "calls" / "a.wav", 2.0, seed=1)
    write_clip(root / "calls" / "b.wav", 2.5, seed=2)
    write_clip(outside / "secret.wav", 2.0, seed=9)
    write_clip(outside / "inner" / "secret2.wav", 2.0, seed=8)
    os.symlink(outside / "secret.wav", root / "calls" / "linked_secret.wav")      # a file link out
    os.symlink(outside, root / "calls" / "private_dir")                            # a folder link out
    os.symlink(root / "calls" / "private_dir", root / "hop")                       # in -> in -> out
    os.symlink(Path("..") / ".." / "private" / "secret.wav", root / "calls" / "rel.wav")
    monkeypatch.setenv("DEEPFAKE_DATA_ROOT", str(root))
    return root, outside


ESCAPES = [
    ("..", "'..' is not allowed"),
    ("../private", "'..' is not allowed"),
    ("calls/../../private", "'..' is not allowed"),
    ("./calls/../..", "'..' is not allowed"),
    ("calls/../../private/secret.wav", "'..' is not allowed"),
    ("/", "is outside the data root"),
    ("/etc", "is outside the data root"),
    ("~", "is outside the data root"),
    ("~/.ssh", "is outside the data root"),
    ("calls/linked_secret.wav", "leads outside the data root"),
    ("calls/rel.wav", "leads outside the data root"),
    ("calls/private_dir", "leads outside the data root"),
    ("calls/private_dir/inner", "leads outside the data root"),
    ("hop", "leads outside the data root"),
    ("hop/secret.wav", "leads outside the data root"),
    ("calls\x00/../..", "NUL"),
]


def test_batch_folder_cannot_leave_the_root(app_env, root_tree):
    root, outside = root_tree
    at = new_app(BATCH, models=MODELS)
    at.radio(key="batch_source").set_value("folder").run()
    no_exception(at)
    for typed, why in ESCAPES + [(str(outside), "is outside the data root")]:
        at.text_input(key="batch_folder").input(typed).run()
        no_exception(at)
        assert any(why in e.value for e in at.error), (typed, [e.value for e in at.error])
        assert at.button(key="batch_run").disabled, typed
        assert at.button(key="batch_run").label == "Score 0 files"
        text = page_text(at)
        assert "secret2" not in text, typed          # only a listing of private/inner could show it
        if "secret" not in typed:
            assert "secret" not in text, typed
        assert not any("audio files found" in (ex.label or "") for ex in at.expander)


def test_batch_folder_listing_and_scores_skip_links_out(app_env, root_tree):
    root, outside = root_tree
    at = new_app(BATCH, models=MODELS)
    at.radio(key="batch_source").set_value("folder").run()
    at.text_input(key="batch_folder").input("calls").run()
    no_exception(at)
    assert at.button(key="batch_run").label == "Score 2 files"
    assert "secret" not in page_text(at)
    at.button(key="batch_run").click().run()
    no_exception(at)
    run = at.session_state["dd_last_batch"]
    assert sorted(r.file for r in run.results) == ["calls/a.wav", "calls/b.wav"]
    assert all(r.error is None for r in run.results)
    text = page_text(at)
    assert "secret" not in text and str(outside) not in text


def test_a_link_made_outside_after_listing_is_not_scored(app_env, root_tree, monkeypatch):
    """Listed, then retargeted to a secret before Score is pressed: the new target is never read."""
    root, outside = root_tree
    moving = root / "calls" / "z_moving.wav"
    os.symlink(root / "calls" / "a.wav", moving)
    at = new_app(BATCH, models=MODELS)
    at.radio(key="batch_source").set_value("folder").run()
    at.text_input(key="batch_folder").input("calls").run()
    assert at.button(key="batch_run").label == "Score 3 files"
    moving.unlink()
    os.symlink(outside / "secret.wav", moving)
    read = []
    real_score_many = Detector.score_many

    def spy(self, items, *a, **k):
        items = list(items)
        read.extend(os.path.realpath(src) for _, src in items if isinstance(src, (str, os.PathLike)))
        return real_score_many(self, items, *a, **k)

    monkeypatch.setattr(Detector, "score_many", spy)
    at.button(key="batch_run").click().run()
    no_exception(at)
    assert read, "the batch page scored nothing"
    assert not any(Path(p).is_relative_to(outside.resolve()) for p in read), read


# ============================================================================ configuration


def repo_config() -> dict:
    with open(REPO / ".streamlit" / "config.toml", "rb") as f:
        return tomllib.load(f)


def test_upload_size_is_capped_in_config():
    server = repo_config()["server"]
    cap = server.get("maxUploadSize")
    assert isinstance(cap, int) and 1 <= cap <= 2048, f"server.maxUploadSize must be a sane finite MB value: {cap}"
    msg = server.get("maxMessageSize")
    assert msg is None or (isinstance(msg, int) and 1 <= msg <= 2048)


def test_streamlit_reads_the_cap_and_hides_error_details(monkeypatch):
    """As Streamlit parses it when started from the repository (where app.sh starts it)."""
    from streamlit import config

    monkeypatch.chdir(REPO)
    try:
        config.get_config_options(force_reparse=True)
        assert config.get_option("server.maxUploadSize") == repo_config()["server"]["maxUploadSize"]
        # exception details (paths, stack traces) are not sent to the browser
        assert str(config.get_option("client.showErrorDetails")).lower() in {"none", "false"}
    finally:
        monkeypatch.undo()
        config.get_config_options(force_reparse=True)


# ============================================================================ sessions


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("two")
    return (write_clip(d / "alpha.wav", 6.0, seed=21).read_bytes(),
            write_clip(d / "beta.wav", 4.0, seed=22, sr=22_050).read_bytes())


def verdict_text(at) -> str:
    texts = [e.value for e in [*at.success, *at.error, *at.warning] if "ensemble P(fake)" in e.value]
    assert len(texts) == 1, texts
    return texts[0]


def test_two_sessions_scoring_at_the_same_time_see_only_their_own(app_env, engine, two_files, monkeypatch):
    alpha, beta = two_files
    expect = {"alpha.wav": engine.score(alpha, name="alpha.wav"), "beta.wav": engine.score(beta, name="beta.wav")}
    assert expect["alpha.wav"].ensemble.p_fake != pytest.approx(expect["beta.wav"].ensemble.p_fake, abs=1e-3)

    # both sessions must be inside Detector.score at once, or the barrier breaks and the test fails
    barrier = threading.Barrier(2, timeout=120)
    inside, overlap = [0], [0]
    lock = threading.Lock()
    real_score = Detector.score

    def overlapping_score(self, source, name=None, progress=None):
        with lock:
            inside[0] += 1
            overlap[0] = max(overlap[0], inside[0])
        try:
            barrier.wait()
            return real_score(self, source, name=name, progress=progress)
        finally:
            with lock:
                inside[0] -= 1

    apps = {n: new_app(ANALYZE, models=MODELS) for n in expect}
    monkeypatch.setattr(Detector, "score", overlapping_score)
    errors = []

    def session(name, data):
        try:
            at = apps[name]
            at.file_uploader(key="analyze_upload").upload(name, data, "audio/wav")
            at.run()
        except Exception as e:  # pragma: no cover - reported below
            errors.append((name, e))

    threads = [threading.Thread(target=session, args=(n, d)) for n, d in zip(expect, (alpha, beta))]
    # the second session starts once the first is inside Detector.score: the scoring still overlaps
    # (the barrier holds the first there), but the two page scripts are not compiled at the same
    # moment, which CPython 3.11's ast.parse does not survive ("AST constructor recursion depth
    # mismatch", seen under heavy load; a real server compiles each page once and caches it)
    threads[0].start()
    deadline = time.monotonic() + 120
    while inside[0] < 1 and not errors and threads[0].is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    threads[1].start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert overlap[0] == 2, "the two sessions did not score at the same time"
    for name, at in apps.items():
        no_exception(at)
        other = next(n for n in expect if n != name)
        own_p = expect[name].ensemble.p_fake
        assert f"ensemble P(fake) = **{own_p:.3f}**" in verdict_text(at)
        results = at.session_state["dd_analyze_results"]
        assert len(results) == 1
        (res, err), = results.values()
        assert err is None and res.file == name
        assert res.ensemble.p_fake == pytest.approx(own_p, abs=1e-6)
        assert other not in page_text(at)


# ============================================================================ one model failing


@pytest.mark.parametrize("how", ["nan", "raise"])
def test_one_failing_model_is_its_own_error_on_the_analyze_page(app_env, engine, two_files, monkeypatch, how):
    alpha, _ = two_files
    exp = engine.score(alpha, name="alpha.wav")
    original = LoadedModel.p_fake

    def failing(self, feats, *args):
        p = original(self, feats, *args)
        if self.name != "lstm":
            return p
        if how == "raise":
            raise RuntimeError("simulated lstm failure")
        return p * float("nan")

    monkeypatch.setattr(LoadedModel, "p_fake", failing)
    at = new_app(ANALYZE, models=MODELS)
    at.file_uploader(key="analyze_upload").upload("alpha.wav", alpha, "audio/wav")
    at.run()
    no_exception(at)
    errs = [e.value for e in at.error if "Model lstm failed" in e.value]
    assert len(errs) == 1
    assert ("non-finite" in errs[0]) if how == "nan" else ("simulated lstm failure" in errs[0])
    frame = next(d.value for d in at.dataframe if "P(fake)" in d.value.columns).set_index("model")
    assert frame.loc["lstm", "verdict"] == "error" and np.isnan(frame.loc["lstm", "P(fake)"])
    for n in ("gnn", "darts"):
        assert frame.loc[n, "P(fake)"] == pytest.approx(exp.models[n].p_fake, abs=1e-9)
    mean = float(np.mean([exp.models[n].p_fake for n in ("gnn", "darts")]))
    assert frame.loc["ensemble", "P(fake)"] == pytest.approx(mean, abs=1e-9)
    assert f"ensemble P(fake) = **{mean:.3f}**" in verdict_text(at)


# ============================================================================ upload names


def test_upload_names_are_labels_not_paths(app_env, two_files, tmp_path, monkeypatch):
    alpha, _ = two_files
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    names = ["../../escaped.wav", "/tmp/../" + tmp_path.name + "/abs.wav", "<b>bold</b>`code`.wav"]
    at = new_app(BATCH, models=MODELS)
    uploader = at.file_uploader(key="batch_upload")
    for n in names:
        uploader.upload(n, alpha, "audio/wav")
    at.run()
    at.button(key="batch_run").click().run()
    no_exception(at)
    run = at.session_state["dd_last_batch"]
    assert [r.file for r in run.results] == names
    assert all(r.error is None for r in run.results)
    assert not (tmp_path / "escaped.wav").exists() and not (tmp_path / "abs.wav").exists()
    assert sorted(os.listdir(tmp_path)) == ["a"] and os.listdir(tmp_path / "a" / "b") == []
