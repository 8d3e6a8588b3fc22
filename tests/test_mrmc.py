"""Obuchowski–Rockette MRMC analysis against the published analysis of the Van Dyke data.

Reference values: Smith BJ, Hillis SL, "MRMCaov" (R package; Smith & Hillis, Proc SPIE 11316, 2020, and the
package's manuscript), analysis of the Van Dyke et al. (1993) data with the empirical AUC: random readers and cases
with DeLong covariances (F = 4.484854, df2 = 15.06611, p = 0.05123303), with jackknife covariances (the same
covariances as its fixed-reader analysis: Error 0.0008022883, Cov1 0.0003466137, Cov2 0.0003440748, Cov3
0.0002390284; fixed readers X2 = 5.475953, p = 0.01927984), and the per-reader AUCs. The jackknife RRRC result
(F = 4.456, ddf = 15.26, p = 0.0517) is the classic DBM/OR result for these data (Hillis et al. 2008).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from gsscreen.evaluation.mrmc import auc_covariance, or_analysis, readers_vs_model

DATA = Path(__file__).parent / "data" / "vandyke.txt"


def vandyke() -> tuple[np.ndarray, np.ndarray]:
    """Ratings (2 modalities, 5 readers, 114 cases) and truth (69 negatives, then 45 positives)."""
    lines = [ln.split() for ln in DATA.read_text().splitlines() if ln.startswith("R")]
    ratings = np.zeros((2, 5, 114))
    for r in range(5):
        tokens = lines[2 * r][2:] + lines[2 * r + 1][2:]
        for t in range(2):
            ratings[t, r] = [int(tok[t]) for tok in tokens]
    return ratings, np.r_[np.zeros(69, int), np.ones(45, int)]


def test_reader_aucs_match_the_published_values() -> None:
    ratings, y = vandyke()
    res = or_analysis(ratings, y)
    published = [[0.9196457, 0.8587762, 0.9038647, 0.9731079, 0.8297907],
                 [0.9478261, 0.9053140, 0.9217391, 0.9993559, 0.9299517]]
    np.testing.assert_allclose(res.auc, published, atol=5e-8)
    assert res.auc[1, 2] == pytest.approx(roc_auc_score(y, ratings[1, 2]))
    np.testing.assert_allclose(res.means, [0.8970370, 0.9408374], atol=5e-8)


def test_delong_rrrc_matches_the_published_analysis() -> None:
    res = or_analysis(*vandyke(), cov_method="delong")
    assert res.ms_t == pytest.approx(0.004796171, rel=1e-6)
    assert res.ms_tr == pytest.approx(0.0005510306, rel=1e-6)
    assert res.error_var == pytest.approx(0.0007921325, rel=1e-6)
    assert res.cov1 == pytest.approx(0.0003420090, rel=1e-6)
    assert res.cov2 == pytest.approx(0.0003395265, rel=1e-6)
    assert res.cov3 == pytest.approx(0.0002358497, rel=1e-6)
    assert res.var_reader == pytest.approx(0.0015364254, rel=1e-6)
    assert res.var_treatment_reader == pytest.approx(0.0002045840, rel=1e-5)
    assert res.f_stat == pytest.approx(4.484854, rel=1e-6)
    assert res.df2 == pytest.approx(15.06611, rel=1e-6)
    assert res.p_value == pytest.approx(0.05123303, rel=1e-6)
    d = res.differences[0]
    assert (d.estimate, d.se) == (pytest.approx(-0.04380032, rel=1e-6), pytest.approx(0.0206825, rel=1e-5))
    assert (d.lo, d.hi) == (pytest.approx(-0.0878671960, rel=1e-6), pytest.approx(0.0002665519, rel=1e-5))
    c0, c1 = res.modality_cis
    assert (c0.se, c0.df, c0.lo, c0.hi) == (pytest.approx(0.03307642, rel=1e-6), pytest.approx(12.59597, rel=1e-6),
                                           pytest.approx(0.8253461, rel=1e-6), pytest.approx(0.9687280, rel=1e-6))
    assert (c1.se, c1.df) == (pytest.approx(0.02150464, rel=1e-6), pytest.approx(12.56530, rel=1e-6))


def test_jackknife_matches_the_published_covariances_and_tests() -> None:
    res = or_analysis(*vandyke(), cov_method="jackknife")
    assert res.error_var == pytest.approx(0.0008022883, rel=1e-6)
    assert res.cov1 == pytest.approx(0.0003466137, rel=1e-6)
    assert res.cov2 == pytest.approx(0.0003440748, rel=1e-6)
    assert res.cov3 == pytest.approx(0.0002390284, rel=1e-6)
    assert res.fixed_readers_chi2 == pytest.approx(5.475953, rel=1e-6)
    assert res.fixed_readers_p == pytest.approx(0.01927984, rel=1e-6)
    assert (res.f_stat, res.df2, res.p_value) == (pytest.approx(4.4563, abs=5e-4), pytest.approx(15.26, abs=5e-3),
                                             pytest.approx(0.0517, abs=5e-4))


def test_jackknife_covariance_equals_brute_force_leave_one_out() -> None:
    """The closed-form leave-one-out AUCs against recomputing every AUC without each case."""
    ratings, y = vandyke()
    sub = ratings[:, :3, ::3]  # 2 x 3 x 38, keeps it quick
    ys = y[::3]
    _auc, cov = auc_covariance(sub, ys, "jackknife")
    k = ys.size
    loo = np.array([[roc_auc_score(np.delete(ys, c), np.delete(sub[t, r], c)) for c in range(k)]
                    for t in range(2) for r in range(3)])
    dev = loo - loo.mean(axis=1, keepdims=True)
    brute = (k - 1) / k * dev @ dev.T
    np.testing.assert_allclose(cov, brute, rtol=1e-10, atol=1e-14)


def test_readers_vs_model_treats_the_model_as_one_fixed_reading() -> None:
    ratings, y = vandyke()
    model = ratings[1, 3]  # the best reader's modality-2 ratings play "the model"
    res = readers_vs_model(ratings[0], model, y)
    assert res.auc.shape == (2, 5)
    np.testing.assert_allclose(res.auc[1], roc_auc_score(y, model))
    assert res.differences[0].estimate == pytest.approx(res.means[0] - roc_auc_score(y, model))
    assert 0 < res.p_value < 1 and res.differences[0].lo < res.differences[0].estimate < res.differences[0].hi


def test_bad_input_is_refused() -> None:
    ratings, y = vandyke()
    with pytest.raises(ValueError, match="2 modalities and 2 readers"):
        or_analysis(ratings[:, :1], y)
    with pytest.raises(ValueError, match="one label per case"):
        or_analysis(ratings, y[:-1])
    bad = ratings.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="fully crossed"):
        or_analysis(bad, y)
    with pytest.raises(ValueError, match="cov method"):
        or_analysis(ratings, y, cov_method="bootstrap")  # type: ignore[arg-type]
