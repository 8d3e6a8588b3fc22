"""Diagnostic accuracy with CIs, checked against statsmodels / scikit-learn references and closed forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, roc_curve
from statsmodels.stats.proportion import proportion_confint

from gsscreen.evaluation.diagnostic import (
    age_bands,
    cluster_bootstrap_indices,
    decision_curve,
    diagnostic_summary,
    predictive_values,
    specificity_at_sensitivity,
    subgroup_table,
    wilson,
)
from gsscreen.evaluation.roc import sensitivity_at_specificity


def _sample(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    p = 1 / (1 + np.exp(-(1.6 * y - 0.8 + rng.normal(size=n))))
    return y, p, (p >= 0.5).astype(int)


@pytest.mark.parametrize(("k", "n"), [(0, 7), (3, 7), (7, 7), (45, 52), (1, 1000)])
def test_wilson_matches_statsmodels(k, n):
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    w = wilson(k, n)
    assert np.isclose(w["lo"], lo, atol=1e-10) and np.isclose(w["hi"], hi, atol=1e-10)
    assert w["estimate"] == k / n


def test_summary_proportions_are_wilson_of_the_confusion_counts():
    y, p, c = _sample()
    s = diagnostic_summary(y, p, c, n_boot=50)
    tp, fn = int(((c == 1) & (y == 1)).sum()), int(((c == 0) & (y == 1)).sum())
    tn, fp = int(((c == 0) & (y == 0)).sum()), int(((c == 1) & (y == 0)).sum())
    for name, k, n in (("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp), ("ppv", tp, tp + fp),
                       ("npv", tn, tn + fn), ("accuracy", tp + tn, len(y))):
        lo, hi = proportion_confint(k, n, method="wilson")
        m = s["metrics"][name]
        assert (m["k"], m["n"]) == (k, n) and np.isclose(m["lo"], lo) and np.isclose(m["hi"], hi), name
    auc = s["metrics"]["auc"]
    assert np.isclose(auc["estimate"], roc_auc_score(y, p))
    assert auc["lo"] < auc["estimate"] < auc["hi"] and auc["method"] == "cluster bootstrap"


def test_fixed_operating_points_match_sklearn_roc():
    y, p, _ = _sample(400, 1)
    fpr, tpr, _ = roc_curve(y, p)
    for spec in (0.9, 0.95):
        # the highest sensitivity reachable with specificity >= spec (no ties in continuous scores)
        ref = tpr[(1 - fpr) >= spec - 1e-12].max()
        assert np.isclose(sensitivity_at_specificity(y, p, [spec])[0], ref)
    for sens in (0.9, 0.95):
        ref = (1 - fpr[tpr >= sens - 1e-12]).max()
        assert np.isclose(specificity_at_sensitivity(y, p, [sens])[0], ref)


def test_predictive_values_follow_bayes_and_equal_sample_values_at_sample_prevalence():
    y, p, c = _sample(500, 2)
    s = diagnostic_summary(y, p, c, prevalence=float(y.mean()), n_boot=40)
    m = s["metrics"]
    assert np.isclose(m["ppv@prevalence"]["estimate"], m["ppv"]["estimate"])
    assert np.isclose(m["npv@prevalence"]["estimate"], m["npv"]["estimate"])
    ppv, npv = predictive_values(0.9, 0.95, 0.01)
    assert np.isclose(ppv, 0.9 * 0.01 / (0.9 * 0.01 + 0.05 * 0.99))
    assert np.isclose(npv, 0.95 * 0.99 / (0.95 * 0.99 + 0.1 * 0.01))
    with pytest.raises(ValueError, match="prevalence"):
        predictive_values(0.9, 0.9, 1.0)


def test_cluster_bootstrap_draws_whole_clusters_and_widens_the_interval():
    y, p, c = _sample(200, 3)
    # every photo duplicated: as independent photos the interval shrinks (a false precision); as clusters it does not
    y2, p2, c2 = np.repeat(y, 2), np.repeat(p, 2), np.repeat(c, 2)
    clusters = np.repeat(np.arange(len(y)), 2)
    for idx in cluster_bootstrap_indices(clusters, y2, 5, seed=1):
        counts = pd.Series(clusters[idx]).value_counts()
        assert (counts % 2 == 0).all()  # both copies of a child always travel together
    w_single = diagnostic_summary(y, p, c, n_boot=300)["metrics"]["auc"]
    w_naive = diagnostic_summary(y2, p2, c2, n_boot=300)["metrics"]["auc"]
    w_clust = diagnostic_summary(y2, p2, c2, clusters=clusters, n_boot=300)["metrics"]["auc"]
    width = {k: v["hi"] - v["lo"] for k, v in (("single", w_single), ("naive", w_naive), ("clust", w_clust))}
    assert width["naive"] < 0.85 * width["clust"]
    assert abs(width["clust"] - width["single"]) < 0.25 * width["single"]


def test_decision_curve_closed_form():
    y, p, _ = _sample(300, 4)
    dc = decision_curve(y, p, thresholds=[0.2, 0.5])
    n = len(y)
    for t, row in zip([0.2, 0.5], dc.itertuples(), strict=True):
        tp = ((p >= t) & (y == 1)).sum()
        fp = ((p >= t) & (y == 0)).sum()
        assert np.isclose(row.model, tp / n - fp / n * t / (1 - t))
        assert np.isclose(row.treat_all, y.mean() - (1 - y.mean()) * t / (1 - t)) and row.treat_none == 0
    low = decision_curve(y, p, thresholds=[0.3], prevalence=0.01)
    assert low["treat_all"].iloc[0] < 0  # at 1 % prevalence screening everyone does harm
    with pytest.raises(ValueError, match="strictly between"):
        decision_curve(y, p, thresholds=[0.0])


def test_subgroups_give_wilson_recall_and_warn_when_small():
    frame = pd.DataFrame({
        "y": [1] * 30 + [0] * 30 + [1] * 3,
        "call": [1] * 24 + [0] * 6 + [0] * 27 + [1] * 3 + [1, 0, 1],
        "syndrome": ["down"] * 30 + [None] * 30 + ["williams"] * 3,
    })
    t = subgroup_table(frame, "syndrome").set_index("level")
    lo, hi = proportion_confint(24, 30, method="wilson")
    assert t.loc["down", "recall"] == 0.8 and np.isclose(t.loc["down", "recall_lo"], lo)
    assert np.isclose(t.loc["down", "recall_hi"], hi) and t.loc["down", "warning"] == ""
    assert t.loc["williams", "n_gs"] == 3 and "too few" in t.loc["williams", "warning"]
    assert t.loc["(not given)", "specificity"] == 0.9
    with pytest.raises(KeyError, match="ethnicity"):
        subgroup_table(frame, "ethnicity")


def test_age_bands():
    b = age_bands([0, 23.9, 24, 70, 130, 300, np.nan])
    assert b.tolist()[:6] == ["0–2 y", "0–2 y", "2–5 y", "5–10 y", "10–18 y", "≥ 18 y"] and pd.isna(b.iloc[6])
