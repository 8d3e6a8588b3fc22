from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gsscreen.evaluation.demographics import chi2_test, demographics_table, t_test


def _table(gs_ages, ctl_ages, gs_sex, ctl_sex) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["GS"] * len(gs_ages) + ["control"] * len(ctl_ages),
            "age_months": list(gs_ages) + list(ctl_ages),
            "sex": list(gs_sex) + list(ctl_sex),
        }
    )


def test_hand_computed_student_t():
    # GS ages 10, 12, 14 (mean 12, s² = (4+0+4)/2 = 4); control 20, 22, 24 (mean 22, s² = 4).
    # Pooled s² = (2·4 + 2·4)/4 = 4; SE = sqrt(4·(1/3 + 1/3)) = sqrt(8/3) = 1.632993;
    # t = (12 - 22)/1.632993 = -6.123724; df = 4.
    r = t_test(np.array([10.0, 12, 14]), np.array([20.0, 22, 24]))
    assert r.statistic == pytest.approx(-6.123724, abs=1e-6)
    assert r.df == 4
    assert r.extra["mean_difference"] == -10


def test_hand_computed_welch_t():
    # GS 10, 12, 14 (s² = 4, s²/n = 4/3); control 20, 30, 40 (mean 30, s² = 100, s²/n = 100/3).
    # SE = sqrt(104/3) = 5.887841; t = -18/5.887841 = -3.057147;
    # df = (104/3)² / ((4/3)²/2 + (100/3)²/2) = 1201.778 / 556.4444 = 2.159744.
    r = t_test(np.array([10.0, 12, 14]), np.array([20.0, 30, 40]), welch=True)
    assert r.statistic == pytest.approx(-3.057147, abs=1e-6)
    assert r.df == pytest.approx(2.159744, abs=1e-6)


def test_hand_computed_chi_squared():
    # GS: 30 boys, 20 girls; control: 20 boys, 30 girls. Every expected count is 50·50/100 = 25.
    # Pearson: chi² = 4 · (5²/25) = 4, df = 1; p = P(|Z| > 2) = erfc(2/√2) = 0.0455003.
    # Yates: 4 · (4.5²/25) = 3.24.
    r = chi2_test(np.array([[30, 20], [20, 30]]))
    assert r.statistic == pytest.approx(4.0) and r.df == 1
    assert r.p_value == pytest.approx(math.erfc(2 / math.sqrt(2)), rel=1e-9)
    assert chi2_test(np.array([[30, 20], [20, 30]]), yates=True).statistic == pytest.approx(3.24)
    with pytest.raises(ValueError, match="all zero"):
        chi2_test(np.array([[3, 0], [4, 0]]))


@pytest.mark.parametrize("welch", [False, True])
@pytest.mark.parametrize("yates", [False, True])
def test_table_matches_scipy(welch, yates):
    rng = np.random.default_rng(3)
    gs_ages = rng.uniform(6, 150, 37).round(1)  # ages must be >= 0: negative ones are excluded
    ctl_ages = rng.uniform(12, 170, 45).round(1)
    gs_sex = rng.choice(["M", "F"], 37, p=[0.6, 0.4])
    ctl_sex = rng.choice(["male", "female"], 45)
    d = demographics_table(_table(gs_ages, ctl_ages, gs_sex, ctl_sex), welch=welch, yates=yates)
    ref_t = stats.ttest_ind(gs_ages, ctl_ages, equal_var=not welch)
    assert d.age_test.statistic == pytest.approx(ref_t.statistic, rel=1e-10)
    assert d.age_test.p_value == pytest.approx(ref_t.pvalue, rel=1e-8)
    assert d.age_test.test == ("Welch's t-test" if welch else "Student's t-test")
    obs = np.array([[np.sum(gs_sex == "M"), np.sum(gs_sex == "F")],
                    [np.sum(ctl_sex == "male"), np.sum(ctl_sex == "female")]])
    chi2, p, dof, expected = stats.chi2_contingency(obs, correction=yates)
    assert d.sex_test.statistic == pytest.approx(chi2, rel=1e-10)
    assert d.sex_test.p_value == pytest.approx(p, rel=1e-8)
    assert d.sex_test.df == dof
    np.testing.assert_allclose(d.sex_test.extra["expected"], expected)
    g = d.groups
    assert (g["GS"].n, g["control"].n, g["all"].n) == (37, 45, 82)
    assert g["GS"].age_mean_months == pytest.approx(gs_ages.mean())
    assert g["control"].age_sd_months == pytest.approx(ctl_ages.std(ddof=1))
    assert g["all"].age_mean_years == pytest.approx(np.concatenate([gs_ages, ctl_ages]).mean() / 12)
    assert g["GS"].male + g["GS"].female == 37 and g["all"].sex_unknown == 0
    assert d.unit == "photo"
    assert not any("missing" in n or "unknown" in n for n in d.notes)


def test_missing_values_are_excluded_and_noted():
    t = _table([10, 12, None, 14], [20, "n/a", 22, 24], ["M", "F", "", "M"], ["F", "F", "?", "M"])
    d = demographics_table(t)
    assert d.groups["GS"].n == 4 and d.groups["GS"].n_age == 3
    assert d.age_test.n == 6
    assert d.age_test.statistic == pytest.approx(-6.123724, abs=1e-6)  # the hand-computed example above
    assert d.groups["all"].sex_unknown == 2
    assert d.sex_test.n == 6
    assert any("age missing for 2 of 8 (1 GS, 1 control)" in n for n in d.notes)
    assert any("sex unknown for 2 of 8 (1 GS, 1 control)" in n for n in d.notes)
    assert any("Fisher" in n for n in d.notes) and 0 < d.sex_test.extra["fisher_p"] <= 1


def test_absent_columns_are_noted():
    d = demographics_table(pd.DataFrame({"label": ["GS", "control", "GS", "healthy", "oops"]}))
    assert d.age_test is None and d.sex_test is None
    assert d.groups["GS"].n == 2 and d.groups["control"].n == 2  # "healthy" is a control; "oops" is left out
    assert d.groups["all"].age_mean_months is None
    assert any("no age_months column" in n for n in d.notes)
    assert any("no sex column" in n for n in d.notes)
    assert any("1 row(s) without a valid GS/control label" in n for n in d.notes)
    frame = d.to_frame()
    assert frame.loc["Age, months, mean ± SD", "GS"] == "–"
    json.dumps(d.to_dict())
    with pytest.raises(ValueError, match="label"):
        demographics_table(pd.DataFrame({"age_months": [1]}))


def test_repeated_subjects_count_once():
    # s1 has three photos (ages 10, 12, 14 -> mean 12); counting photos would give GS n = 4.
    t = pd.DataFrame(
        {
            "label": ["GS", "GS", "GS", "GS", "control", "control", "control"],
            "subject_id": ["s1", "s1", "s1", "s2", "c1", "c2", "c3"],
            "age_months": [10, 12, 14, 20, 30, 31, 35],
            "sex": ["M", "M", "M", "F", "F", "M", "F"],
        }
    )
    d = demographics_table(t)
    assert d.unit == "subject" and d.groups["GS"].n == 2 and d.groups["all"].n == 5
    assert d.groups["GS"].age_mean_months == pytest.approx(16.0)  # (12 + 20) / 2
    ref = stats.ttest_ind([12, 20], [30, 31, 35])
    assert d.age_test.statistic == pytest.approx(ref.statistic)
    assert demographics_table(t, unit="photo").groups["GS"].n == 4


def test_to_frame_and_to_dict():
    d = demographics_table(_table([10, 12, 14], [20, 22, 24], ["M", "M", "F"], ["F", "F", "M"]))
    f = d.to_frame()
    assert list(f.columns) == ["GS", "control", "all", "test", "p"]
    assert f.loc["N (photos)", "all"] == "6"
    assert f.loc["Age, months, mean ± SD", "GS"] == "12.0 ± 2.0"
    assert f.loc["Age, years, mean ± SD", "control"] == "1.83 ± 0.17"
    assert f.loc["Age, months, mean ± SD", "p"] == f"{stats.ttest_ind([10, 12, 14], [20, 22, 24]).pvalue:.3f}"
    assert f.loc["Sex, male, n (%)", "GS"] == "2 (66.7%)"
    out = json.loads(json.dumps(d.to_dict()))
    assert out["groups"]["GS"]["age_mean_years"] == pytest.approx(1.0)
    assert out["age_test"]["df"] == 4 and out["sex_test"]["extra"]["observed"] == [[2, 1], [1, 2]]
