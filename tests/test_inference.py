"""core/inference.py: windows cover the file, batching, per-file rule, thresholds, ensemble, errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import speechlike
from core.audio import TARGET_SR, load_audio
from core.errors import AudioError, DetectorError
from core.features import SEED_A, SEED_B
from core.inference import Detector, window_starts

SR = TARGET_SR


def wav(make, name, seconds, seed=0):
    return make.write(name, speechlike(seconds, seed=seed), SR, subtype="FLOAT")


# ---------------------------------------------------------------------------- geometry


def covered(spans, n):
    mask = np.zeros(n, bool)
    for a, b in spans:
        mask[a:b] = True
    return mask.all()


@pytest.mark.parametrize("n,window,hop", [(50, 100, 50), (100, 100, 50), (300, 100, 50), (301, 100, 50),
                                          (1000, 100, 100), (1001, 100, 100), (999, 100, 30)])
def test_window_spans_cover_the_file(n, window, hop):
    spans = window_starts(n, window, hop)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert covered(spans, n)
    assert len(set(spans)) == len(spans)
    if n <= window:
        assert spans == [(0, n)]
    else:
        assert all(b - a == window for a, b in spans)
        starts = [a for a, _ in spans]
        assert all(0 < d <= hop for d in np.diff(starts))
    if n > window and (n - window) % hop == 0:  # exact multiple: no extra tail window
        assert len(spans) == (n - window) // hop + 1


def test_detector_windows_match_window_starts(det, make):
    p = wav(make, "a.wav", 11.3)
    res = det.score(p)
    n = round(11.3 * SR)
    for name, fe in (("gnn", SEED_A), ("darts", SEED_B), ("lstm", SEED_B)):
        got = [(round(w.start * SR), round(w.end * SR)) for w in res.models[name].windows]
        want = window_starts(n, fe.window_samples, round(fe.window_samples * 0.5))  # hop: half a window
        assert got == want
        assert res.models[name].windows[-1].end == pytest.approx(11.3, abs=1e-6)  # tail flush with the end


def test_short_file_is_one_short_window(det, make):
    res = det.score(wav(make, "s.wav", 1.0))
    for m in res.models.values():
        assert len(m.windows) == 1 and m.windows[0].start == 0 and m.windows[0].end == pytest.approx(1.0)
    assert any("Shorter" in w for w in res.warnings(det.shortest_window_s))


def test_hop_and_window_are_settable(loaded, make):
    p = wav(make, "h.wav", 10.0)
    no_overlap = Detector(loaded, hop_fraction=1.0).score(p)
    w = no_overlap.models["lstm"].windows
    assert [round(x.start * SR) for x in w[:-1]] == [i * SEED_B.window_samples for i in range(len(w) - 1)]
    one_s = Detector(loaded, window_s=1.0, hop_fraction=0.25).score(p)
    w = one_s.models["darts"].windows
    assert all(x.end - x.start == pytest.approx(1.0) for x in w)
    assert np.diff([x.start for x in w]) == pytest.approx(0.25)
    assert len(w) == (10 - 1) / 0.25 + 1
    with pytest.raises(DetectorError):
        Detector(loaded, hop_fraction=0)
    with pytest.raises(DetectorError):
        Detector(loaded, window_s=-1)


# ---------------------------------------------------------------------------- scores


def test_per_file_is_mean_of_windows_and_ensemble_is_mean_of_models(det, make):
    res = det.score(wav(make, "m.wav", 9.0, seed=4))
    for m in res.models.values():
        ps = [w.p_fake for w in m.windows]
        assert all(0 <= p <= 1 for p in ps)
        assert m.p_fake == pytest.approx(np.mean(ps))
        assert m.max_p_fake == pytest.approx(max(ps))
        assert m.frac_windows_over == pytest.approx(np.mean([p >= m.threshold for p in ps]))
    assert res.ensemble.p_fake == pytest.approx(np.mean([m.p_fake for m in res.models.values()]))
    assert res.ensemble.windows[0].start == 0 and res.ensemble.windows[-1].end == pytest.approx(9.0)
    # scores differ between files (the models are not constant)
    other = det.score(wav(make, "n.wav", 9.0, seed=5))
    assert other.models["lstm"].p_fake != res.models["lstm"].p_fake


def test_verdict_against_threshold_and_source_travels(loaded, make, monkeypatch):
    p = wav(make, "v.wav", 4.0)
    base = Detector(loaded).score(p)
    lstm = next(m for m in loaded.models if m.name == "lstm")
    p_lstm = base.models["lstm"].p_fake
    monkeypatch.setattr(lstm, "threshold", p_lstm - 1e-4)
    monkeypatch.setattr(lstm, "threshold_source", "EER on a validation set (test)")
    r = Detector(loaded).score(p)
    assert r.models["lstm"].verdict == "fake"
    assert r.models["lstm"].threshold == pytest.approx(p_lstm - 1e-4)
    assert r.models["lstm"].threshold_source == "EER on a validation set (test)"
    assert r.as_dict()["models"]["lstm"]["threshold_source"] == "EER on a validation set (test)"
    monkeypatch.setattr(lstm, "threshold", p_lstm + 1e-4)
    assert Detector(loaded).score(p).models["lstm"].verdict == "real"
    # the ensemble carries its own threshold and source
    assert r.ensemble.threshold == loaded.ensemble_threshold
    assert r.ensemble.threshold_source == loaded.ensemble_threshold_source
    assert r.ensemble.verdict == ("fake" if r.ensemble.p_fake >= r.ensemble.threshold else "real")


def test_score_samples_equals_score_of_the_file(det, make):
    p = wav(make, "x.wav", 6.0, seed=9)
    a = load_audio(p)
    r1, r2 = det.score(p), det.score_samples(a.samples, a.facts)
    for name in r1.models:
        assert [w.p_fake for w in r1.models[name].windows] == pytest.approx(
            [w.p_fake for w in r2.models[name].windows], abs=1e-6)


def test_long_file_streams_with_the_same_scores(det, make):
    """A file longer than the prefetch limit is streamed block by block: same windows, same scores."""
    from core import inference

    x = speechlike(inference.PREFETCH_MAX_S + 10, seed=11)
    p = make.write("long.wav", x, SR, subtype="FLOAT")
    streamed = det.score(p)
    a = load_audio(p)
    whole = det.score_samples(a.samples, a.facts)
    for name in streamed.models:
        s, w = streamed.models[name].windows, whole.models[name].windows
        assert [(x.start, x.end) for x in s] == [(x.start, x.end) for x in w]
        assert [x.p_fake for x in s] == pytest.approx([x.p_fake for x in w], abs=1e-5)


def test_progress_callbacks_increase(det, make):
    p = wav(make, "p.wav", 70.0)
    seen = []
    det.score(p, progress=lambda done, total: seen.append((done, total)))
    assert seen and all(b >= a for (a, _), (b, _) in zip(seen, seen[1:]))
    assert seen[-1][0] == pytest.approx(seen[-1][1]) and seen[-1][1] == pytest.approx(70.0, abs=0.01)
    files = [wav(make, f"f{i}.wav", 1.0 + i, seed=i) for i in range(4)]
    calls = []
    list(det.score_many([(str(f), f) for f in files], progress=lambda d, t: calls.append((d, t))))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (4, 4) and all(t == 4 for _, t in calls)


# ---------------------------------------------------------------------------- errors


def test_score_many_keeps_order_and_isolates_bad_files(det, make):
    items = []
    for i in range(7):
        if i in (1, 4):
            p = make.broken(f"bad{i}.wav", kind=i)
        else:
            p = wav(make, f"ok{i}.wav", 0.5 + i, seed=i)
        items.append((f"name{i}", p))
    items.append(("missing", make.folder / "does_not_exist.wav"))
    out = list(det.score_many(items))
    assert [r.file for r in out] == [n for n, _ in items]
    for i, r in enumerate(out):
        if i in (1, 4, 7):
            assert r.error and r.ensemble is None and not r.models
        else:
            assert r.error is None and r.ensemble.p_fake is not None
            # same result as scoring the file alone
            alone = det.score(items[i][1])
            assert r.models["lstm"].p_fake == pytest.approx(alone.models["lstm"].p_fake, abs=1e-6)


def test_score_raises_audio_error_for_a_bad_file(det, make):
    with pytest.raises(AudioError):
        det.score(make.broken("b.wav"))
    silent = make.write("silent.wav", np.zeros(SR, np.float32), SR)
    with pytest.raises(AudioError, match="silence"):
        det.score(silent)


def test_a_failing_model_is_reported_while_others_score(loaded, make, monkeypatch):
    gnn = next(m for m in loaded.models if m.name == "gnn")

    def broken_forward(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(gnn.module, "forward", broken_forward)
    res = Detector(loaded).score(wav(make, "f.wav", 5.0))
    assert res.error is None
    assert res.models["gnn"].p_fake is None and "simulated failure" in res.models["gnn"].error
    assert res.models["gnn"].verdict is None
    for name in ("darts", "lstm"):
        assert res.models[name].error is None and res.models[name].p_fake is not None
    assert res.ensemble.p_fake == pytest.approx(np.mean([res.models["darts"].p_fake, res.models["lstm"].p_fake]))
    assert "gnn" in res.ensemble.source
    d = res.as_dict()
    assert d["models"]["gnn"]["error"] and d["models"]["lstm"]["p_fake"] is not None


def test_as_dict_schema(det, make):
    d = det.score(wav(make, "d.wav", 3.0)).as_dict()
    assert set(d) >= {"file", "audio", "models", "ensemble", "warnings", "error"}
    assert d["audio"]["original_rate"] == SR and d["audio"]["channels"] == 1
    for m in d["models"].values():
        assert set(m) >= {"p_fake", "threshold", "verdict", "windows", "source", "sha256"}
        assert set(m["windows"][0]) == {"start", "end", "p_fake"}
        assert len(m["sha256"]) == 64


def test_detector_info(det):
    info = det.info()
    assert info["set"] == "seed" and [m["name"] for m in info["models"]] == ["gnn", "darts", "lstm"]
    assert info["windows_s"]["seed_mel50"] == pytest.approx(SEED_A.window_s)
    assert det.shortest_window_s == pytest.approx(SEED_B.window_s)


def test_ensemble_uses_the_card_weights_and_names_models_at_weight_zero(det, make, monkeypatch):
    names = [m.name for m in det.models]
    weights = {n: 0.0 for n in names}
    weights[names[0]], weights[names[1]] = 3.0, 1.0
    monkeypatch.setattr(det.loaded, "ensemble_card", {"weights": weights})
    res = det.score(wav(make, "w.wav", 4.0, seed=3))
    want = 0.75 * res.models[names[0]].p_fake + 0.25 * res.models[names[1]].p_fake
    assert res.ensemble.p_fake == pytest.approx(want)
    assert res.ensemble.source.startswith(f"weighted mean: {names[0]} 0.75, {names[1]} 0.25")
    assert all(n in res.ensemble.source for n in names[2:]) and "at weight 0" in res.ensemble.source
