"""The candidates comparison (core/training/candidates.py) on constructed score files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from core.training.candidates import compare, markdown, mean_threshold


def _dev(folder, p, y, sources):
    folder.mkdir(parents=True)
    for v in ("restored", "platform", "phone"):
        with open(folder / f"{v}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "source", "p_whisper"])
            for i, (pi, yi, s) in enumerate(zip(p, y, sources)):
                w.writerow([f"c{i}.wav", yi, s, pi])
    return folder


def _run(folder, threshold, oof_p, oof_y, keys):
    folder.mkdir(parents=True)
    (folder / "whisper.json").write_text(json.dumps({"threshold": threshold, "validation": {"pooled_eer": 0.2}}))
    logit = np.log(np.asarray(oof_p) / (1 - np.asarray(oof_p)))
    np.savez(folder / "whisper.oof.npz", logit=logit, y=np.asarray(oof_y, np.int8), group=np.array(["g"] * len(keys)),
             key=np.array(keys))
    return folder


def test_singles_and_a_mean_at_their_own_thresholds(tmp_path):
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    src = ["a", "a", "b", "b", "a", "a", "b", "b"]
    pa = np.array([0.1, 0.2, 0.6, 0.3, 0.7, 0.8, 0.4, 0.9])     # one real and one fake on the wrong side
    pb = np.array([0.2, 0.1, 0.2, 0.3, 0.6, 0.9, 0.8, 0.7])     # perfectly ranked
    keys = [f"k{i}" for i in range(6)]
    oy = [0, 0, 0, 1, 1, 1]
    ra = _run(tmp_path / "ra", 0.5, [0.1, 0.2, 0.3, 0.6, 0.7, 0.8], oy, keys)
    rb = _run(tmp_path / "rb", 0.4, [0.3, 0.4, 0.5, 0.45, 0.6, 0.7], oy, keys)
    res = compare({"A": (_dev(tmp_path / "a", pa, y, src), ra), "B": (_dev(tmp_path / "b", pb, y, src), rb)},
                  {"M": ["A", "B"]})
    assert res["A"]["restored"]["eer"] == pytest.approx(0.25)
    assert res["A"]["restored"]["real_called_fake"] == pytest.approx(0.25)   # 0.6 >= 0.5
    assert res["A"]["restored"]["per_source"] == {"a": 0.0, "b": 0.5}
    assert res["B"]["restored"]["eer"] == 0.0 and res["B"]["threshold"] == 0.4
    # the mean's threshold comes from the mean of the out-of-fold scores, not from dev_eval
    e, thr, n = mean_threshold([ra, rb])
    assert n == 6 and res["M"]["threshold"] == thr and res["M"]["training_side_eer"] == round(e, 4)
    assert res["M"]["restored"]["clips"] == 8
    table = markdown(res)
    assert table.count("\n") == 4 and "| M |" in table


def test_members_scored_on_other_clips_are_refused(tmp_path):
    y = np.array([0, 1])
    ra = _run(tmp_path / "ra", 0.5, [0.2, 0.8], [0, 1], ["x", "y"])
    da = _dev(tmp_path / "a", [0.2, 0.8], y, ["s", "s"])
    db = _dev(tmp_path / "b", [0.3, 0.7], y, ["s", "s"])
    (db / "restored.csv").write_text("path,label,source,p_whisper\nother.wav,0,s,0.1\nc1.wav,1,s,0.9\n")
    with pytest.raises(SystemExit, match="different clips"):
        compare({"A": (da, ra), "B": (db, ra)}, {"M": ["A", "B"]})


def test_paired_bootstrap_sees_a_real_gap_and_not_a_tie():
    from core.training.bootstrap import paired_eer_difference, strata

    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 60)
    src = np.tile(["a", "b", "c"], 40)
    noisy = rng.random(120)                                    # ranks at chance
    sharp = y * 0.6 + rng.random(120) * 0.5                   # few clips on the wrong side
    gap = paired_eer_difference(y, noisy, sharp, src, n=300)
    assert gap["difference"] < -0.3 and gap["high"] < 0 and gap["share_better"] > 0.99
    tie = paired_eer_difference(y, sharp, sharp, src, n=50)
    assert tie["difference"] == tie["low"] == tie["high"] == 0.0
    small = paired_eer_difference(y, sharp, sharp + rng.normal(0, 0.05, 120), src, n=300)
    assert small["low"] < 0 < small["high"] or small["difference"] == 0, "a small perturbation is inside the noise"
    assert sorted(len(c) for c in strata(src, y)) == [20] * 6, "resampled within each (source, label) cell"
    with pytest.raises(ValueError, match="same clips"):
        paired_eer_difference(y[:-1], noisy, sharp, src)


def test_against_adds_an_interval_per_variant_to_the_other_candidates(tmp_path):
    y = np.repeat([0, 1], 20)
    src = np.tile(["a", "b"], 20)
    rng = np.random.default_rng(0)
    keys = [f"k{i}" for i in range(4)]
    run = _run(tmp_path / "r", 0.5, [0.2, 0.3, 0.7, 0.8], [0, 0, 1, 1], keys)
    good = _dev(tmp_path / "g", y * 0.5 + rng.random(40) * 0.6, y, src)
    bad = _dev(tmp_path / "b", rng.random(40), y, src)
    res = compare({"REF": (bad, run), "NEW": (good, run)}, {}, against="REF")
    assert "against" not in res["REF"]["restored"]
    for v in ("restored", "platform", "phone"):
        d = res["NEW"][v]["against"]
        assert d["reference"] == "REF" and d["low"] <= d["difference"] <= d["high"]
        assert d["difference"] == pytest.approx(res["NEW"][v]["eer"] - res["REF"][v]["eer"], abs=1e-3)
    assert "| NEW | " in markdown(res).split("EER difference from REF")[1]


def test_add_intervals_writes_each_variants_interval_and_refuses_other_scores(tmp_path):
    from core.training.bootstrap import add_intervals, eer_interval

    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 30)
    src = np.tile(["a", "b", "c"], 20)
    p = y * 0.4 + rng.random(60) * 0.7
    dev = _dev(tmp_path / "dev", p, y, src)
    got = eer_interval(y, p, src, n=200)
    assert got["low"] <= got["eer"] <= got["high"] and got["high"] - got["low"] > 0.02
    card = tmp_path / "card.json"
    figs = {"eer": round(got["eer"], 4), "clips": 60}
    card.write_text(json.dumps({"name": "whisper", "dev_eval": {v: dict(figs) for v in ("restored", "platform", "phone")}}))
    done = add_intervals(card, dev, "whisper", n=200)
    d = json.loads(card.read_text())["dev_eval"]
    assert set(done) == {"restored", "platform", "phone"} and "bootstrap" in d["eer_interval_method"]
    assert d["restored"]["eer_interval"][0] <= d["restored"]["eer"] <= d["restored"]["eer_interval"][1]
    card.write_text(json.dumps({"dev_eval": {"restored": {"eer": 0.4, "clips": 60}}}))
    with pytest.raises(SystemExit, match="not the scores the card was measured with"):
        add_intervals(card, dev, "whisper", n=50)


def test_the_interval_is_shown_only_when_the_card_holds_a_well_formed_one():
    from core.report import _eer_cell, eer_interval
    from webui.cards import interval_text

    assert _eer_cell({"eer": 0.155, "eer_interval": [0.117, 0.194]}) == "15.5% (95% interval 11.7%-19.4%)"
    assert interval_text({"eer": 0.155, "eer_interval": [0.117, 0.194]}) == " (95% interval 12%-19%)"
    for bad in (None, [0.1], ["a", 0.2], "0.1-0.2"):
        assert eer_interval({"eer": 0.155, "eer_interval": bad}) is None
        assert _eer_cell({"eer": 0.155, "eer_interval": bad}) == "15.5%" and interval_text({"eer_interval": bad}) == ""
