"""Tests for gsscreen.evaluation.calibration against statsmodels / scikit-learn references."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss

from gsscreen.evaluation.calibration import (
    IsotonicCalibrator,
    PlattCalibrator,
    adjust_for_prevalence,
    brier_score,
    calibration_intercept_slope,
    calibrator_from_dict,
    choose_calibrator,
    reliability_table,
    wilson_interval,
)


def _scores(seed: int, n: int = 400, slope: float = 2.5, shift: float = 0.7):
    """Over-confident, shifted scores: the true log-odds are z, the model says shift + slope·z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n) * 1.3
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    p = 1 / (1 + np.exp(-(shift + slope * z)))
    return y, p


@pytest.mark.parametrize("seed", range(3))
def test_brier_matches_sklearn(seed):
    y, p = _scores(seed)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_intercept_slope_match_statsmodels_and_see_overconfidence():
    y, p = _scores(1, n=2000)
    fit = calibration_intercept_slope(y, p)
    lp = np.log(p / (1 - p))
    ref = sm.Logit(y, sm.add_constant(lp)).fit(disp=0)
    assert fit.slope == pytest.approx(ref.params[1], rel=1e-6)
    assert fit.slope_ci[0] == pytest.approx(ref.conf_int()[1][0], rel=1e-5)
    # slope-1 intercept through an offset: the same as a constant-only logit on y with offset lp
    ref1 = sm.GLM(y, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=lp).fit()
    assert fit.intercept == pytest.approx(ref1.params[0], rel=1e-6)
    # the scores were made 2.5× too extreme and shifted up: slope ≈ 1/2.5, intercept < 0
    assert fit.slope_ci[0] < 0.4 < fit.slope_ci[1]
    assert fit.intercept < 0 and fit.intercept_ci[1] < 0
    assert fit.n == 2000


def test_intercept_slope_of_calibrated_scores_near_ideal():
    y, p = _scores(2, n=3000, slope=1.0, shift=0.0)
    fit = calibration_intercept_slope(y, p)
    assert fit.slope_ci[0] < 1.0 < fit.slope_ci[1]
    assert fit.intercept_ci[0] < 0.0 < fit.intercept_ci[1]


def test_intercept_slope_separated_is_nan_not_a_number_the_optimiser_stopped_at():
    y = np.array([0, 0, 0, 1, 1, 1])
    fit = calibration_intercept_slope(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert math.isnan(fit.slope)


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_reliability_table_matches_calibration_curve(strategy):
    y, p = _scores(3, n=500)
    t = reliability_table(y, p, n_bins=10, strategy=strategy)
    obs, pred = calibration_curve(y, p, n_bins=10, strategy=strategy)
    np.testing.assert_allclose(t["observed"], obs)
    np.testing.assert_allclose(t["mean_p"], pred)
    assert t["n"].sum() == 500
    assert (t["ci_low"] <= t["observed"]).all() and (t["observed"] <= t["ci_high"]).all()


def test_wilson_interval_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = wilson_interval([0, 3, 10], [10, 10, 10])
    ref = [proportion_confint(k, 10, method="wilson") for k in (0, 3, 10)]
    np.testing.assert_allclose(lo, [r[0] for r in ref], atol=1e-12)
    np.testing.assert_allclose(hi, [r[1] for r in ref], atol=1e-12)


def test_platt_matches_unpenalised_logistic_regression_and_fixes_overconfidence():
    y, p = _scores(4, n=1500)
    cal = PlattCalibrator().fit(p, y)
    lp = np.log(p / (1 - p))
    ref = LogisticRegression(C=1e10, max_iter=10000, tol=1e-10).fit(lp[:, None], y)
    assert cal.b == pytest.approx(ref.coef_[0, 0], rel=1e-4)
    assert cal.a == pytest.approx(ref.intercept_[0], rel=1e-4, abs=1e-5)
    y2, p2 = _scores(5, n=3000)
    after = cal.predict(p2)
    assert brier_score(y2, after) < brier_score(y2, p2)
    fit = calibration_intercept_slope(y2, after)
    assert fit.slope_ci[0] < 1.0 < fit.slope_ci[1]


def test_platt_on_the_logit_has_no_floor_or_ceiling():
    """Platt works on logit(p), so scores a model is sure of stay near 0 and 1 after the map: a raw 0.000 must
    not read as a few percent (as a logistic curve on the raw probability would make it: sigmoid(a) at p = 0)."""
    y, p = _scores(4, n=1500)
    cal = PlattCalibrator().fit(p, y)
    assert cal.b > 0
    lo, hi = cal.predict([1e-6, 1 - 1e-6])
    assert lo < 0.005 and hi > 0.995
    assert lo < cal.predict([1e-4])[0] < cal.predict([1e-2])[0]  # still falling towards raw 0: no plateau
    # the same data fitted by a logistic curve on the raw probability bottoms out at sigmoid(intercept)
    raw_fit = LogisticRegression(C=1e10, max_iter=10000).fit(p[:, None], y)
    assert 1 / (1 + np.exp(-raw_fit.intercept_[0])) > 10 * lo
    assert cal.predict([0.0])[0] == pytest.approx(lo) and cal.predict([1.0])[0] == pytest.approx(hi)  # clipped
    assert np.all(np.diff(cal.predict(np.linspace(0, 1, 101))) > 0)  # strictly increasing: ranking kept


def test_isotonic_matches_sklearn():
    y, p = _scores(6, n=600)
    p = np.round(p, 2)  # ties
    cal = IsotonicCalibrator().fit(p, y)
    ref = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p, y)
    grid = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(cal.predict(grid), ref.predict(grid), atol=1e-12)
    np.testing.assert_allclose(cal.predict(p), ref.predict(p), atol=1e-12)
    assert np.all(np.diff(cal.predict(grid)) >= 0)


@pytest.mark.parametrize("cls", [PlattCalibrator, IsotonicCalibrator])
def test_round_trip_through_json(cls):
    y, p = _scores(7)
    cal = cls().fit(p, y)
    d = json.loads(json.dumps(cal.to_dict()))
    back = calibrator_from_dict(d)
    assert type(back) is cls
    q = np.linspace(0, 1, 51)
    np.testing.assert_allclose(back.predict(q), cal.predict(q))


@pytest.mark.parametrize("bad", [
    {"method": "magic"}, {"method": "platt", "a": "x", "b": 1}, {"method": "platt", "a": float("inf"), "b": 1},
    {"method": "isotonic", "x": [0.2, 0.1], "y": [0, 1]}, {"method": "isotonic", "x": [0.1], "y": [2.0]},
    {"method": "isotonic", "x": [], "y": []}, "platt",
])
def test_from_dict_rejects_malformed(bad):
    with pytest.raises(ValueError):
        calibrator_from_dict(bad)


def test_inputs_validated():
    with pytest.raises(ValueError, match="0"):
        brier_score([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match=r"both classes|no GS"):
        PlattCalibrator().fit([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError, match="3 values"):
        reliability_table([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        IsotonicCalibrator().predict([0.5])
    with pytest.raises(ValueError, match="strictly between"):
        adjust_for_prevalence([0.5], 0.5, 0.0)


def test_prevalence_adjustment_is_bayes_rule():
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    same = adjust_for_prevalence(p, 0.3, 0.3)
    np.testing.assert_allclose(same, p, atol=1e-12)
    out = adjust_for_prevalence(p, 0.5, 0.01)
    # at training prevalence 0.5, P = LR / (1 + LR); at prior 0.01 the posterior is 0.01·LR / (0.01·LR + 0.99)
    lr = 0.9 / 0.1
    assert out[3] == pytest.approx(0.01 * lr / (0.01 * lr + 0.99))
    assert out[2] == pytest.approx(0.01)
    assert out[0] == 0.0 and out[4] == 1.0
    assert np.all(np.diff(out) >= 0)


def test_choose_calibrator_prefers_platt_on_a_logistic_miscalibration_and_reports_measurement():
    y, p = _scores(8, n=300)
    cal, m = choose_calibrator(p, y)
    assert m["chosen"] == cal.method
    assert set(m["cv"]) == {"platt", "isotonic"}
    assert m["cv"][m["chosen"]]["log_loss"] <= min(v["log_loss"] for v in m["cv"].values())
    # the misfit is exactly logistic: two parameters beat the step map, and both beat the raw scores
    assert m["chosen"] == "platt"
    assert m["cv"]["platt"]["log_loss"] < m["raw"]["log_loss"]


def test_choose_calibrator_prefers_isotonic_on_a_non_logistic_shape():
    rng = np.random.default_rng(9)
    p = rng.random(3000)
    true = np.where(p < 0.5, 0.05, 0.9)  # a step: no logistic curve on logit(p) fits it
    y = (rng.random(3000) < true).astype(int)
    cal, m = choose_calibrator(p, y)
    assert m["chosen"] == "isotonic" and cal.method == "isotonic"


def test_reliability_figure_draws_each_curve():
    from gsscreen.report.calibration_figure import reliability_figure

    y, p = _scores(10)
    fig = reliability_figure({"before": (y, p), "after": (y, PlattCalibrator().fit(p, y).predict(p))})
    top = fig.axes[0]
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert any(lab.startswith("before (Brier") for lab in labels) and any(lab.startswith("after") for lab in labels)
    with pytest.raises(ValueError):
        reliability_figure({})
