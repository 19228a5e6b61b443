"""The lab's extended-pool path on small made-up data (CI has no extended pool): combined and
capped manifests, the decoded cache, the channel transforms, the whisper back end's crops and
fit, the shortcut audit, and the dev_eval figures."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import speechlike
from core.training import channel, decoded_pool, manifests, shortcuts

SR = 16_000


def write_manifest(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "split", "source_repo", "generator"])
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def tiny_pool(tmp_path_factory) -> Path:
    """Six sources x (real, fake); the fakes are 'longer and at 24 kHz' in three of them, a shortcut."""
    root = tmp_path_factory.mktemp("tiny_pool")
    rows = []
    for s in range(6):
        for lab in ("real", "fake"):
            for i in range(4):
                sr = 24_000 if (lab == "fake" and s < 3) else 16_000
                secs = 1.0 + 0.5 * i + (1.5 if lab == "fake" and s < 3 else 0.0)
                x = speechlike(secs, sr=sr, seed=100 * s + 10 * i + (lab == "fake"))
                rel = f"clips/src{s}/{lab}{i}.wav"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, x, sr)
                rows.append({"path": rel, "label": lab, "split": "dev_eval" if s == 5 else "train",
                             "source_repo": f"o/src{s}", "generator": "g" if lab == "fake" else "ground_truth"})
    write_manifest(root, rows)
    return root


def test_combine_keeps_one_split_caps_cells_and_makes_paths_absolute(tiny_pool, tmp_path):
    out = tmp_path / "m.csv"
    info = manifests.combine([tiny_pool / "manifest.csv"], out, split="train", cap=3, seed=1)
    rows = list(csv.DictReader(open(out)))
    assert info == {"clips": 5 * 2 * 3, "real": 15, "fake": 15, "sources": 5}
    assert all(Path(r["path"]).is_absolute() and Path(r["path"]).is_file() for r in rows)
    assert all(r["split"] == "train" for r in rows) and not any("src5" in r["path"] for r in rows)
    again = tmp_path / "m2.csv"
    manifests.combine([tiny_pool / "manifest.csv"], again, split="train", cap=3, seed=1)
    assert out.read_text() == again.read_text(), "the draw is reproducible"


def test_decoded_cache_holds_16k_arrays_and_the_facts(tiny_pool, tmp_path):
    cache = tmp_path / "cache"
    decoded_pool.build(tiny_pool / "manifest.csv", cache, progress=False)
    clips = decoded_pool.read_index(cache)
    assert len(clips) == 48 and {c.split for c in clips} == {"train", "dev_eval"}
    assert len(decoded_pool.read_index(cache, "dev_eval")) == 8
    c = next(c for c in clips if c.meta["original_rate"] == "24000")
    x = c.audio(cache)
    assert x.dtype == np.float32 and abs(len(x) / SR - float(c.meta["duration_s"])) < 0.01
    # resumable: a second build decodes nothing new and leaves the arrays as they were
    before = {p.name: p.stat().st_mtime_ns for p in (cache / "clips").iterdir()}
    decoded_pool.build(tiny_pool / "manifest.csv", cache, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (cache / "clips").iterdir()} == before


@pytest.mark.parametrize("name", sorted(channel.TRANSFORMS))
def test_channel_transforms_keep_the_length_and_change_the_signal(name):
    rng = np.random.default_rng(3)
    x = speechlike(3.0, seed=5)
    y = channel.TRANSFORMS[name](x, rng)
    assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert np.abs(y).max() <= 1.0 and not np.allclose(y, x)


def test_phone_removes_the_upper_band_and_mu_law_has_256_levels():
    x = (np.random.default_rng(0).standard_normal(SR) * 0.1).astype(np.float32)
    y = channel.phone(x, np.random.default_rng(1))
    spec = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(len(y), 1 / SR)
    assert spec[f > 4200].sum() < 0.02 * spec.sum()
    q = channel.mu_law(np.linspace(-1, 1, 10_000).astype(np.float32))
    assert len(np.unique(np.round(q, 6))) <= 256


def test_reverb_spreads_an_impulse_over_time():
    x = np.zeros(SR, np.float32)
    x[100] = 0.5
    y = channel.reverb(x, np.random.default_rng(2))
    energy = np.cumsum(y.astype(np.float64) ** 2) / np.sum(y.astype(np.float64) ** 2)
    assert np.searchsorted(energy, 0.99) > 100 + int(0.05 * SR), "99% of the energy takes over 50 ms"


def test_the_shortcut_audit_finds_a_planted_cue_and_not_a_missing_one():
    rng = np.random.default_rng(0)
    n = 400
    y = np.r_[np.zeros(n // 2), np.ones(n // 2)].astype(int)
    groups = np.array([f"s{i % 8}" for i in range(n)])
    keys = np.array([f"k{i}" for i in range(n)])
    cue = np.c_[y + 0.3 * rng.standard_normal(n)]              # the label leaks into a nuisance
    none = rng.standard_normal((n, 3))
    assert shortcuts.grouped_eer(cue, y, groups, keys)["eer"] < 0.1
    assert shortcuts.grouped_eer(none, y, groups, keys)["eer"] > 0.35


def test_the_audit_on_a_cache_sees_the_planted_rate_and_length_cue(tiny_pool, tmp_path):
    cache = tmp_path / "cache"
    decoded_pool.build(tiny_pool / "manifest.csv", cache, progress=False)
    clips = decoded_pool.read_index(cache, "train")
    x = np.array([shortcuts.restored_features(c.meta) for c in clips])
    y = np.array([c.label for c in clips])
    assert x.shape[1] == 2 + len(shortcuts.CODECS) + 1 + 3
    fake_rates = {int(c.meta["original_rate"]) for c in clips if c.label == 1}
    assert fake_rates == {16000, 24000} and {int(c.meta["original_rate"]) for c in clips if c.label == 0} == {16000}
    crop = clips[0].audio(cache)[:SR]
    f = shortcuts.crop_features(crop)
    assert len(f) == 4 and all(np.isfinite(f)) and 0 <= f[2] <= 1
    assert x[y == 1, 0].mean() > x[y == 0, 0].mean(), "fakes are longer in the planted sources"


def test_dev_eval_figures_at_a_threshold():
    from core.training.unseen_report import figures

    y = np.r_[np.zeros(10), np.ones(10)].astype(int)
    s = np.r_[np.linspace(0, 0.45, 10), np.linspace(0.55, 1, 10)]
    f = figures(y, s, 0.5)
    assert f["eer"] == 0 and f["auc"] == 1 and f["real_called_fake"] == 0 and f["fakes_caught"] == 1
    f = figures(y, s[::-1].copy(), 0.5)
    assert f["auc"] == 0 and f["real_called_fake"] == 1


def test_whisper_back_end_fit_writes_a_loadable_checkpoint_and_card(tmp_path):
    """The fit step on made-up pooled features: grouped validation picks C, the checkpoint holds
    only the back end and loads strictly into the registry's whisper module."""
    import json

    import torch

    from core.models.registry import get_set
    from core.training.whisper_backend import fit
    from core.weights import load_weights

    rng = np.random.default_rng(0)
    n_clips, dim = 240, 3072
    y = np.repeat(rng.integers(0, 2, n_clips), 2)
    x = rng.standard_normal((2 * n_clips, dim)).astype(np.float32)
    x[:, :300] += 0.8 * y[:, None]                       # 300 features carry the label
    groups = np.repeat(np.array([f"c:s{i % 6}" for i in range(n_clips)]), 2)
    keys = np.repeat(np.array([f"k{i}" for i in range(n_clips)]), 2)
    feats = tmp_path / "f.npz"
    np.savez(feats, x=x, y=y.astype(np.int8), group=groups, key=keys, view=np.tile([0, 1], n_clips))
    summary = fit(str(feats), str(tmp_path / "out"), k=3)
    card = json.loads((tmp_path / "out" / "whisper.json").read_text())
    assert card["validation"]["pooled_eer"] < 0.15 and summary["clips"] == n_clips
    assert 0 < card["threshold"] < 1 and "out-of-fold" in card["threshold_source"]
    spec = get_set("shipped").spec("whisper")
    module = spec.build(card)
    load_weights(module, tmp_path / "out" / "whisper.safetensors")
    assert not any(k.startswith("encoder") or k.startswith("_encoder") for k in module.state_dict())
    w = module.head.weight.detach().numpy()[0]
    assert w[:300].mean() > 5 * np.abs(w[300:]).mean()
    # the back end alone, on features standardised as in training, separates the classes
    z = (torch.from_numpy(x) - module.feature_mean) / module.feature_std
    logit = module.head(z).squeeze(-1).detach().numpy()
    assert logit[y == 1].mean() > logit[y == 0].mean() + 1


def test_frame_extraction_stores_the_attentive_back_ends_pooled_frames(tiny_pool, tmp_path):
    """`extract --frames` on a real cache: one [50, 4 x 384] float16 block per 4 s crop, the same
    crops (labels, groups, keys) as the statistics extraction, and the frames the model computes."""
    import torch

    from core.models.whisper import WHISPER_LOGMEL80
    from core.models.whisper_attentive import AttentiveWhisperDetector
    from core.training.whisper_backend import extract, training_crops

    cache = tmp_path / "cache"
    decoded_pool.build(tiny_pool / "manifest.csv", cache, progress=False)
    extract([str(cache)], str(tmp_path / "f.npz"), frames=True)
    extract([str(cache)], str(tmp_path / "s.npz"))
    f, s = np.load(tmp_path / "f.npz"), np.load(tmp_path / "s.npz")
    assert f["x"].shape == (80, 50, 1536) and f["x"].dtype == np.float16      # 40 train clips x 2 crops
    assert s["x"].shape == (80, 3072)
    for k in ("y", "group", "key", "view"):
        assert (f[k] == s[k]).all()
    crop = next(training_crops([str(cache)], progress=False))[0]
    want = AttentiveWhisperDetector().frames(WHISPER_LOGMEL80(torch.from_numpy(crop[None])))[0].numpy()
    np.testing.assert_allclose(f["x"][0].astype(np.float32), want, rtol=2e-3, atol=2e-3)
    # layer 1's 384 values, averaged over the 50 pooled frames, are the linear back end's layer-1 mean
    np.testing.assert_allclose(f["x"][0, :, :384].astype(np.float32).mean(0), s["x"][0, :384], atol=2e-2)


def _frames_with_a_cue(n_clips: int = 150, frames: int = 12, seed: int = 0):
    """Made-up pooled frames: a fake clip's crops carry a cue in 3 of their 12 frames only."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.integers(0, 2, n_clips), 2)
    x = rng.standard_normal((2 * n_clips, frames, 1536)).astype(np.float32)
    for i in np.flatnonzero(y == 1):
        x[i, rng.choice(frames, 3, replace=False), :64] += 2.0
    groups = np.repeat(np.array([f"c:s{i % 6}" for i in range(n_clips)]), 2)
    keys = np.repeat(np.array([f"k{i}" for i in range(n_clips)]), 2)
    return x.astype(np.float16), y, groups, keys


def test_attentive_fit_writes_a_loadable_checkpoint_and_card(tmp_path):
    """The attentive back end on made-up frames whose cue sits in a few frames: grouped validation
    picks the epochs, the card says `back_end: attentive`, the registry builds that module, and the
    checkpoint (back end only) loads strictly and separates the classes."""
    import json

    import torch

    from core.models.registry import get_set
    from core.models.whisper_attentive import AttentiveWhisperDetector
    from core.training.whisper_attentive import fit
    from core.weights import load_weights

    x, y, groups, keys = _frames_with_a_cue()
    frames = tmp_path / "frames.npz"
    np.savez(frames, x=x, y=y.astype(np.int8), group=groups, key=keys, encoder=np.array("tiny.en"))
    summary = fit(str(frames), str(tmp_path / "out"), k=3, max_epochs=4, progress=False)
    card = json.loads((tmp_path / "out" / "whisper.json").read_text())
    assert card["architecture"]["back_end"] == "attentive" and 1 <= summary["epochs"] <= 4
    assert card["validation"]["pooled_eer"] < 0.15 and "attentive" in card["family"]
    module = get_set("shipped").spec("whisper").build(card)
    assert isinstance(module, AttentiveWhisperDetector)
    load_weights(module, tmp_path / "out" / "whisper.safetensors")
    assert not any(k.startswith("encoder") or k.startswith("_encoder") for k in module.state_dict())
    with torch.no_grad():
        logit = module.eval().from_frames(torch.from_numpy(x.astype(np.float32))).numpy()
    assert logit[y == 1].mean() > logit[y == 0].mean() + 1


@pytest.mark.parametrize("arch", [{"pool": 0}, {"pool": 10**6}, {"dim": 10**9}, {"dim": "64"}])
def test_a_card_asking_for_an_outsized_attentive_back_end_is_refused(arch):
    """The card travels with untrusted weights: its sizes are checked before allocation."""
    from core.errors import ConfigError
    from core.models.registry import get_set

    with pytest.raises(ConfigError, match="attentive back end needs"):
        get_set("shipped").spec("whisper").build({"architecture": {"back_end": "attentive", **arch}})


def test_attentive_pooling_ignores_frame_order_and_runs_on_the_encoder():
    """Statistics pooling: shuffling a window's frames leaves its logit; a log-mel window goes
    through the real bundled encoder to one logit per window."""
    import torch

    from core.models.whisper import WHISPER_LOGMEL80
    from core.models.whisper_attentive import AttentiveWhisperDetector

    torch.manual_seed(0)
    m = AttentiveWhisperDetector().eval()
    f = torch.randn(3, 50, 1536)
    with torch.no_grad():
        a = m.from_frames(f)
        b = m.from_frames(f[:, torch.randperm(50)])
        assert torch.allclose(a, b, atol=1e-5)
        assert not torch.allclose(a, m.from_frames(f + 0.5), atol=1e-3)
        audio = np.stack([speechlike(4.0, seed=1), speechlike(4.0, seed=2)]).astype(np.float32)
        mel = WHISPER_LOGMEL80(torch.from_numpy(audio))
        assert m(mel).shape == (2,)


def _write_scores(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_unseen_comparison_follows_the_plan_and_ships_a_band(tmp_path):
    """Made-up dev_eval scores where whisper separates the classes and the six do not: the plan's
    rules pick whisper, fit a calibration and a band, and write them into the cards."""
    import json

    from core.assessment import band_from_card
    from core.training import unseen_report as ur
    from core.training.decoded_pool import clip_key

    rng = np.random.default_rng(0)
    six = ur.SIX
    models = tmp_path / "models"
    models.mkdir()
    for n in six:
        (models / f"{n}.json").write_text(json.dumps({"name": n, "threshold": 0.5}))
    (models / "ensemble.json").write_text(json.dumps({"threshold": 0.5, "weights": {"gnn": 0.5, "resnet": 0.5}}))
    run = tmp_path / "W1"
    run.mkdir()
    (run / "whisper.json").write_text(json.dumps({"name": "whisper", "threshold": 0.5}))
    (run / "whisper.safetensors").write_bytes(b"not read here")

    def rows_for(n, sep):
        out = []
        for i in range(n):
            y = i % 2
            r = {"path": f"clips/s{i % 4}/c{i}.wav", "label": y, "source": f"s{i % 4}", "generator": "", "error": ""}
            for m in six:
                r[f"p_{m}"] = f"{rng.uniform(0, 1):.4f}"
            r["p_ensemble"] = f"{(float(r['p_gnn']) + float(r['p_resnet'])) / 2:.4f}"
            r["p_whisper"] = f"{np.clip(0.5 + sep * (y - 0.5) + 0.15 * rng.standard_normal(), 0, 1):.4f}"
            out.append(r)
        return out

    dev = tmp_path / "dev"
    for v in ur.VARIANTS:
        rows = rows_for(200, 0.6)
        _write_scores(dev / "shipped" / f"{v}.csv", [{k: x for k, x in r.items() if k != "p_whisper"} for r in rows])
        _write_scores(dev / "W1" / f"{v}.csv", [{k: r[k] for k in ("path", "label", "source", "generator", "error",
                                                                    "p_whisper")} for r in rows])
    sample = rows_for(120, 0.6)
    _write_scores(tmp_path / "sample.csv", [{k: x for k, x in r.items() if k != "p_whisper"} for r in sample])
    keys = np.array([clip_key(r["path"]) for r in sample])
    logits = np.log(np.array([float(r["p_whisper"]) for r in sample]).clip(1e-3, 1 - 1e-3) /
                    (1 - np.array([float(r["p_whisper"]) for r in sample]).clip(1e-3, 1 - 1e-3)))
    np.savez(run / "whisper.oof.npz", logit=logits, key=keys)

    comp = ur.compare(dev, {"W1": run}, tmp_path / "sample.csv", models)
    ch = comp["choices"]
    assert ch["whisper"] == "W1" and ch["whisper_joins"] and ch["rule"] == "4a whisper alone"
    assert comp["configs"]["4a whisper alone"]["restored"]["eer"] < 0.1
    assert comp["configs"]["shipped ensemble (gnn + resnet)"]["restored"]["eer"] > 0.3
    cal = ur.calibrate_and_band(dev, "W1", ch["members"], ch["threshold_before_calibration"])
    b = cal["band"]
    assert b["low"] - 1e-6 <= cal["threshold"] <= b["high"] + 1e-6 and b["right_when_fake"] >= 0.9
    comp["calibrated"] = cal
    ens = ur.ship(comp, cal, run, models, "test", dev_dir=dev, interval_resamples=60)
    assert (models / "whisper.safetensors").read_bytes() == b"not read here"
    card = json.loads((models / "ensemble.json").read_text())
    assert card["weights"]["whisper"] == 1.0 and card["calibration"]["method"] == "platt"
    band = band_from_card(card, card["threshold"])
    assert (band.low, band.high) == (round(b["low"], 6), round(b["high"], 6)) and "dev_eval" in band.source
    assert json.loads((models / "gnn.json").read_text())["dev_eval"]["restored"]["clips"] == 200
    assert ens["dev_eval"]["restored"]["inconclusive_share"] >= 0
    md = ur.markdown(comp)
    assert "4a whisper alone" in md and "inconclusive band" in md
    for name in ("gnn", "whisper", "ensemble"):   # each card's interval, from the column its figures came from
        d = json.loads((models / f"{name}.json").read_text())["dev_eval"]
        lo, hi = d["restored"]["eer_interval"]
        assert lo <= d["restored"]["eer"] <= hi and "bootstrap" in d["eer_interval_method"]
