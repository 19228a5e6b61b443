"""core/training/validation_report.py: the ensemble's candidate rules and their nested, leave-one-source-out choice."""

from __future__ import annotations

import numpy as np
import pytest

from core.metrics import eer
from core.training.validation_report import ENSEMBLE_RULES, leave_one_group_out, nested_ensemble, select_rule

NAMES = ["strong_a", "strong_b", "weak", "noise_a", "noise_b", "flipped"]


def _oof(seed: int = 0, n_groups: int = 5, per_class: int = 40):
    """Scores of six models on five groups: two informative, one weak, two noise, one inverted."""
    rng = np.random.default_rng(seed)
    y = np.tile(np.r_[np.zeros(per_class), np.ones(per_class)], n_groups).astype(int)
    groups = np.repeat([f"g{i}" for i in range(n_groups)], 2 * per_class)
    sig = {"strong_a": 1.5, "strong_b": 1.5, "weak": 0.4, "noise_a": 0.0, "noise_b": 0.0, "flipped": -0.8}
    scores = {n: 1 / (1 + np.exp(-(s * (2 * y - 1) + rng.normal(size=len(y))))) for n, s in sig.items()}
    return scores, y, groups, np.ones(len(y), bool)


def test_candidate_rules_weigh_as_they_say():
    scores, y, _, _ = _oof()
    for name, (_, rule) in ENSEMBLE_RULES.items():
        w = rule(scores, y)
        assert sum(w.values()) == pytest.approx(1.0), name
        assert all(v >= 0 for v in w.values()), name
    assert ENSEMBLE_RULES["auc"][1](scores, y)["flipped"] == 0.0      # worse than chance: no weight
    top2 = ENSEMBLE_RULES["top2"][1](scores, y)
    assert {n for n, v in top2.items() if v > 0} == {"strong_a", "strong_b"}
    top3 = ENSEMBLE_RULES["top3"][1](scores, y)
    assert {n for n, v in top3.items() if v > 0} == {"strong_a", "strong_b", "weak"}
    sq, lin = ENSEMBLE_RULES["auc_squared"][1](scores, y), ENSEMBLE_RULES["auc"][1](scores, y)
    assert sq["strong_a"] > lin["strong_a"] and sq["weak"] < lin["weak"]  # squaring sharpens
    assert set(ENSEMBLE_RULES["equal"][1](scores, y).values()) == {1 / 6}


def test_select_rule_takes_the_lowest_leave_one_group_out_eer():
    scores, y, groups, mask = _oof()
    best, table = select_rule(scores, y, groups, mask)
    assert set(table) == set(ENSEMBLE_RULES)
    assert table[best] == min(table.values())
    assert table["equal"] > table[best]              # noise and an inverted model drag the plain mean down
    ens, mean_eer = leave_one_group_out(scores, y, groups, mask, ENSEMBLE_RULES[best][1])
    per = [eer(y[groups == g], ens[groups == g])[0] for g in sorted(set(groups))]
    assert mean_eer == pytest.approx(np.mean(per))


def test_each_held_out_group_gets_a_rule_and_weights_chosen_without_it():
    scores, y, groups, mask = _oof(seed=1)
    _, folds = nested_ensemble(scores, y, groups, mask)
    # Scramble the held-out group's labels and scores: its own fold's choice must not move.
    rng = np.random.default_rng(7)
    held = groups == "g2"
    y2 = y.copy()
    y2[held] = rng.permutation(y[held])
    scores2 = {n: p.copy() for n, p in scores.items()}
    for p in scores2.values():
        p[held] = rng.uniform(size=held.sum())
    ens2, folds2 = nested_ensemble(scores2, y2, groups, mask)
    assert folds2["g2"]["rule"] == folds["g2"]["rule"]
    assert folds2["g2"]["weights"] == pytest.approx(folds["g2"]["weights"])
    assert folds["g2"]["rule"] == select_rule(scores, y, groups, mask & ~held)[0]
    w = folds2["g2"]["weights"]
    assert ens2[held] == pytest.approx(sum(w[n] * scores2[n][held] for n in NAMES))
