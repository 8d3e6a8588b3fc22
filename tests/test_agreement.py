"""Cohen's and Fleiss' κ against statsmodels and scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from gsscreen.evaluation.agreement import (
    calls_matrix,
    cohen_kappa,
    fleiss_kappa,
    group_fleiss_kappa,
    pairwise_kappa,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cohen_kappa_matches_statsmodels_and_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, 80)
    b = np.where(rng.random(80) < 0.7, a, 1 - a)
    k = cohen_kappa(a, b)
    assert k.kappa == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    table = pd.crosstab(a, b).to_numpy()
    ref = cohens_kappa(table)
    assert k.kappa == pytest.approx(ref.kappa, abs=1e-12)
    assert k.se == pytest.approx(ref.std_kappa, rel=1e-9)
    assert (k.lo, k.hi) == (pytest.approx(ref.kappa_low, rel=1e-9), pytest.approx(ref.kappa_upp, rel=1e-9))


def test_cohen_kappa_three_categories_and_degenerate() -> None:
    a = np.array(list("aabbccabcabc"))
    b = np.array(list("abbbcaabccbc"))
    assert cohen_kappa(a, b).kappa == pytest.approx(cohen_kappa_score(a, b))
    same = cohen_kappa(np.ones(5), np.ones(5))
    assert np.isnan(same.kappa) and same.observed == 1.0
    with pytest.raises(ValueError, match="one label each"):
        cohen_kappa([1, 0], [1])


@pytest.mark.parametrize("seed", [0, 3])
def test_fleiss_kappa_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, 60)
    raters = np.stack([np.where(rng.random(60) < 0.8, truth, 1 - truth) for _ in range(5)], axis=1)
    counts, _cats = aggregate_raters(raters)
    k = fleiss_kappa(counts)
    assert k.kappa == pytest.approx(sm_fleiss(counts, method="fleiss"), abs=1e-12)
    # Five categories, unequal use.
    counts5 = rng.multinomial(6, [0.4, 0.3, 0.15, 0.1, 0.05], size=30)
    assert fleiss_kappa(counts5).kappa == pytest.approx(sm_fleiss(counts5), abs=1e-12)
    assert fleiss_kappa(counts5).se > 0
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[1, 1], [2, 1]])


def test_fleiss_of_two_raters_is_close_to_cohen() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 2, 200)
    b = np.where(rng.random(200) < 0.75, a, 1 - a)
    counts, _ = aggregate_raters(np.stack([a, b], axis=1))
    # Scott's pi (Fleiss with 2 raters) and Cohen's kappa differ only through the marginals.
    assert fleiss_kappa(counts).kappa == pytest.approx(cohen_kappa(a, b).kappa, abs=0.02)


def test_pairwise_and_group_from_answers() -> None:
    rng = np.random.default_rng(5)
    photos = [f"p{i}.jpg" for i in range(40)]
    truth = rng.integers(0, 2, 40)
    rows = []
    for r in ("A", "B", "C"):
        calls = np.where(rng.random(40) < 0.8, truth, 1 - truth)
        n = 40 if r != "C" else 5  # C answered only 5 photos
        rows += [{"reader": r, "photo": photos[i], "call": int(calls[i])} for i in range(n)]
    m = calls_matrix(pd.DataFrame(rows))
    assert m.shape == (40, 3)
    pw = pairwise_kappa(m)
    ab = pw[(pw.reader_a == "A") & (pw.reader_b == "B")].iloc[0]
    assert ab.n == 40 and ab.kappa == pytest.approx(cohen_kappa_score(m["A"], m["B"]))
    assert np.isnan(pw[pw.reader_b == "C"].kappa).all()  # only 5 shared photos: not computed
    g = group_fleiss_kappa(m[["A", "B"]])
    assert g is not None and g.n == 40
    assert group_fleiss_kappa(m[["A"]]) is None
