"""The Analyze page, through streamlit.testing.v1.AppTest with real uploads.

Every expected number comes from the engine scoring the same bytes with the same checkpoints.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from app_helpers import (APP_MODELS, arr, click_chart, find_chart, media_files, new_app, no_exception,  # noqa: F401
                         trace_names, write_clip)
from core.assessment import assess
from core.errors import AudioError
from core.inference import Detector
from core.loading import LoadedModel
from webui.cards import unseen_sentence
from webui.tables import over_threshold_spans

PAGE = "pages/1_Analyze_a_file.py"


@pytest.fixture(scope="module")
def clip12(tmp_path_factory) -> bytes:
    """12 s of speech-like audio at 22.05 kHz: several windows of each front end."""
    return write_clip(tmp_path_factory.mktemp("a") / "speech.wav", 12.0, seed=3, sr=22_050).read_bytes()


def upload(at, name: str, data: bytes, mime: str = "audio/wav"):
    at.file_uploader(key="analyze_upload").upload(name, data, mime)
    return at.run()


def verdict_box(at) -> str:
    texts = [e.value for e in [*at.success, *at.error, *at.warning] if "ensemble P(fake)" in e.value]
    assert len(texts) == 1, texts
    return texts[0]


def model_frame(at):
    frames = [d.value for d in at.dataframe if "P(fake)" in d.value.columns]
    assert len(frames) == 1
    return frames[0].set_index("model")


def test_verdict_numbers_and_plots_match_the_engine(app_env, engine, clip12):
    exp = engine.score(clip12, name="speech.wav")
    at = upload(new_app(PAGE), "speech.wav", clip12)
    no_exception(at)

    ens = exp.ensemble
    box = verdict_box(at)
    a = exp.assessment
    assert box.startswith(f"**{a.label.capitalize()}**")
    assert f"Inconclusive band [{a.band.low:.2f}, {a.band.high:.2f})" in box and a.band.source in box
    captions = [c.value for c in at.caption]
    assert all(any(why in c for c in captions) for why in a.reasons)
    assert f"How far to trust this: {unseen_sentence(engine)}" in captions, "the set's measured accuracy on unseen sources"
    assert f"ensemble P(fake) = **{ens.p_fake:.3f}**" in box
    assert f"threshold {ens.threshold:.3f}, {ens.threshold_source}" in box
    assert "Higher = more likely fake" in box
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Ensemble P(fake)"] == f"{ens.p_fake:.3f}"
    assert metrics["Models saying fake"] == f"{sum(m.verdict == 'fake' for m in exp.models.values())} of 4"

    table = model_frame(at)
    assert list(table.index) == [*APP_MODELS, "ensemble"]
    for name, m in exp.models.items():
        assert table.loc[name, "P(fake)"] == pytest.approx(m.p_fake, abs=1e-9)
        assert table.loc[name, "verdict"] == m.verdict
        assert table.loc[name, "weights"] == "local folder"
    # the random heads give the models different opinions: the table is not one number repeated
    assert table["P(fake)"].nunique() > 2

    facts = {k: r["value"] for t in at.table for k, r in t.value.iterrows()}
    assert facts["Original sample rate"] == "22050 Hz"
    assert facts["Duration"] == f"{exp.facts.duration_s:.2f} s"

    tl = find_chart(at, "P(fake) over time")
    names = trace_names(tl)
    assert set(APP_MODELS) | {"ensemble"} <= set(names)
    ens_trace = tl["data"][names.index("ensemble")]
    assert sorted(set(np.round(arr(ens_trace["y"]), 9))) == sorted(set(np.round([w.p_fake for w in ens.windows], 9)))
    for name in APP_MODELS:
        tr = tl["data"][names.index(name)]
        assert np.allclose(arr(tr["y"]), [w.p_fake for w in exp.models[name].windows])
    spans = over_threshold_spans(ens.windows, ens.threshold)
    rects = [s for s in tl["layout"].get("shapes", []) if s.get("type") == "rect"]
    assert len(rects) == len(spans)
    assert "higher = more likely fake" in tl["layout"]["yaxis"]["title"]["text"]

    wf = find_chart(at, "Waveform")
    assert trace_names(wf) == ["max", "min"]
    assert arr(wf["data"][0]["x"]).max() == pytest.approx(12.0, abs=0.1)
    assert np.all(arr(wf["data"][0]["y"]) >= arr(wf["data"][1]["y"]))
    sp = find_chart(at, "Mel spectrogram")
    hm = sp["data"][0]
    assert hm["type"] == "heatmap" and hm["colorbar"]["title"]["text"] == "dB re peak"
    assert (hm["zmin"], hm["zmax"]) == (-80.0, 0.0)   # fixed scale: silence is the floor colour ...
    # ... and that colour stays black: Streamlit's theme would repaint "#000004" (one of its placeholders)
    assert hm["colorscale"][0][1] == "rgb(0, 0, 4)" and not any(c.startswith("#0000") for _, c in hm["colorscale"])
    assert arr(hm["z"]).max() == 0.0 and arr(hm["z"]).min() >= -80.0
    assert sp["layout"]["yaxis"]["title"]["text"] == "Frequency (Hz)"
    assert sp["layout"]["xaxis"]["title"]["text"] == "Time (s)"
    # drawn at the file's 22.05 kHz up to its Nyquist, with the models' 8 kHz limit marked
    assert 8000 < arr(hm["y"]).max() < 11025 and sp["layout"]["yaxis"]["range"] == [0, 11025]
    assert any(s.get("y0") == s.get("y1") == 8000 for s in sp["layout"]["shapes"])
    assert "22050 Hz" in sp["layout"]["title"]["text"]
    assert arr(hm["z"]).shape == (len(arr(hm["y"])), len(arr(hm["x"])))
    assert arr(hm["x"]).max() == pytest.approx(12.0, abs=0.2)

    audio = at.get("audio")
    assert len(audio) == 1 and audio[0].proto.start_time == 0


def test_rerun_does_not_rescore_and_progress_is_cleared(app_env, clip12, monkeypatch):
    calls: list[list] = []
    original = Detector.score

    def counting(self, source, name=None, progress=None):
        ticks: list = []
        calls.append(ticks)

        def hook(done, total):
            ticks.append((done, total))
            if progress:
                progress(done, total)
        return original(self, source, name, hook)

    monkeypatch.setattr(Detector, "score", counting)
    at = upload(new_app(PAGE), "speech.wav", clip12)
    no_exception(at)
    assert len(calls) == 1 and calls[0], "scored once, with progress reported"
    assert calls[0][-1][0] == pytest.approx(calls[0][-1][1])
    assert not at.get("progress"), "the progress bar is cleared once scoring is done"
    first = verdict_box(at)
    at.run()
    play = next(s for s in at.selectbox if s.label == "Play from")
    play.set_value(1).run()
    at.session_state["dd_threshold_mode"] = "custom"
    at.run()
    no_exception(at)
    assert len(calls) == 1, "reruns, a new play position and a new threshold reuse the score"
    assert verdict_box(at) != first  # the threshold source changed


def test_custom_threshold_rejudges_every_model(app_env, engine, clip12):
    exp = engine.score(clip12, name="speech.wav")
    p = exp.ensemble.p_fake
    for thr in (max(0.0, np.floor(p * 100) / 100 - 0.01), min(1.0, np.ceil(p * 100) / 100 + 0.01), 0.01, 0.99):
        at = new_app(PAGE, dd_threshold_mode="custom", dd_custom_threshold=float(thr))
        upload(at, "speech.wav", clip12)
        no_exception(at)
        box = verdict_box(at)
        # the same band and rules at the custom threshold: a threshold at the edge of [0, 1] leaves the
        # band, so the call can only be the threshold's side or inconclusive
        want = assess(p, float(thr), "custom", exp.assessment.band, None, None, exp.assessment.cautions).label
        if any("disagree" in r for r in exp.assessment.reasons):
            want = "inconclusive"
        assert box.startswith(f"**{want.capitalize()}**") and f"threshold {thr:.3f}, custom value (sidebar)" in box
        if want != "inconclusive":
            assert want == ("likely fake" if p >= thr else "likely real")
        table = model_frame(at)
        assert np.allclose(table["threshold"], thr)
        for name, m in exp.models.items():
            assert table.loc[name, "verdict"] == ("fake" if m.p_fake >= thr else "real")


def test_play_from_a_window(app_env, engine, clip12):
    exp = engine.score(clip12, name="speech.wav")
    at = upload(new_app(PAGE), "speech.wav", clip12)
    play = next(s for s in at.selectbox if s.label == "Play from")
    assert len(play.options) == 1 + len(exp.ensemble.windows)
    over = [i for i, w in enumerate(exp.ensemble.windows) if w.p_fake >= exp.ensemble.threshold]
    flagged = [o for o in play.options if "over threshold" in o]
    assert len(flagged) == len(over)
    ranked = sorted(exp.ensemble.windows, key=lambda w: (-w.p_fake, w.start))   # most suspicious first
    assert play.options[1] == (f"P(fake) {ranked[0].p_fake:.3f} at {ranked[0].start:.1f}-{ranked[0].end:.1f} s"
                               + (" · over threshold" if ranked[0].p_fake >= exp.ensemble.threshold else ""))
    k = 5
    play.set_value(k).run()
    no_exception(at)
    start = ranked[k - 1].start
    assert at.get("audio")[0].proto.start_time == int(start)
    tl = find_chart(at, "P(fake) over time")
    vlines = [s for s in tl["layout"]["shapes"] if s.get("type") == "line" and s.get("x0") == s.get("x1")]
    assert any(s["x0"] == pytest.approx(start) for s in vlines)


def test_a_click_on_the_timeline_seeks_the_player(app_env, engine, clip12):
    exp = engine.score(clip12, name="speech.wav")
    at = upload(new_app(PAGE), "speech.wav", clip12)
    w = exp.models["resnet"].windows[-1]
    click_chart(at, "analyze_timeline", [{"x": (w.start + w.end) / 2, "y": w.p_fake, "curve_number": 0,
                                          "point_index": len(exp.models["resnet"].windows) - 1,
                                          "customdata": [w.start, w.end]}])
    no_exception(at)
    assert at.get("audio")[0].proto.start_time == int(w.start) > 0
    assert any(f"Playing from {w.start:.1f} s" in c.value for c in at.caption)
    tl = find_chart(at, "P(fake) over time")
    assert any(s.get("type") == "line" and s.get("x0") == s.get("x1") == pytest.approx(w.start)
               for s in tl["layout"]["shapes"])
    # the list shows the clicked cell; choosing from it afterwards moves the player again
    play = next(s for s in at.selectbox if s.label == "Play from")
    assert f"at {w.start:.1f}-{w.start + 0.5:.1f} s" in play.options[play.index]
    play.set_value(0).run()
    assert at.get("audio")[0].proto.start_time == 0


def test_occlusion_map_on_request(app_env, engine, clip12, monkeypatch):
    import core.explain

    exp = engine.score(clip12, name="speech.wav")
    at = upload(new_app(PAGE), "speech.wav", clip12)
    model = at.selectbox(key="analyze_occlusion_model")
    assert model.options[0].startswith("resnet")   # the CNN first
    assert not [s for s in map(str, find_all_titles(at)) if "Where in frequency" in s], "only on request"
    calls = []
    real = core.explain.occlusion_map
    monkeypatch.setattr(core.explain, "occlusion_map", lambda *a, **k: calls.append(1) or real(*a, **k))
    at.button(key="analyze_occlusion_run").click().run()
    no_exception(at)
    fig = find_chart(at, "Where in frequency: resnet")
    hm = fig["data"][0]
    z = arr(hm["z"])
    assert z.shape == (8, 10) and np.isfinite(z).all()
    ws = max(exp.models["resnet"].windows, key=lambda w: w.p_fake)
    assert ws.start <= arr(hm["x"]).min() < arr(hm["x"]).max() <= ws.end
    assert len(hm["y"]) == 8 and hm["y"][0].startswith("0.0-") and hm["y"][-1].endswith("kHz")
    at.run()
    no_exception(at)
    find_chart(at, "Where in frequency: resnet")   # kept across reruns
    assert len(calls) <= 1


def find_all_titles(at):
    from app_helpers import plotly_specs

    return [s.get("layout", {}).get("title", {}).get("text", "") for s in plotly_specs(at).values()]


def test_bad_file_shows_the_engine_error(app_env, engine):
    bad = b"this is not audio at all " * 20
    with pytest.raises(AudioError) as err:
        engine.score(bad, name="broken.wav")
    at = upload(new_app(PAGE), "broken.wav", bad)
    no_exception(at)
    def norm(s):
        return re.sub(r"0x[0-9a-f]+", "0x", s)
    assert [norm(e.value) for e in at.error] == [norm(str(err.value))]
    assert not at.get("plotly_chart") and not at.metric


@pytest.mark.parametrize("fmt,subtype,mime", [("FLAC", None, "audio/flac"), ("OGG", "VORBIS", "audio/ogg")])
def test_other_formats_and_warnings(app_env, engine, tmp_path, fmt, subtype, mime):
    """A short 8 kHz clip: its warnings (low rate, shorter than a window, lossy) are shown."""
    ext = fmt.lower()
    data = write_clip(tmp_path / f"short.{ext}", 1.5, seed=5, sr=8_000, format=fmt, subtype=subtype).read_bytes()
    exp = engine.score(data, name=f"short.{ext}")
    want = exp.warnings(engine.shortest_window_s)
    assert any("Low sample rate" in w for w in want) and any("Shorter" in w for w in want)
    at = upload(new_app(PAGE), f"short.{ext}", data, mime)
    no_exception(at)
    shown = [w.value for w in at.warning]
    assert [w for w in shown if not w.startswith(("**", "Caution: "))] == want
    assert [w[len("Caution: "):] for w in shown if w.startswith("Caution: ")] == exp.assessment.cautions
    assert any("Short clip" in c for c in exp.assessment.cautions)
    assert f"ensemble P(fake) = **{exp.ensemble.p_fake:.3f}**" in verdict_box(at)


def test_one_failing_model_is_that_models_error(app_env, engine, clip12, monkeypatch):
    exp = engine.score(clip12, name="speech.wav")
    original = LoadedModel.p_fake

    def broken(self, feats, *args):
        if self.name == "gnn":
            raise RuntimeError("simulated failure")
        return original(self, feats, *args)

    monkeypatch.setattr(LoadedModel, "p_fake", broken)
    at = upload(new_app(PAGE), "speech.wav", clip12)
    no_exception(at)
    assert any("Model gnn failed" in e.value and "simulated failure" in e.value for e in at.error)
    table = model_frame(at)
    assert table.loc["gnn", "verdict"] == "error" and np.isnan(table.loc["gnn", "P(fake)"])
    others = [n for n in APP_MODELS if n != "gnn"]
    for n in others:
        assert table.loc[n, "P(fake)"] == pytest.approx(exp.models[n].p_fake, abs=1e-9)
    mean = float(np.mean([exp.models[n].p_fake for n in others]))
    assert table.loc["ensemble", "P(fake)"] == pytest.approx(mean, abs=1e-9)
    assert f"ensemble P(fake) = **{mean:.3f}**" in verdict_box(at)


def test_two_sessions_see_only_their_own_file(app_env, engine, tmp_path, clip12):
    other = write_clip(tmp_path / "other.wav", 5.0, seed=11).read_bytes()
    a, b = new_app(PAGE), new_app(PAGE)
    upload(a, "speech.wav", clip12)
    upload(b, "other.wav", other)
    a.run()
    for at, data, name in ((a, clip12, "speech.wav"), (b, other, "other.wav")):
        no_exception(at)
        p = engine.score(data, name=name).ensemble.p_fake
        assert f"ensemble P(fake) = **{p:.3f}**" in verdict_box(at)
        assert len(at.session_state["dd_analyze_results"]) == 1
    assert engine.score(clip12).ensemble.p_fake != engine.score(other).ensemble.p_fake


def test_case_report_and_json_downloads_carry_hash_time_and_version(app_env, engine, clip12, media_files):
    import hashlib
    import json

    from core import report

    at = upload(new_app(PAGE), "speech.wav", clip12)
    no_exception(at)
    page = media_files(at.download_button(key="analyze_report")).decode()
    digest = hashlib.sha256(clip12).hexdigest()
    exp = engine.score(clip12, name="speech.wav")
    assert digest in page and exp.assessment.label.upper() in page and "http" not in page.lower()
    doc = json.loads(media_files(at.download_button(key="analyze_json")))
    assert doc["sha256"] == digest and doc["size_bytes"] == len(clip12)
    assert doc["app_version"] == report.app_version() and doc["analysed_at"] in page
    assert doc["ensemble"]["assessment"] == exp.assessment.label
    assert doc["ensemble"]["inconclusive_band"] == exp.assessment.band.as_list()


def test_language_and_speech_check_reaches_the_facts_and_the_verdict(app_env, engine, clip12, monkeypatch):
    from core.models.whisper_decoder import SpokenContent
    from core.spoken import SpokenCheck

    heard = SpokenCheck(SpokenContent("ur", 0.93, 0.02, [("ur", 0.93), ("hi", 0.05)]))
    monkeypatch.setattr("core.inference.check_spoken", lambda head: heard)
    # the seed's cards list no training languages (the rule itself: tests/test_spoken.py)
    monkeypatch.setattr("core.spoken._trained_counts", lambda cards, code: {n: {"real": 0, "fake": 0} for n in cards})
    at = upload(new_app(PAGE, dd_speech_check=True), "speech.wav", clip12)
    no_exception(at)
    facts = {k: r["value"] for t in at.table for k, r in t.value.iterrows()}
    assert facts["Spoken language"].startswith("Urdu (ur), 93% sure (then Hindi (hi) 5%)")
    assert facts["Speech present"] == "P(no speech) 0.02"
    shown = " ".join(e.value for e in [*at.warning, *at.caption, *at.markdown, *at.info])
    assert "Language: Urdu (ur), 93% sure" in shown and "0 real and 0 fake" in shown

    at = upload(new_app(PAGE), "speech.wav", clip12)          # unchecked: no rows, no caution
    facts = {k: r["value"] for t in at.table for k, r in t.value.iterrows()}
    assert "Spoken language" not in facts
