"""Tests for gsscreen.evaluation.readers: reader metrics, band position, McNemar and reader DeLong."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, chi2
from sklearn import metrics as skm

from gsscreen.evaluation.readers import (
    EXACT_BELOW,
    compare_readers_to_model,
    mcnemar_test,
    reader_delong,
    reader_metrics,
    reader_point_vs_band,
    reader_score,
    truth_series,
)
from gsscreen.evaluation.roc import RocBand, delong_test, roc_ci_band


def _study(seed: int = 0, n_photos: int = 60):
    """Truth for ``n_photos`` photos, three readers of different skill with confidences, and model P(GS)."""
    rng = np.random.default_rng(seed)
    photos = [f"img_{i:03d}.jpg" for i in range(n_photos)]
    y = (rng.random(n_photos) < 0.5).astype(int)
    y[:2] = [0, 1]
    truth = {ph: ("GS" if v else "control") for ph, v in zip(photos, y, strict=True)}
    rows = []
    for reader, role, skill in (("r1", "pediatrician", 0.6), ("r2", "pediatrician", 1.2), ("r3", "geneticist", 2.0)):
        z = rng.normal(size=n_photos) + skill * (2 * y - 1)
        for ph, zi in zip(photos, z, strict=True):
            answer = "GS" if zi > 0 else "control"
            conf = int(np.clip(1 + abs(zi) * 1.5, 1, 5))
            rows.append({"reader": reader, "role": role, "photo": ph, "answer": answer, "confidence": conf})
    answers = pd.DataFrame(rows)
    p_model = 1 / (1 + np.exp(-(rng.normal(size=n_photos) + 1.5 * (2 * y - 1))))
    return answers, truth, y, dict(zip(photos, p_model, strict=True))


def test_reader_metrics_match_sklearn():
    answers, truth, _y, _ = _study()
    table = reader_metrics(answers, truth)
    assert list(table["reader"]) == ["r1", "r2", "r3"]
    assert list(table["role"]) == ["pediatrician", "pediatrician", "geneticist"]
    for _, row in table.iterrows():
        g = answers[answers["reader"] == row["reader"]]
        yt = np.array([1 if truth[p] == "GS" else 0 for p in g["photo"]])
        call = (g["answer"] == "GS").to_numpy().astype(int)
        assert row["accuracy"] == pytest.approx(skm.accuracy_score(yt, call))
        assert row["sensitivity"] == pytest.approx(skm.recall_score(yt, call))
        assert row["specificity"] == pytest.approx(skm.recall_score(1 - yt, 1 - call))
        assert row["precision"] == pytest.approx(skm.precision_score(yt, call))
        assert row["f1"] == pytest.approx(skm.f1_score(yt, call))
        assert row["n"] == len(g) and row["n_missing"] == 0
    # the more skilled reader does better
    assert table.set_index("reader").loc["r3", "accuracy"] > table.set_index("reader").loc["r1", "accuracy"]


def test_reader_metrics_counts_missing_and_accepts_truth_formats():
    answers, truth, _, _ = _study(n_photos=20)
    partial = answers.drop(index=answers[(answers["reader"] == "r2")].index[:5])
    ser = pd.Series(truth)
    frame = pd.DataFrame({"photo": list(truth), "label": list(truth.values())})
    numeric = {k: int(v == "GS") for k, v in truth.items()}
    tables = [reader_metrics(partial, t) for t in (truth, ser, frame, numeric)]
    for t in tables[1:]:
        pd.testing.assert_frame_equal(t, tables[0])
    r2 = tables[0].set_index("reader").loc["r2"]
    assert r2["n"] == 15 and r2["n_missing"] == 5
    answers_lower = answers.assign(answer=answers["answer"].str.lower().str.pad(9))
    pd.testing.assert_frame_equal(reader_metrics(answers_lower, truth), reader_metrics(answers, truth))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a: a.drop(columns=["role"]), "lacks column"),
        (lambda a: a.assign(answer=["maybe", *list(a["answer"][1:])]), "expected 'GS' or 'control'"),
        (lambda a: pd.concat([a, a.iloc[[0]]]), "more than once"),
        (lambda a: a.assign(photo=["nope.jpg", *list(a["photo"][1:])]), "no true label"),
        (lambda a: a.assign(confidence=[7, *list(a["confidence"][1:])]), "integer 1–5"),
        (lambda a: a.assign(role=["geneticist", *list(a["role"][1:])]), "more than one role"),
    ],
)
def test_reader_metrics_rejects_bad_tables(mutate, match):
    answers, truth, _, _ = _study(n_photos=10)
    with pytest.raises(ValueError, match=match):
        reader_metrics(mutate(answers), truth)


def test_truth_series_rejects_bad_labels():
    with pytest.raises(ValueError, match="photo 'b'"):
        truth_series({"a": "GS", "b": "syndrome"})


def _band() -> RocBand:
    sp = np.linspace(0, 1, 11)
    lo = np.clip(1.0 - sp**2 - 0.1, 0, 1)
    hi = np.clip(1.0 - sp**2 + 0.1, 0, 1)
    return RocBand(sp, 1.0 - sp**2, lo, 1.0 - sp**2, hi, 0.95, 200, 200, True, 0)


def test_reader_point_vs_band_positions_and_interpolation():
    band = _band()
    above = reader_point_vs_band(0.95, 0.5, band)
    assert above["position"] == "above" and not above["inside"]
    assert above["band_lo"] == pytest.approx(0.65) and above["band_hi"] == pytest.approx(0.85)
    inside = reader_point_vs_band(0.75, 0.5, band)
    assert inside["inside"] and inside["position"] == "inside"
    below = reader_point_vs_band(0.5, 0.5, band)
    assert below["position"] == "below"
    # between grid points the limits are interpolated linearly: at sp = 0.55 between 0.5 and 0.6
    mid = reader_point_vs_band(0.7, 0.55, band)
    assert mid["band_hi"] == pytest.approx((0.85 + (1 - 0.36 + 0.1)) / 2)
    # the JSON form of a band works the same
    assert reader_point_vs_band(0.95, 0.5, band.to_dict()) == above
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        reader_point_vs_band(1.2, 0.5, band)


def test_reader_point_vs_real_band():
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.5).astype(int)
    p = rng.normal(size=500) + 1.5 * y
    band = roc_ci_band(y, p, n_boot=200, seed=0)
    assert reader_point_vs_band(0.99, 0.95, band)["position"] == "above"
    assert reader_point_vs_band(0.2, 0.5, band)["position"] == "below"
    s = float(np.interp(0.7, band.specificities, band.median))
    assert reader_point_vs_band(s, 0.7, band)["inside"]


def _calls_with_discordance(b: int, c: int, concordant: int = 30):
    """Truth and two raters' calls with exactly ``b`` photos only A gets right and ``c`` only B gets right."""
    y = np.array([1, 0] * ((b + c + concordant) // 2 + 1))[: b + c + concordant]
    a = y.copy()
    bb = y.copy()
    bb[:b] = 1 - y[:b]  # A right, B wrong
    a[b : b + c] = 1 - y[b : b + c]  # A wrong, B right
    a[b + c : b + c + 3] = 1 - y[b + c : b + c + 3]  # both wrong: concordant, ignored by the test
    bb[b + c : b + c + 3] = 1 - y[b + c : b + c + 3]
    return y, a, bb


@pytest.mark.parametrize(("b", "c"), [(3, 9), (10, 2), (0, 6), (12, 12)])
def test_mcnemar_exact_matches_binomtest(b, c):
    y, a, bb = _calls_with_discordance(b, c)
    res = mcnemar_test(y, a, bb)
    assert (res.b, res.c) == (b, c) and res.exact
    assert res.p_value == pytest.approx(binomtest(b, b + c, 0.5).pvalue)
    assert res.statistic == min(b, c)


@pytest.mark.parametrize(("b", "c"), [(20, 8), (40, 10), (15, 15)])
def test_mcnemar_chi2_with_continuity_correction(b, c):
    y, a, bb = _calls_with_discordance(b, c)
    res = mcnemar_test(y, a, bb)
    stat = max(abs(b - c) - 1, 0) ** 2 / (b + c)
    assert not res.exact and res.statistic == pytest.approx(stat)
    assert res.p_value == pytest.approx(chi2.sf(stat, 1))


def test_mcnemar_rule_switch_and_overrides():
    assert EXACT_BELOW == 25
    assert mcnemar_test(*_calls_with_discordance(16, 8)).exact  # 24 discordant -> exact
    assert not mcnemar_test(*_calls_with_discordance(17, 8)).exact  # 25 -> chi-square
    forced = mcnemar_test(*_calls_with_discordance(17, 8), exact=True)
    assert forced.exact and forced.p_value == pytest.approx(binomtest(8, 25, 0.5).pvalue)
    assert not mcnemar_test(*_calls_with_discordance(3, 1), exact=False).exact
    y, a, _ = _calls_with_discordance(0, 0)
    none = mcnemar_test(y, a, a)
    assert none.p_value == 1.0 and (none.b, none.c) == (0, 0)
    with pytest.raises(ValueError, match="same length"):
        mcnemar_test(y, a, a[:-1])


def test_reader_score_mapping():
    s = reader_score(["GS", "GS", "control", "control", "gs"], [5, 1, 1, 5, 3])
    np.testing.assert_array_equal(s, [10, 6, 5, 1, 8])
    with pytest.raises(ValueError, match="1–5"):
        reader_score(["GS"], [0])
    with pytest.raises(ValueError, match="expected 'GS'"):
        reader_score(["unsure"], [3])


def test_reader_delong_is_delong_on_the_ten_level_score():
    answers, _truth, y, p_model = _study(seed=4, n_photos=120)
    g = answers[answers["reader"] == "r3"]
    p = np.array([p_model[ph] for ph in g["photo"]])
    res = reader_delong(y, g["confidence"].to_numpy(), p, g["answer"].to_numpy())
    ref = delong_test(y, reader_score(g["answer"].to_numpy(), g["confidence"].to_numpy()), p)
    assert res == ref
    assert 0.5 < res.auc1 <= 1.0 and 0.5 < res.auc2 <= 1.0
    # a reader who is always right and sure has AUC 1
    perfect = reader_delong(y, np.full(y.size, 5), p, np.where(y == 1, "GS", "control"))
    assert perfect.auc1 == 1.0 and perfect.z > 0


def test_compare_readers_to_model_table():
    answers, truth, y, p_model = _study(seed=5, n_photos=80)
    band = roc_ci_band(y, np.array(list(p_model.values())), n_boot=100, seed=0)
    table = compare_readers_to_model(answers, truth, p_model, threshold=0.5, band=band)
    assert list(table.columns[:2]) == ["reader", "role"]
    assert len(table) == 3
    model_acc = np.mean((np.array(list(p_model.values())) >= 0.5) == y)
    assert np.allclose(table["model_accuracy"], model_acc)
    assert set(table["band_position"]) <= {"above", "inside", "below"}
    assert table["delong_p"].between(0, 1).all() and table["mcnemar_p"].between(0, 1).all()
    r3 = table.set_index("reader").loc["r3"]
    g = answers[answers["reader"] == "r3"]
    mc = mcnemar_test(y, (g["answer"] == "GS").to_numpy().astype(int), (np.array(list(p_model.values())) >= 0.5))
    assert (r3["mcnemar_b"], r3["mcnemar_c"], r3["mcnemar_p"]) == (mc.b, mc.c, pytest.approx(mc.p_value))
    no_conf = compare_readers_to_model(answers.drop(columns=["confidence"]), truth, p_model, 0.5)
    assert "delong_p" not in no_conf.columns and "band_position" not in no_conf.columns
    with pytest.raises(ValueError, match="no P\\(GS\\)"):
        compare_readers_to_model(answers, truth, dict(list(p_model.items())[:-1]), 0.5)
    assert not math.isnan(r3["reader_auc"])
