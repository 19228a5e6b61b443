"""scripts/oof_by_generator.py: per-cell medians and rank errors from constructed scores."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from conftest import REPO
from core.training.datasets import Item

spec = importlib.util.spec_from_file_location("oof_by_generator", REPO / "scripts" / "oof_by_generator.py")
obg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(obg)


def _items():
    rows = [(0, "a", "corpusA"), (0, "a", "corpusA"), (0, "a", "corpusB"), (1, "a", "good"), (1, "a", "good"),
            (1, "a", "bad"), (0, "b", "corpusC"), (1, "b", "good")]
    return [Item(f"c{i}.wav", lab, g, {"generator": gen if lab else "ground_truth",
                                       "speaker_or_corpus": "x" if lab else gen})
            for i, (lab, g, gen) in enumerate(rows)]


def test_cells_rank_worst_first_and_count_mis_rankings_against_their_own_source():
    # source a: reals 0.1, 0.2 (corpusA), 0.7 (corpusB); fakes 0.9, 0.8 (good), 0.15 (bad); source b separate
    oof = np.array([0.1, 0.2, 0.7, 0.9, 0.8, 0.15, 0.95, 0.05, np.nan])   # a NaN added fake at the end
    rows = obg.cell_rows(_items(), oof, decoded=8)
    by = {(r["source"], r["label"], r["generator_or_corpus"]): r for r in rows}
    bad = by[("a", "fake", "bad")]
    assert bad["clips"] == 1 and bad["median_score"] == pytest.approx(0.15)
    assert bad["rank_error"] == pytest.approx(2 / 3)      # reals 0.2 and 0.7 score at least as high
    assert by[("a", "fake", "good")]["rank_error"] == 0.0
    assert by[("a", "real", "corpusB")]["rank_error"] == pytest.approx(1 / 3)   # above the bad fake only
    assert by[("a", "real", "corpusA")]["rank_error"] == pytest.approx(1 / 6)   # 0.2 above 0.15; 0.1 below all
    # source b is ranked backwards: its real above its fake, each a full error, and not mixed with source a
    assert by[("b", "real", "corpusC")]["rank_error"] == 1.0 and by[("b", "fake", "good")]["rank_error"] == 1.0
    weights = [r["rank_error"] * r["clips"] for r in rows]
    assert weights == sorted(weights, reverse=True)


def test_a_run_trained_on_other_data_is_refused():
    with pytest.raises(SystemExit, match="trained on"):
        obg.cell_rows(_items(), np.zeros(8), decoded=7)
    with pytest.raises(SystemExit, match="trained on"):
        obg.cell_rows(_items(), np.zeros(5), decoded=8)
