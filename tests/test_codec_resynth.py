"""`core.training.codec_resynth`: real training clips through a neural codec, labelled as fakes.

The bookkeeping (which reals, which bitrate, which source, resuming, one failure = one missing
clip) is tested with a stand-in codec; the real Lyra models are not in CI (they come from the
google/lyra repository), so that test runs only where LYRA_MODELS names a folder that holds them."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import speechlike
from core.errors import ConfigError
from core.training import codec_resynth, decoded_pool
from core.training.datasets import read_labelled
from core.training.synth import EngineUnavailable

SR = 16_000


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Three sources with 5 reals and 2 fakes each in train, and one dev_eval source."""
    root = tmp_path_factory.mktemp("pool")
    rows = []
    for s in range(4):
        for lab, n in (("real", 5), ("fake", 2)):
            for i in range(n):
                rel = f"clips/src{s}/{lab}{i}.wav"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, speechlike(1.0 + 0.3 * i, sr=SR, seed=10 * s + i + 100 * (lab == "fake")), SR)
                rows.append({"path": rel, "label": lab, "split": "dev_eval" if s == 3 else "train",
                             "source_repo": f"o/src{s}", "generator": "g" if lab == "fake" else "ground_truth"})
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = root / "cache"
    decoded_pool.build(root / "manifest.csv", out, progress=False)
    return out


class HalfCodec:
    """Stands in for Lyra: halves the signal and keeps whole 320-sample frames; fails on the calls
    numbered in `fail_at`."""

    def __init__(self, fail_at: set[int] = frozenset()):
        self.fail_at, self.calls = fail_at, 0

    def load(self):
        pass

    def resynthesize(self, x, bitrate):
        self.calls += 1
        if self.calls in self.fail_at:
            raise RuntimeError("decoder exploded")
        return 0.5 * x[: len(x) // 320 * 320]


def run(cache, out, codec, **kw):
    return codec_resynth.resynthesize_pool([str(cache)], "unused", out, codec=codec, progress=False, **kw)


def test_bitrates_map_to_lyras_quantiser_counts():
    assert [codec_resynth.quantizers_for(b) for b in (3200, 6000, 9200)] == [16, 30, 46]
    with pytest.raises(ConfigError, match="3200, 6000, 9200"):
        codec_resynth.quantizers_for(8000)


def test_it_writes_labelled_decodable_fakes_from_train_reals_only(cache, tmp_path):
    counts = run(cache, tmp_path / "out", HalfCodec(), per_source=3)
    assert counts == {"made": 9, "kept": 0, "failed": 0}
    rows = list(csv.DictReader(open(tmp_path / "out" / "manifest.csv")))
    settings = [json.loads(r["settings"]) for r in rows]
    assert {s["original_source"] for s in settings} == {"o/src0", "o/src1", "o/src2"}, "no dev_eval source"
    assert all("/real" in s["original"] for s in settings), "only reals are resynthesised"
    assert {r["label"] for r in rows} == {"fake"} and {r["attack_type"] for r in rows} == {"codec_resynthesis"}
    assert {r["source_repo"] for r in rows} <= {"codec/lyra-3200", "codec/lyra-6000", "codec/lyra-9200"}
    for r in rows:
        x, sr = sf.read(tmp_path / "out" / r["path"])
        assert sr == SR and len(x) % 320 == 0 and abs(len(x) / SR - float(r["duration_s"])) < 1e-3
        assert r["generator"] == f"lyra-v2 soundstream {json.loads(r['settings'])['bitrate'] / 1000:g} kbps"
    clips = read_labelled(tmp_path / "out" / "manifest.csv")
    assert len(clips) == 9 and all(c.label == 1 for c in clips)


def test_group_by_source_names_the_originals_source_and_the_draw_is_fixed(cache, tmp_path):
    run(cache, tmp_path / "a", HalfCodec(), per_source=2, group_by="source")
    run(cache, tmp_path / "b", HalfCodec(), per_source=2, group_by="bitrate")
    a = list(csv.DictReader(open(tmp_path / "a" / "manifest.csv")))
    b = list(csv.DictReader(open(tmp_path / "b" / "manifest.csv")))
    assert [r["path"] for r in a] == [r["path"] for r in b], "same originals, same bitrates"
    assert all(r["source_repo"] == "codec/lyra:" + json.loads(r["settings"])["original_source"] for r in a)
    # a larger draw keeps the smaller one's originals (a prefix of one permutation per source)
    run(cache, tmp_path / "c", HalfCodec(), per_source=4)
    c = {r["path"] for r in csv.DictReader(open(tmp_path / "c" / "manifest.csv"))}
    assert {r["path"] for r in b} <= c


def test_a_rerun_keeps_what_is_there_and_a_failing_clip_is_counted_not_fatal(cache, tmp_path):
    first = run(cache, tmp_path / "out", HalfCodec(), per_source=2)
    again = run(cache, tmp_path / "out", HalfCodec(), per_source=2)
    assert first["made"] == 6 and again == {"made": 0, "kept": 6, "failed": 0}
    broken = run(cache, tmp_path / "other", HalfCodec(fail_at={2}), per_source=5)
    assert broken == {"made": 14, "kept": 0, "failed": 1}
    assert len(list(csv.DictReader(open(tmp_path / "other" / "manifest.csv")))) == 14


def test_bad_settings_are_refused_before_any_work(cache, tmp_path):
    with pytest.raises(ConfigError, match="group-by"):
        run(cache, tmp_path / "x", HalfCodec(), group_by="speaker")
    with pytest.raises(ConfigError, match="not 4000"):
        run(cache, tmp_path / "x", HalfCodec(), bitrates=(4000,))
    with pytest.raises(EngineUnavailable, match="soundstream_encoder.tflite"):
        codec_resynth.LyraCodec(tmp_path / "no_models").load()
    assert not (tmp_path / "x").exists()


LYRA = os.environ.get("LYRA_MODELS", "")
LYRA_READY = bool(LYRA) and all((Path(LYRA) / f).is_file() for f in codec_resynth.MODEL_FILES)


@pytest.mark.skipif(not LYRA_READY, reason="set LYRA_MODELS to a folder with google/lyra's lyra/model_coeffs/*.tflite to run this")
def test_lyra_resynthesis_follows_the_original_and_depends_on_the_bitrate():
    from core.audio import load_audio

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    rows = list(csv.DictReader(open(shared / "manifest.csv")))
    real = next(r for r in rows if r["label"] == "real")
    x = load_audio(shared / real["path"]).samples[: 3 * SR]
    codec = codec_resynth.LyraCodec(LYRA)
    codec.load()
    lo, hi = codec.resynthesize(x, 3200), codec.resynthesize(x, 9200)
    n = len(x) // 320 * 320
    assert len(lo) == len(hi) == n
    corr_hi = np.corrcoef(x[:n], hi)[0, 1]
    assert corr_hi > 0.5, "the decode follows the waveform (no delay at Lyra's frame alignment)"
    assert np.abs(hi - x[:n]).mean() < np.abs(lo - x[:n]).mean(), "more bits, closer to the original"
    assert not np.allclose(codec.resynthesize(x, 9200), 0)
