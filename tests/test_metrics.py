"""Tests for gsscreen.evaluation.metrics against sklearn and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from gsscreen.evaluation.metrics import (
    auc_mann_whitney,
    binary_metrics,
    choose_threshold,
    confusion_matrix,
    midrank,
    summarize_folds,
    threshold_candidates,
)


def _data(seed: int, n: int = 300, decimals: int | None = 2, prevalence: float = 0.4):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    y[:2] = [0, 1]  # both classes always present
    p = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 1.2 * y)))
    if decimals is not None:
        p = np.round(p, decimals)  # ties across classes
    return y, p


def _brute_auc(y, p):
    pos, neg = p[y == 1], p[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_and_brute_force(seed):
    y, p = _data(seed, decimals=1 if seed % 2 else None)
    auc = auc_mann_whitney(y, p)
    assert auc == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert auc == pytest.approx(_brute_auc(y, p), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), min_size=2, max_size=40).filter(
        lambda rows: len({r[0] for r in rows}) == 2
    )
)
def test_auc_property_against_brute_force(rows):
    y = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows], dtype=float) / 6.0  # small integer grid -> many ties
    assert auc_mann_whitney(y, p) == pytest.approx(_brute_auc(y, p), abs=1e-12)


def test_midrank_averages_ties():
    r = midrank(np.array([3.0, 1.0, 3.0, 2.0, 3.0]))
    np.testing.assert_allclose(r, [4.0, 1.0, 4.0, 2.0, 4.0])


def test_auc_extremes_and_flip():
    y = np.array([0, 0, 1, 1])
    assert auc_mann_whitney(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc_mann_whitney(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert auc_mann_whitney(y, np.full(4, 0.5)) == 0.5
    yy, p = _data(7)
    assert auc_mann_whitney(yy, -p) == pytest.approx(1.0 - auc_mann_whitney(yy, p))


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.62])
def test_binary_metrics_match_sklearn(threshold):
    y, p = _data(3)
    m = binary_metrics(y, p, threshold)
    call = (p >= threshold).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, call))
    assert m["recall"] == pytest.approx(skm.recall_score(y, call))
    assert m["sensitivity"] == m["recall"]
    assert m["precision"] == pytest.approx(skm.precision_score(y, call))
    assert m["f1"] == pytest.approx(skm.f1_score(y, call))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - call))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    tn, fp, fn, tp = skm.confusion_matrix(y, call, labels=[0, 1]).ravel()
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (tp, fp, tn, fn)
    assert m["n"] == y.size and m["threshold"] == threshold


def test_threshold_is_inclusive():
    y = np.array([0, 1, 1])
    m = binary_metrics(y, np.array([0.2, 0.5, 0.7]), threshold=0.5)
    assert m["tp"] == 2 and m["fn"] == 0


def test_undefined_ratios_are_nan_not_zero():
    y = np.array([0, 0, 1, 1])
    m = binary_metrics(y, np.array([0.1, 0.2, 0.3, 0.4]), threshold=0.9)  # nothing called GS
    assert math.isnan(m["precision"])
    assert m["recall"] == 0.0 and m["f1"] == 0.0 and m["specificity"] == 1.0
    single = binary_metrics(np.array([1, 1]), np.array([0.7, 0.2]))
    assert math.isnan(single["auc"]) and math.isnan(single["specificity"]) and single["recall"] == 0.5


def test_confusion_matrix_layout_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    c = rng.integers(0, 2, 50)
    np.testing.assert_array_equal(confusion_matrix(y, c), skm.confusion_matrix(y, c, labels=[0, 1]))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3])), "only 0"),
        ((np.array([0, 1]), np.array([0.1, np.nan])), "finite"),
        ((np.array([0, 1]), np.array([0.1, 0.2, 0.3])), "3 values"),
        ((np.array([[0, 1]]), np.array([0.1, 0.2])), "1-D"),
        ((np.array([]), np.array([])), "empty"),
        ((np.array(["GS", "control"]), np.array([0.1, 0.2])), "numbers"),
    ],
)
def test_validation_errors(args, match):
    with pytest.raises(ValueError, match=match):
        binary_metrics(*args)


def test_auc_needs_both_classes():
    with pytest.raises(ValueError, match="no control"):
        auc_mann_whitney(np.array([1, 1]), np.array([0.1, 0.2]))


def _rules(p):
    """Every distinct decision rule on ``p``, derived here without the package: below the lowest score, halfway
    between consecutive distinct scores, above the highest."""
    u = sorted(set(float(v) for v in p))
    return [u[0]] + [(a + b) / 2 for a, b in itertools.pairwise(u)] + [u[-1] + 1.0]


def _rates(y, p, t):
    """(sensitivity, specificity, accuracy, F1) of the rule ``p >= t``, counted directly."""
    called = p >= t
    tp = int((called & (y == 1)).sum())
    fp = int((called & (y == 0)).sum())
    tn = int((~called & (y == 0)).sum())
    fn = int((~called & (y == 1)).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return tp / (tp + fn), tn / (tn + fp), (tp + tn) / len(y), f1


def _sweep(y, p):
    """Brute force: every rule with its (threshold, se, sp, acc, f1)."""
    return [(t, *_rates(y, p, t)) for t in _rules(p)]


@pytest.mark.parametrize("seed", range(3))
def test_choose_threshold_optimises_the_criterion(seed):
    y, p = _data(seed, n=120)
    sweep = _sweep(y, p)
    for method, key in (("youden", lambda r: r[1] + r[2]), ("accuracy", lambda r: r[3]), ("f1", lambda r: r[4])):
        t = choose_threshold(y, p, method)
        best = max(key(r) for r in sweep)
        got = key((t, *_rates(y, p, t)))
        assert got == pytest.approx(best)
        # ties go to the lowest (most sensitive) rule
        lowest = min(r[0] for r in sweep if key(r) == pytest.approx(best))
        assert _rates(y, p, t) == _rates(y, p, lowest)


@pytest.mark.parametrize(
    ("y", "p", "expected"),
    [
        # One control below two GS: the rule between them separates perfectly (specificity 1, not 0).
        ([0, 1, 1], [0.1, 0.5, 0.7], {"youden": 0.3, "accuracy": 0.3, "f1": 0.3}),
        # Perfect separation: halfway between the classes.
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], {"youden": 0.5, "accuracy": 0.5, "f1": 0.5}),
        # All scores equal: calling everyone GS is as good as calling no one (J = 0); ties go to the sensitive rule.
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], {"youden": 0.5, "accuracy": 0.5, "f1": 0.5}),
        # A tie across the classes at 0.6: J is 0.5 at 0.4 (se 1, sp 0.5) and 1/3 at 0.75.
        ([0, 0, 1, 1, 1], [0.2, 0.6, 0.6, 0.6, 0.9], {"youden": 0.4, "accuracy": 0.4, "f1": 0.4}),
        # Control scored highest: the best rule keeps both lower GS photos.
        ([1, 1, 0, 0, 0, 0], [0.3, 0.4, 0.1, 0.2, 0.35, 0.9], {"youden": 0.25, "accuracy": 0.25}),
    ],
)
def test_choose_threshold_hand_worked_cases(y, p, expected):
    y, p = np.array(y), np.array(p)
    for method, t in expected.items():
        assert choose_threshold(y, p, method) == pytest.approx(t), method


def test_choose_threshold_targets_hand_worked():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    # Sensitivity 1 needs t <= 0.4; the highest such rule is halfway between 0.1 and 0.4.
    assert choose_threshold(y, p, "sensitivity@1.0") == pytest.approx(0.25)
    # Specificity 1 needs t > 0.6; the lowest such rule is halfway between 0.6 and 0.9.
    assert choose_threshold(y, p, "specificity@1.0") == pytest.approx(0.75)
    assert choose_threshold(y, p, "sensitivity@0.5") == pytest.approx(0.75)
    assert choose_threshold(y, p, "specificity@0.5") == pytest.approx(0.25)


def test_choose_threshold_sensitivity_and_specificity_targets():
    y, p = _data(11, n=200)
    sweep = _sweep(y, p)
    t = choose_threshold(y, p, "sensitivity@0.9")
    se, sp, _, _ = _rates(y, p, t)
    assert se >= 0.9
    assert sp == max(r[2] for r in sweep if r[1] >= 0.9)
    t2 = choose_threshold(y, p, "specificity@0.8")
    se2, sp2, _, _ = _rates(y, p, t2)
    assert sp2 >= 0.8
    assert se2 == max(r[1] for r in sweep if r[2] >= 0.8)


def test_threshold_candidates_are_between_scores():
    p = np.array([0.2, 0.4, 0.4, 0.9])
    c = threshold_candidates(p)
    np.testing.assert_allclose(c[:-1], [0.2, 0.3, 0.65])
    assert c[-1] > 0.9 and (p >= c[-1]).sum() == 0


def test_choose_threshold_fixed_ignores_the_data():
    y, p = _data(2, n=40)
    assert choose_threshold(y, p, "fixed_0.5") == 0.5
    assert choose_threshold(y, p, "fixed:0.35") == 0.35
    assert choose_threshold(np.ones(3, dtype=int), np.array([0.1, 0.2, 0.3]), "fixed_0.5") == 0.5  # one class is fine


def test_choose_threshold_rejects_unknown_methods():
    y, p = _data(1, n=30)
    for bad in ("best", "sensitivity@1.5", "sensitivity=0.9", "fixed"):
        with pytest.raises(ValueError, match=r"threshold method|\[0, 1\]"):
            choose_threshold(y, p, bad)


def test_summarize_folds_uses_sample_sd_and_skips_nan():
    folds = [
        {"accuracy": 0.8, "auc": 0.9, "precision": 0.5, "name": "fold0", "tp": 3},
        {"accuracy": 0.7, "auc": 0.85, "precision": math.nan, "name": "fold1", "tp": 4},
        {"accuracy": 0.9, "auc": 0.95, "precision": 0.7, "name": "fold2", "tp": 5},
    ]
    s = summarize_folds(folds)
    assert "name" not in s
    assert s["accuracy"]["mean"] == pytest.approx(0.8)
    assert s["accuracy"]["sd"] == pytest.approx(np.std([0.8, 0.7, 0.9], ddof=1))
    assert s["accuracy"]["values"] == [0.8, 0.7, 0.9]
    assert s["precision"]["n"] == 2 and s["precision"]["values"][1] is None
    assert s["precision"]["mean"] == pytest.approx(0.6)
    assert s["tp"]["mean"] == pytest.approx(4.0)
    one = summarize_folds([{"auc": 0.9}])
    assert math.isnan(one["auc"]["sd"])
    with pytest.raises(ValueError, match="at least one"):
        summarize_folds([])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: binary_metrics(np.array([0.0, 1.0, np.nan]), np.array([0.1, 0.2, 0.3]), 0.5),
         r"^y_true contains NaN at index 2$"),
        (lambda: binary_metrics(np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]), 0.5),
         r"only 0 \(control\) and 1 \(GS\); found 2 at index 1"),
        (lambda: binary_metrics(np.array([0, 1]), np.array(["a", "b"]), 0.5), r"^p_gs must be numeric, got dtype"),
        (lambda: binary_metrics(np.array([0, 1]), np.array([[0.1, 0.2]]), 0.5), r"^p_gs must be 1-D"),
        (lambda: binary_metrics(np.array([0, 1]), np.array([0.1, np.inf]), 0.5),
         r"^p_gs must be finite; found inf at index 1"),
        (lambda: choose_threshold(np.array([0, 1]), np.array([0.1, np.nan])), r"^p_val "),
        (lambda: choose_threshold(np.array([1, 1]), np.array([0.1, 0.2])), r"no control \(0\)"),
        (lambda: choose_threshold(np.array([0, 0]), np.array([0.1, 0.2])), r"no GS \(1\)"),
        (lambda: confusion_matrix(np.array([0, 1, 1]), np.array([0, 1])), r"^y_pred has 2 values but y_true has 3$"),
        (lambda: binary_metrics(np.array([0, 1]), np.array([0.1, 0.2]), math.nan), r"threshold must be a finite"),
    ],
)
def test_errors_name_the_argument_and_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_float_and_bool_labels_are_accepted():
    p = np.array([0.1, 0.9, 0.8])
    ref = binary_metrics(np.array([0, 1, 1]), p, 0.5)
    assert binary_metrics(np.array([0.0, 1.0, 1.0]), p, 0.5) == ref
    assert binary_metrics(np.array([False, True, True]), p, 0.5) == ref


def test_one_photo_per_class_is_enough_for_every_rate():
    """Ratios with a denominator of exactly 1 are defined (only 0 makes them NaN); AUC needs one of each class."""
    m = binary_metrics(np.array([0, 1]), np.array([0.2, 0.7]), 0.5)
    assert (m["recall"], m["specificity"], m["precision"], m["auc"]) == (1.0, 1.0, 1.0, 1.0)
    only_gs = binary_metrics(np.array([1, 1]), np.array([0.2, 0.7]), 0.5)
    assert only_gs["recall"] == 0.5 and math.isnan(only_gs["auc"]) and math.isnan(only_gs["specificity"])


def test_summarize_two_folds_has_an_sd_one_fold_does_not():
    two = summarize_folds([{"auc": 0.8}, {"auc": 0.9}])["auc"]
    assert two["mean"] == pytest.approx(0.85) and two["sd"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    one = summarize_folds([{"auc": 0.8}])["auc"]
    assert one["mean"] == 0.8 and math.isnan(one["sd"])
    missing = summarize_folds([{"auc": None}, {"auc": 0.7}, {"accuracy": 0.5}])["auc"]
    assert missing["mean"] == pytest.approx(0.7) and len(missing["values"]) == 3


def test_f1_optimum_differs_from_youden_when_controls_dominate():
    """Many controls, few GS: F1 (which ignores true negatives) prefers a stricter rule than Youden's J."""
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([.95, .9, .85, .3, .2, .6, .65, .7, .1, .1, .4, .35, .05, .05, .05, .05, .05, .05, .05, .05])
    sweep = _sweep(y, p)
    best_f1 = max(r[4] for r in sweep)
    t_f1 = choose_threshold(y, p, "f1")
    assert _rates(y, p, t_f1)[3] == pytest.approx(best_f1)
    assert t_f1 == pytest.approx(0.875)  # keeps only the two clearest GS photos: F1 = 0.8 vs 0.6
    assert choose_threshold(y, p, "youden") == pytest.approx(0.375)  # J = 13/17 there, 2/3 at 0.875


@pytest.mark.parametrize("lo", [0.3, 0.25, 0.7])
def test_adjacent_doubles_stay_two_rules(lo):
    """Two scores one float apart (their midpoint rounds onto the lower one for 0.25 and 0.7, up for 0.3): the rule
    between them must still call only the higher one GS."""
    hi = np.nextafter(lo, 1.0)
    p = np.array([lo, hi, 0.95])
    c = threshold_candidates(p)
    assert len(c) == 4
    assert ((p >= c[1]) == [False, True, True]).all()
    assert choose_threshold(np.array([0, 1, 1]), p) == c[1]
    # the same pair above a lower score: the rule between them is the third candidate
    p2 = np.array([0.01, lo, hi])
    c2 = threshold_candidates(p2)
    assert ((p2 >= c2[2]) == [False, False, True]).all()


def test_zero_and_one_targets_are_valid():
    y, p = np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9])
    assert choose_threshold(y, p, "sensitivity@0") > 0.9  # nothing called GS meets "sensitivity >= 0"
    assert choose_threshold(y, p, "specificity@0") == pytest.approx(0.1)  # everything called GS


def test_edge_inputs_a_caller_can_hit():
    # one photo, integer 0/1 scores, a fixed rule on bad scores, an all-control fold, no folds at all
    assert binary_metrics(np.array([1]), np.array([0.7]), 0.5)["recall"] == 1.0
    assert binary_metrics(np.array([0, 1]), np.array([0, 1]), 0.5)["accuracy"] == 1.0
    with pytest.raises(ValueError, match=r"^y_true is empty$"):
        binary_metrics(np.array([], dtype=int), np.array([]), 0.5)
    with pytest.raises(ValueError, match=r"^p_val must be finite"):
        choose_threshold(np.array([0, 1]), np.array([0.1, np.nan]), "fixed_0.5")
    controls = binary_metrics(np.array([0, 0]), np.array([0.2, 0.7]), 0.5)
    assert controls["specificity"] == 0.5 and math.isnan(controls["recall"]) and math.isnan(controls["auc"])
    with pytest.raises(ValueError, match=r"^summarize_folds needs at least one fold's metrics$"):
        summarize_folds([])
    with pytest.raises(ValueError, match=r"^y_pred must contain only 0 \(control\) and 1 \(GS\); found 2"):
        confusion_matrix(np.array([0, 1]), np.array([0, 2]))
