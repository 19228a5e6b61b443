"""The shipped set as committed: all seven models, `whisper` included, load offline
(HF_HUB_OFFLINE=1, no weights folder) from assets/models and the pip-installed encoder, and score
a file; the ensemble card's band and threshold are the ones fitted on unseen sources."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, python_env, speechlike

CARDS = REPO / "assets" / "models"


def test_shipped_set_with_whisper_loads_offline_and_scores(tmp_path):
    import soundfile as sf

    clip = tmp_path / "c.wav"
    sf.write(clip, speechlike(5.0, seed=3), 16_000)
    env = python_env()
    env.pop("DEEPFAKE_WEIGHTS_DIR", None)
    env["HF_HUB_OFFLINE"] = "1"
    r = subprocess.run([sys.executable, "-m", "core", "score", str(clip), "--set", "shipped", "--json"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)[0]
    assert set(doc["models"]) == {"senet", "resnet", "res2net", "gnn", "darts", "lstm", "whisper"}
    assert all(m["source"] == "shipped" and m["p_fake"] is not None for m in doc["models"].values())
    card = json.loads((CARDS / "ensemble.json").read_text())
    ens = doc["ensemble"]
    assert ens["threshold"] == pytest.approx(card["threshold"])
    band = card["inconclusive_band"]
    assert ens["inconclusive_band"] == [pytest.approx(band["low"]), pytest.approx(band["high"])]
    assert "dev_eval" in ens["band_source"] and ens["assessment"] in ("likely fake", "inconclusive", "likely real")
    weighted = {n for n, w in card["weights"].items() if w > 0}
    want = sum(card["weights"][n] * doc["models"][n]["p_fake"] for n in weighted)
    if card.get("calibration", {}).get("method") != "platt":
        assert ens["p_fake"] == pytest.approx(want, abs=1e-6)


def test_every_shipped_card_states_its_unseen_source_figures():
    for name in ("senet", "resnet", "res2net", "gnn", "darts", "lstm", "whisper"):
        card = json.loads((CARDS / f"{name}.json").read_text())
        d = card["dev_eval"]
        assert "never trained on" in d["protocol"]
        for v in ("restored", "platform", "phone"):
            assert 0 <= d[v]["eer"] <= 1 and d[v]["clips"] > 300
        assert "as_trained" in d["ece"]
    assert "train" in json.loads((CARDS / "whisper.json").read_text())["training_data"]


def test_the_shipped_whisper_and_ensemble_cards_carry_their_eer_intervals():
    for name in ("whisper", "ensemble"):
        d = json.loads((CARDS / f"{name}.json").read_text())["dev_eval"]
        assert "bootstrap" in d["eer_interval_method"]
        for v in ("restored", "platform", "phone"):
            lo, hi = d[v]["eer_interval"]
            assert 0 <= lo < d[v]["eer"] < hi <= 1


def test_committed_weights_stay_small():
    total = sum(p.stat().st_size for p in CARDS.iterdir())
    assert total < 40 * 2**20
