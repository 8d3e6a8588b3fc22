"""Tests for gsscreen.evaluation.roc: against R's pROC (tests/data/proc_reference.json), sklearn and brute force.

The JSON is produced by scripts/make_proc_reference.py (R + pROC 1.18); these tests need no R.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score, roc_curve

from gsscreen.evaluation.roc import (
    RocBand,
    auc_ci_bootstrap,
    auc_ci_delong,
    delong_covariance,
    delong_test,
    pooled_roc_summary,
    resampled_aucs,
    resampled_sensitivities,
    roc_ci_band,
    roc_points,
    sensitivity_at_specificity,
)

REF = json.loads((Path(__file__).parent / "data" / "proc_reference.json").read_text())
NAMES = sorted(REF["datasets"])


def _ds(name):
    d = REF["datasets"][name]
    return np.array(d["y"]), np.array(d["p1"]), np.array(d["p2"]), d["proc"]


def _idx(block):
    raw = np.frombuffer(base64.b64decode(block["uint8_b64"]), dtype=np.uint8)
    return raw.reshape(block["shape"]).astype(np.int64)


def _synthetic(seed, n=400, shift=1.0, decimals=None, prevalence=0.5):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    y[:2] = [0, 1]
    p = rng.normal(size=n) + shift * y
    if decimals is not None:
        p = np.round(p, decimals)
    return y, p


# --------------------------------------------------------------------------------------------------- vs pROC


def test_reference_covers_ties_and_imbalance():
    for name in NAMES:
        y, _p1, _, r = _ds(name)
        assert 40 <= y.size <= 200
        assert r["n_cases"] == y.sum() and r["n_controls"] == y.size - y.sum()
    assert any(np.unique(_ds(n)[1]).size < _ds(n)[0].size for n in NAMES)  # tied scores
    assert any(min(_ds(n)[0].mean(), 1 - _ds(n)[0].mean()) <= 0.25 for n in NAMES)  # unbalanced


@pytest.mark.parametrize("name", NAMES)
def test_auc_and_delong_match_proc(name):
    y, p1, p2, r = _ds(name)
    for p, k in ((p1, "1"), (p2, "2")):
        ci = auc_ci_delong(y, p)
        lo, auc, hi = r[f"ci_delong{k}"]
        assert ci.auc == pytest.approx(r[f"auc{k}"], abs=1e-12)
        assert ci.auc == pytest.approx(auc, abs=1e-12)
        assert ci.se**2 == pytest.approx(r[f"var_delong{k}"], abs=1e-12)
        assert (ci.lo, ci.hi) == pytest.approx((lo, hi), abs=1e-9)
    ci90 = auc_ci_delong(y, p1, conf=0.9)
    assert (ci90.lo, ci90.hi) == pytest.approx((r["ci_delong1_90"][0], r["ci_delong1_90"][2]), abs=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_delong_paired_test_matches_proc_roc_test(name):
    y, p1, p2, r = _ds(name)
    t = delong_test(y, p1, p2)
    assert t.z == pytest.approx(r["test_z"], abs=1e-9)
    assert t.p_value == pytest.approx(r["test_p"], abs=1e-9)
    assert (t.auc1, t.auc2) == pytest.approx(tuple(r["test_estimate"]), abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_sensitivity_at_specificity_matches_proc_coords(name):
    y, p1, p2, r = _ds(name)
    got = sensitivity_at_specificity(y, p1, r["coord_specs"])
    np.testing.assert_allclose(got, r["coord_sens"], rtol=0, atol=1e-12)
    grid = np.array(r["grid"])
    np.testing.assert_array_equal(grid, np.linspace(0, 1, 101))  # R's seq(0, 1, 0.01) == numpy's grid
    np.testing.assert_allclose(sensitivity_at_specificity(y, p1, grid), r["grid_sens"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(sensitivity_at_specificity(y, p2, grid), r["grid_sens2"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_exact_specificities_take_the_top_of_vertical_steps(name):
    """At a specificity the curve actually reaches, pROC (and we) report the highest sensitivity there."""
    y, p1, _, r = _ds(name)
    sp = np.array(r["all_specificity"])
    se = np.array(r["all_sensitivity"])
    targets = np.unique(sp)
    expected = [se[sp == v].max() for v in targets]
    np.testing.assert_allclose(sensitivity_at_specificity(y, p1, targets), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_replayed_proc_bootstrap_gives_proc_ci_se_exactly(name):
    """Feed pROC's own resamples (drawn by R's RNG) through our band code: quantiles must be identical."""
    y, p1, _, r = _ds(name)
    i0, i1 = _idx(r["boot_idx0"]), _idx(r["boot_idx1"])
    sens = resampled_sensitivities(y, p1, i0, i1, r["grid"])
    np.testing.assert_allclose(sens[0], r["boot_sens_first"], rtol=0, atol=1e-12)
    q = np.quantile(sens, [0.025, 0.5, 0.975], axis=0)  # numpy "linear" == R quantile type 7
    np.testing.assert_allclose(q[0], r["cise_lo"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(q[1], r["cise_median"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(q[2], r["cise_hi"], rtol=0, atol=1e-12)
    aucs = resampled_aucs(y, p1, i0, i1)
    np.testing.assert_allclose(aucs, r["boot_aucs"], rtol=0, atol=1e-12)
    lo, _, hi = r["ciauc_boot"]
    assert np.quantile(aucs, [0.025, 0.975]) == pytest.approx([lo, hi], abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_own_bootstrap_band_agrees_with_proc_within_monte_carlo_error(name):
    """Our RNG differs from R's: compare 2,000-replicate bands. Quantiles of a sensitivity move in steps of
    1/n_cases, and a 2.5 % quantile where the curve is steep (specificity near 1) has a Monte-Carlo SD of a
    few hundredths: allow one step plus 0.06 at any point, and little on average (observed: <= 0.008)."""
    y, p1, _, r = _ds(name)
    band = roc_ci_band(y, p1, n_boot=2000, specificities=r["grid"], seed=123)
    step = 1.0 / r["n_cases"]
    for ours, key in ((band.lo, "cise2000_lo"), (band.median, "cise2000_median"), (band.hi, "cise2000_hi")):
        diff = np.abs(ours - np.array(r[key]))
        assert diff.max() <= step + 0.06, (key, diff.max())
        assert diff.mean() <= 0.012, (key, diff.mean())


# --------------------------------------------------------------------------------------------------- vs sklearn


@pytest.mark.parametrize(("seed", "decimals"), [(0, None), (1, 1), (2, 2)])
def test_roc_points_match_sklearn(seed, decimals):
    y, p = _synthetic(seed, n=150, decimals=decimals)
    fpr, tpr, thr = roc_points(y, p)
    f2, t2, th2 = roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    assert np.isinf(thr[0]) and np.isinf(th2[0])
    np.testing.assert_allclose(thr[1:], th2[1:])
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(y, p))


# --------------------------------------------------------------------------------------------------- DeLong


def _brute_delong(y, scores):
    """O(n²) structural components straight from DeLong et al. (1988)."""
    cases, controls = y == 1, y == 0
    v10, v01 = [], []
    for s in scores:
        d = s[cases][:, None] - s[controls][None, :]
        psi = (d > 0) + 0.5 * (d == 0)
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    v10, v01 = np.array(v10), np.array(v01)
    s10 = np.cov(v10, ddof=1)
    s01 = np.cov(v01, ddof=1)
    return v10.mean(axis=1), s10 / cases.sum() + s01 / controls.sum()


@pytest.mark.parametrize(("seed", "decimals"), [(3, None), (4, 1), (5, 0)])
def test_delong_covariance_matches_brute_force(seed, decimals):
    y, p = _synthetic(seed, n=120, decimals=decimals, prevalence=0.3)
    rng = np.random.default_rng(seed)
    q = np.round(p + rng.normal(size=p.size), 1)
    aucs, cov = delong_covariance(y, np.stack([p, q]))
    a2, c2 = _brute_delong(y, [p, q])
    np.testing.assert_allclose(aucs, a2, atol=1e-12)
    np.testing.assert_allclose(cov, c2, atol=1e-14)


def test_delong_classic_small_example():
    """Hand-checkable: 3 cases, 3 controls. Placements V10 = (1, 1, 1/3), V01 = (1, 2/3, 2/3)."""
    y = np.array([1, 1, 1, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.3, 0.1, 0.4, 0.5])
    ci = auc_ci_delong(y, p)
    v10, v01 = np.array([1, 1, 1 / 3]), np.array([1, 2 / 3, 2 / 3])
    var = v10.var(ddof=1) / 3 + v01.var(ddof=1) / 3
    assert ci.auc == pytest.approx(7 / 9)
    assert ci.se == pytest.approx(math.sqrt(var))
    assert ci.lo == pytest.approx(7 / 9 - norm.ppf(0.975) * math.sqrt(var))
    assert ci.hi == 1.0  # clipped, like pROC


def test_delong_test_properties():
    y, p = _synthetic(8, n=600)
    rng = np.random.default_rng(8)
    q = p + 2.0 * rng.normal(size=p.size)
    t = delong_test(y, p, q)
    back = delong_test(y, q, p)
    assert back.z == pytest.approx(-t.z) and back.p_value == pytest.approx(t.p_value)
    assert t.z > 0 and t.p_value < 0.05  # adding noise lowers the AUC
    same = delong_test(y, p, p)
    assert (same.z, same.p_value) == (0.0, 1.0)
    mono = delong_test(y, p, 3 * p + 1)  # a monotone transform has the same ROC
    assert mono.z == 0.0 and mono.p_value == 1.0


def test_perfect_separation_gives_degenerate_ci():
    y = np.array([0, 0, 0, 1, 1, 1])
    ci = auc_ci_delong(y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]))
    assert ci == (1.0, 1.0, 1.0, 0.0)


def test_delong_needs_two_of_each_class():
    with pytest.raises(ValueError, match="at least 2 GS"):
        auc_ci_delong(np.array([0, 0, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="no GS"):
        delong_test(np.array([0, 0]), np.array([0.1, 0.2]), np.array([0.3, 0.4]))


# --------------------------------------------------------------------------------------------------- bootstrap


def test_band_shape_order_and_monotonicity():
    y, p = _synthetic(9, n=300, decimals=1)
    band = roc_ci_band(y, p, n_boot=200, seed=1)
    assert isinstance(band, RocBand) and band.lo.shape == (101,) and band.n_boot_used == 200
    assert np.all(band.lo <= band.median + 1e-12) and np.all(band.median <= band.hi + 1e-12)
    for arr in (band.lo, band.median, band.hi, band.sensitivity):
        assert np.all(np.diff(arr) <= 1e-12), "sensitivity must not increase with specificity"
    assert band.lo[0] == band.hi[0] == 1.0  # specificity 0: everything is called GS
    assert np.all((band.lo >= 0) & (band.hi <= 1))
    assert np.all(band.lo[:-1] <= band.sensitivity[:-1] + 0.1)


def test_band_is_reproducible_and_seed_dependent():
    y, p = _synthetic(10, n=200)
    a = roc_ci_band(y, p, n_boot=100, seed=5)
    b = roc_ci_band(y, p, n_boot=100, seed=5)
    c = roc_ci_band(y, p, n_boot=100, seed=6)
    np.testing.assert_array_equal(a.lo, b.lo)
    assert not np.array_equal(a.lo, c.lo)


def test_unstratified_band_runs_and_brackets_the_curve():
    y, p = _synthetic(11, n=300)
    band = roc_ci_band(y, p, n_boot=300, seed=0, stratified=False, specificities=[0.2, 0.5, 0.8])
    assert band.n_boot_used == 300 and not band.stratified
    assert np.all(band.lo <= band.sensitivity) and np.all(band.sensitivity <= band.hi)


def test_band_coverage_of_the_true_binormal_curve():
    """Pointwise 95 % bands over repeated samples should cover the true ROC most of the time."""
    shift = 1.0
    specs = np.array([0.3, 0.5, 0.7, 0.9])
    truth = norm.sf(norm.ppf(specs) - shift)  # binormal ROC: se(sp) = 1 - Φ(Φ⁻¹(sp) - d)
    hits = []
    for rep in range(40):
        y, p = _synthetic(1000 + rep, n=400, shift=shift)
        band = roc_ci_band(y, p, n_boot=200, specificities=specs, seed=rep)
        hits.append((band.lo <= truth) & (truth <= band.hi))
    coverage = np.mean(hits, axis=0)
    assert np.all(coverage >= 0.8), coverage
    assert 0.85 <= coverage.mean() <= 1.0, coverage


def test_large_sample_band_narrow_and_centered():
    y, p = _synthetic(12, n=2400, decimals=3)
    band = roc_ci_band(y, p)  # the paper's setting: 200 replicates, 101 specificities
    inner = slice(5, 96)
    assert np.all(band.hi[inner] - band.lo[inner] < 0.12)
    assert np.max(np.abs(band.median - band.sensitivity)) < 0.03


def test_auc_bootstrap_ci_agrees_with_delong_on_large_sample():
    y, p = _synthetic(13, n=1000)
    b = auc_ci_bootstrap(y, p, n_boot=2000, seed=0)
    d = auc_ci_delong(y, p)
    assert b.auc == pytest.approx(d.auc)
    assert b.lo < b.auc < b.hi and b.n_boot == 2000
    assert (b.lo, b.hi) == pytest.approx((d.lo, d.hi), abs=0.01)
    nb = auc_ci_bootstrap(y, p, n_boot=500, seed=0, stratified=False)
    assert nb.lo < nb.auc < nb.hi


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_boot": 1}, "n_boot"),
        ({"conf": 1.2}, "conf"),
        ({"specificities": [0.5, 1.5]}, "within"),
    ],
)
def test_band_argument_errors(kwargs, match):
    y, p = _synthetic(14, n=50)
    with pytest.raises(ValueError, match=match):
        roc_ci_band(y, p, **kwargs)


def test_band_needs_both_classes():
    with pytest.raises(ValueError, match="no control"):
        roc_ci_band(np.ones(5, dtype=int), np.arange(5.0))


def test_resample_index_validation():
    y, p = _synthetic(15, n=20)
    n0, n1 = int((y == 0).sum()), int(y.sum())
    with pytest.raises(ValueError, match="outside"):
        resampled_aucs(y, p, np.full((2, n0), n0), np.zeros((2, n1), dtype=int))
    with pytest.raises(ValueError, match="replicates"):
        resampled_aucs(y, p, np.zeros((2, n0), dtype=int), np.zeros((3, n1), dtype=int))


def test_pooled_summary_is_json_and_consistent():
    y, p = _synthetic(16, n=300, decimals=2)
    s = pooled_roc_summary(y, p, n_boot=100, seed=0, n_boot_auc=300)
    text = json.dumps(s, allow_nan=False)
    back = json.loads(text)
    assert back["n"] == 300 and back["n_gs"] + back["n_control"] == 300
    assert back["auc"] == pytest.approx(roc_auc_score(y, p))
    assert back["auc_ci_delong"]["lo"] < back["auc"] < back["auc_ci_delong"]["hi"]
    assert len(back["band"]["lo"]) == 101 and back["band"]["n_boot"] == 100
    assert len(back["roc"]["fpr"]) == np.unique(p).size + 1
