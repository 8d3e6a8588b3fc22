"""Agreement between physicians' calls: Cohen's κ for each pair of readers and Fleiss' κ for the group.

κ = (p_o − p_e) / (1 − p_e): observed agreement corrected for the agreement expected by chance. Cohen (1960) for
two raters, each with their own marginal rates; Fleiss (1971) for m raters per subject with pooled marginals. The
large-sample standard errors follow Fleiss, Cohen & Everitt (1969) for Cohen's κ (as statsmodels'
``cohens_kappa`` reports it) and Fleiss, Nee & Landis (1979) for Fleiss' κ under the null hypothesis κ = 0.
Checked against ``statsmodels.stats.inter_rater`` and ``sklearn.metrics.cohen_kappa_score`` in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats


@dataclass
class Kappa:
    """κ with its large-sample 95% CI; ``n``: subjects rated by both (Cohen) or by all (Fleiss)."""

    kappa: float
    se: float
    lo: float
    hi: float
    n: int
    observed: float  # observed agreement p_o
    expected: float  # chance agreement p_e


def cohen_kappa(a: ArrayLike, b: ArrayLike, conf: float = 0.95) -> Kappa:
    """Cohen's κ of two raters' labels on the same subjects (any hashable categories).

    The SE is the large-sample one of Fleiss, Cohen & Everitt (1969); the CI is κ ± z·SE, clipped to [−1, 1].
    """
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"two raters need one label each per subject, got shapes {x.shape} and {y.shape}")
    n = x.size
    if n < 2:
        raise ValueError("Cohen's kappa needs at least 2 subjects rated by both raters")
    cats = np.unique(np.concatenate([x, y]))
    idx = {c: i for i, c in enumerate(cats)}
    table = np.zeros((cats.size, cats.size))
    for u, v in zip(x, y, strict=True):
        table[idx[u], idx[v]] += 1
    p = table / n
    row, col = p.sum(axis=1), p.sum(axis=0)
    po, pe = float(np.trace(p)), float(row @ col)
    if pe >= 1.0:  # both raters gave one and the same label throughout: κ undefined
        return Kappa(float("nan"), float("nan"), float("nan"), float("nan"), n, po, pe)
    k = (po - pe) / (1 - pe)
    # Fleiss, Cohen & Everitt (1969), variance of kappa-hat.
    diag = np.diag(p)
    term1 = float((diag * (1 - (row + col) * (1 - k)) ** 2).sum())
    off = (col[:, None] + row[None, :]) ** 2 * p  # (p_.i + p_j.)^2 p_ij
    np.fill_diagonal(off, 0.0)
    term2 = (1 - k) ** 2 * float(off.sum())
    term3 = (k - pe * (1 - k)) ** 2
    var = max(term1 + term2 - term3, 0.0) / (n * (1 - pe) ** 2)
    se = float(np.sqrt(var))
    z = float(stats.norm.ppf(0.5 + conf / 2))
    return Kappa(float(k), se, max(-1.0, k - z * se), min(1.0, k + z * se), n, po, pe)


def fleiss_kappa(counts: ArrayLike, conf: float = 0.95) -> Kappa:
    """Fleiss' κ from a ``(subjects, categories)`` table of how many raters put each subject in each category.

    Every subject must have the same number of ratings m ≥ 2. SE under κ = 0 (Fleiss, Nee & Landis 1979).
    """
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or c.shape[0] < 2:
        raise ValueError(f"counts must be (subjects >= 2, categories), got shape {c.shape}")
    m = c.sum(axis=1)
    if not np.allclose(m, m[0]) or m[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every subject")
    n, mm = c.shape[0], float(m[0])
    pj = c.sum(axis=0) / (n * mm)
    pi = ((c * (c - 1)).sum(axis=1)) / (mm * (mm - 1))
    po, pe = float(pi.mean()), float((pj**2).sum())
    if pe >= 1.0:
        return Kappa(float("nan"), float("nan"), float("nan"), float("nan"), n, po, pe)
    k = (po - pe) / (1 - pe)
    qj = 1 - pj
    s = float((pj * qj).sum())
    var = 2.0 / (n * mm * (mm - 1)) * (s**2 - float((pj * qj * (qj - pj)).sum())) / s**2 if s > 0 else float("nan")
    se = float(np.sqrt(var)) if np.isfinite(var) and var >= 0 else float("nan")
    z = float(stats.norm.ppf(0.5 + conf / 2))
    return Kappa(float(k), se, max(-1.0, k - z * se), min(1.0, k + z * se), n, po, pe)


def calls_matrix(answers: pd.DataFrame, value: str = "call") -> pd.DataFrame:
    """``answers`` (one row per reader and photo, columns ``reader, photo`` and ``value``) as a photo × reader
    table (NaN where a reader did not answer). Duplicate answers of one reader to one photo keep the last."""
    return answers.drop_duplicates(["reader", "photo"], keep="last").pivot(index="photo", columns="reader",
                                                                            values=value)


def pairwise_kappa(calls: pd.DataFrame, min_shared: int = 10) -> pd.DataFrame:
    """Cohen's κ for each pair of readers (columns of a photo × reader table), on the photos both answered.

    Returns one row per pair: ``reader_a, reader_b, n, agreement, kappa, lo, hi``; pairs sharing fewer than
    ``min_shared`` photos get NaN (too few to say anything).
    """
    rows = []
    for a, b in combinations(list(calls.columns), 2):
        both = calls[[a, b]].dropna()
        if len(both) < min_shared:
            rows.append({"reader_a": a, "reader_b": b, "n": len(both), "agreement": float("nan"),
                         "kappa": float("nan"), "lo": float("nan"), "hi": float("nan")})
            continue
        k = cohen_kappa(both[a].to_numpy(), both[b].to_numpy())
        rows.append({"reader_a": a, "reader_b": b, "n": k.n, "agreement": k.observed, "kappa": k.kappa,
                     "lo": k.lo, "hi": k.hi})
    return pd.DataFrame(rows, columns=["reader_a", "reader_b", "n", "agreement", "kappa", "lo", "hi"])


def group_fleiss_kappa(calls: pd.DataFrame) -> Kappa | None:
    """Fleiss' κ of all readers (columns) on the photos every one of them answered; None with < 2 readers or
    < 2 such photos."""
    if calls.shape[1] < 2:
        return None
    full = calls.dropna()
    if len(full) < 2:
        return None
    cats = sorted(pd.unique(full.to_numpy().ravel()).tolist())
    counts = np.stack([(full.to_numpy() == c).sum(axis=1) for c in cats], axis=1)
    return fleiss_kappa(counts)
