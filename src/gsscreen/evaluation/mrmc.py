"""Multi-reader multi-case (MRMC) comparison: the Obuchowski–Rockette model with Hillis' degrees of freedom.

A study where several readers rate the same cases under two or more modalities (here: each physician unaided vs
the model) gives one AUC per (modality, reader). Those AUCs are correlated through the shared cases and vary with
the readers; the Obuchowski–Rockette (OR) analysis models both, so the conclusion generalises to new readers *and*
new cases (random readers, random cases, "RRRC").

Method, as published (our own implementation):

* Obuchowski NA, Rockette HE (1995). Hypothesis testing of diagnostic accuracy for multiple readers and multiple
  tests: an ANOVA approach with dependent observations. Commun Stat Simul Comput 24:285–308.
* Hillis SL (2007). A comparison of denominator degrees of freedom methods for multiple observer ROC analysis.
  Stat Med 26:596–619 (the RRRC F statistic and its denominator df used here).
* Hillis SL, Obuchowski NA, Berbaum KS (2008). Recent developments in the Dorfman–Berbaum–Metz procedure for
  multireader ROC study analysis. Acad Radiol 15:647–661 (single-modality CIs, fixed-reader test).

Figure of merit: the empirical (trapezoidal, Mann–Whitney) AUC with ties counted one half. The error variance and
the three covariances (Cov1: same reader, other modality; Cov2: other reader, same modality; Cov3: other reader,
other modality) are averages over the covariance matrix of the AUCs, estimated by the DeLong method or by the
case jackknife.

Reference check: ``tests/test_mrmc.py`` reproduces the published analysis of the Van Dyke data (5 readers, 114
cases) digit for digit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

CovMethod = Literal["jackknife", "delong"]


@dataclass
class Difference:
    """Modality ``a`` minus modality ``b``: reader-averaged AUC difference with its RRRC CI and test."""

    a: int
    b: int
    estimate: float
    se: float
    df: float
    lo: float
    hi: float
    t: float
    p_value: float


@dataclass
class ModalityCI:
    """Reader-averaged AUC of one modality with its RRRC 95% CI (from that modality's data only)."""

    modality: int
    estimate: float
    se: float
    df: float
    lo: float
    hi: float


@dataclass
class ORResult:
    """Obuchowski–Rockette analysis of a (modalities × readers × cases) rating array.

    ``auc``: (T, J) empirical AUC per modality and reader. ``f_stat``, ``df1``, ``df2``, ``p_value``: the RRRC test of
    equal modality means (Hillis 2007). ``fixed_readers_*``: the same test with readers fixed (inference only for
    these readers; chi-squared). Variances are on the AUC scale.
    """

    auc: np.ndarray
    means: np.ndarray
    cov_method: str
    n_readers: int
    n_cases: int
    n_pos: int
    n_neg: int
    ms_t: float
    ms_tr: float
    ms_r: list[float]
    error_var: float
    cov1: float
    cov2: float
    cov3: float
    var_reader: float
    var_treatment_reader: float
    f_stat: float
    df1: int
    df2: float
    p_value: float
    differences: list[Difference] = field(default_factory=list)
    modality_cis: list[ModalityCI] = field(default_factory=list)
    fixed_readers_chi2: float = float("nan")
    fixed_readers_p: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["auc"] = self.auc.tolist()
        d["means"] = self.means.tolist()
        return d


def _psi_components(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and its DeLong structural components: V10 (per positive, (m,)) and V01 (per negative, (n,))."""
    psi = (pos[:, None] > neg[None, :]).astype(float) + 0.5 * (pos[:, None] == neg[None, :])
    return float(psi.mean()), psi.mean(axis=1), psi.mean(axis=0)


def _check(ratings: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(ratings, dtype=float)
    y = np.asarray(truth)
    if r.ndim != 3:
        raise ValueError(f"ratings must be (modalities, readers, cases), got shape {r.shape}")
    t, j, k = r.shape
    if t < 2 or j < 2:
        raise ValueError(f"an MRMC comparison needs at least 2 modalities and 2 readers, got {t} and {j}")
    if y.shape != (k,):
        raise ValueError(f"truth must have one label per case ({k}), got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("truth must be 0/1")
    if min(int(y.sum()), int(k - y.sum())) < 2:
        raise ValueError("an MRMC comparison needs at least 2 positive and 2 negative cases")
    if not np.isfinite(r).all():
        raise ValueError("ratings must be finite (a fully crossed design: every reader rates every case)")
    return r, y.astype(int)


def auc_covariance(ratings: ArrayLike, truth: ArrayLike, method: CovMethod = "jackknife") -> tuple[np.ndarray,
                                                                                               np.ndarray]:
    """Empirical AUCs ``(T, J)`` and their covariance matrix ``(T*J, T*J)`` (row index = modality * J + reader).

    ``"delong"``: DeLong et al. (1988), S10/m + S01/n with sample covariances of the structural components.
    ``"jackknife"``: leave one case out (positive or negative), (K − 1)/K Σ (θ₍ₖ₎ − θ̄)(θ'₍ₖ₎ − θ̄').
    """
    r, y = _check(ratings, truth)
    t, j, _k = r.shape
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    auc = np.empty((t, j))
    v10 = np.empty((t * j, m))
    v01 = np.empty((t * j, n))
    for i in range(t):
        for jj in range(j):
            a, c10, c01 = _psi_components(r[i, jj, pos], r[i, jj, neg])
            auc[i, jj] = a
            v10[i * j + jj], v01[i * j + jj] = c10, c01
    if method == "delong":
        cov = np.cov(v10, ddof=1) / m + np.cov(v01, ddof=1) / n
    elif method == "jackknife":
        flat = auc.reshape(-1, 1)
        # AUC without positive i: (m θ − V10_i)/(m − 1); without negative j: (n θ − V01_j)/(n − 1).
        loo = np.concatenate([(m * flat - v10) / (m - 1), (n * flat - v01) / (n - 1)], axis=1)  # (T*J, K)
        kk = loo.shape[1]
        dev = loo - loo.mean(axis=1, keepdims=True)
        cov = (kk - 1) / kk * dev @ dev.T
    else:
        raise ValueError(f"cov method must be 'jackknife' or 'delong', got {method!r}")
    return auc, cov


def _average_covariances(cov: np.ndarray, t: int, j: int) -> tuple[float, float, float, float]:
    mod = np.repeat(np.arange(t), j)
    rdr = np.tile(np.arange(j), t)
    same_m = mod[:, None] == mod[None, :]
    same_r = rdr[:, None] == rdr[None, :]
    err = float(np.mean(np.diag(cov)))
    c1 = float(cov[~same_m & same_r].mean())
    c2 = float(cov[same_m & ~same_r].mean())
    c3 = float(cov[~same_m & ~same_r].mean())
    return err, c1, c2, c3


def or_analysis(
    ratings: ArrayLike, truth: ArrayLike, cov_method: CovMethod = "jackknife", alpha: float = 0.05
) -> ORResult:
    """Obuchowski–Rockette RRRC analysis of ``ratings`` (T modalities, J readers, K cases; higher = more likely
    positive) against ``truth`` ((K,) 0/1), with Hillis' (2007) denominator degrees of freedom.

    Every reader must rate every case in every modality (a fully crossed design).
    """
    r, y = _check(ratings, truth)
    t, j, k = r.shape
    auc, cov = auc_covariance(r, y, cov_method)
    err, c1, c2, c3 = _average_covariances(cov, t, j)
    means = auc.mean(axis=1)
    grand = float(auc.mean())
    reader_means = auc.mean(axis=0)
    ms_t = j * float(((means - grand) ** 2).sum()) / (t - 1)
    resid = auc - means[:, None] - reader_means[None, :] + grand
    ms_tr = float((resid**2).sum()) / ((t - 1) * (j - 1))
    ms_r_overall = t * float(((reader_means - grand) ** 2).sum()) / (j - 1)

    den = ms_tr + j * max(c2 - c3, 0.0)
    F = ms_t / den if den > 0 else float("nan")
    df2 = den**2 / (ms_tr**2 / ((t - 1) * (j - 1))) if ms_tr > 0 else float("inf")
    p = float(stats.f.sf(F, t - 1, df2)) if np.isfinite(F) else float("nan")

    diffs = []
    se_d = float(np.sqrt(2.0 / j * den))
    q = float(stats.t.ppf(1 - alpha / 2, df2)) if np.isfinite(df2) else float(stats.norm.ppf(1 - alpha / 2))
    for a, b in combinations(range(t), 2):
        est = float(means[a] - means[b])
        tt = est / se_d if se_d > 0 else float("nan")
        pv = float(2 * stats.t.sf(abs(tt), df2)) if np.isfinite(tt) else float("nan")
        diffs.append(Difference(a, b, est, se_d, float(df2), max(-1.0, est - q * se_d), min(1.0, est + q * se_d),
                                tt, pv))

    cis, ms_r = [], []
    for i in range(t):
        msr_i = float(((auc[i] - means[i]) ** 2).sum()) / (j - 1)
        # Cov2 of this modality alone.
        block = cov[i * j:(i + 1) * j, i * j:(i + 1) * j]
        c2_i = float(block[~np.eye(j, dtype=bool)].mean())
        se_i = float(np.sqrt(msr_i / j + max(c2_i, 0.0)))
        df_i = (msr_i + j * max(c2_i, 0.0)) ** 2 / (msr_i**2 / (j - 1)) if msr_i > 0 else float("inf")
        qi = float(stats.t.ppf(1 - alpha / 2, df_i)) if np.isfinite(df_i) else float(stats.norm.ppf(1 - alpha / 2))
        # An AUC lies in [0, 1]: the interval is clipped there (as MRMCaov reports it).
        cis.append(ModalityCI(i, float(means[i]), se_i, float(df_i), max(0.0, float(means[i] - qi * se_i)),
                              min(1.0, float(means[i] + qi * se_i))))
        ms_r.append(msr_i)

    # OR variance components from the expected mean squares (Hillis et al. 2005).
    var_tr = float(ms_tr - err + c1 + c2 - c3)

    # Fixed readers (Hillis et al. 2008): chi-squared with T − 1 df.
    den_fr = err - c1 + (j - 1) * max(c2 - c3, 0.0)
    chi2 = (t - 1) * ms_t / den_fr if den_fr > 0 else float("nan")
    p_fr = float(stats.chi2.sf(chi2, t - 1)) if np.isfinite(chi2) else float("nan")

    return ORResult(
        auc=auc, means=means, cov_method=cov_method, n_readers=j, n_cases=k, n_pos=int(y.sum()),
        n_neg=int(k - y.sum()), ms_t=ms_t, ms_tr=ms_tr, ms_r=ms_r, error_var=err, cov1=c1, cov2=c2, cov3=c3,
        var_reader=float((ms_r_overall - var_tr - err - (t - 1) * c1 + c2 + (t - 1) * c3) / t),
        var_treatment_reader=var_tr,
        f_stat=float(F), df1=t - 1, df2=float(df2), p_value=p, differences=diffs, modality_cis=cis,
        fixed_readers_chi2=float(chi2), fixed_readers_p=p_fr,
    )


def readers_vs_model(
    reader_scores: ArrayLike, model_scores: ArrayLike, truth: ArrayLike, cov_method: CovMethod = "jackknife"
) -> ORResult:
    """Physicians against a standalone model: ``reader_scores`` (J readers, K cases), ``model_scores`` (K,).

    The model enters as the second modality, read identically by every reader (its AUC does not vary between
    readers), so the analysis asks whether the average physician's AUC differs from the model's, with readers and
    cases both random. ``differences[0]`` is readers − model.
    """
    rs = np.asarray(reader_scores, dtype=float)
    ms = np.asarray(model_scores, dtype=float)
    if rs.ndim != 2 or ms.shape != (rs.shape[1],):
        raise ValueError(f"reader_scores must be (readers, cases) and model_scores (cases,), got {rs.shape} and "
                         f"{ms.shape}")
    ratings = np.stack([rs, np.broadcast_to(ms, rs.shape)])
    return or_analysis(ratings, truth, cov_method=cov_method)
