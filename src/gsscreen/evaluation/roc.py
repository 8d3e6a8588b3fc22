"""ROC curves, bootstrap confidence bands and DeLong inference, following the conventions of R's pROC.

Hong et al. (2021) drew the pooled ROC with a 95 % CI band from pROC's ``ci.se`` (stratified bootstrap,
200 replicates) and compared AUCs with DeLong's test. This module reimplements those statistics in numpy
(vectorised over bootstrap replicates) and is checked against pROC 1.18 in ``tests/test_roc.py``
(reference values: ``scripts/make_proc_reference.py``).

Conventions: ``y`` ``(n,)`` 1 = GS (case), 0 = control; ``p`` ``(n,)`` scores, larger = more GS-like
(pROC's ``direction = "<"``: a photo is called GS when its score is above the threshold).

How pROC reads a sensitivity off the empirical ROC at a given specificity ``v``
(``coords(roc, v, input="specificity", ret="sensitivity")``, used by ``ci.se`` for every replicate):
the curve is the list of points (specificity, sensitivity) for thresholds at ``-Inf``, the midpoints between
consecutive distinct scores, and ``+Inf``, ordered by increasing threshold (specificity non-decreasing,
sensitivity non-increasing).

* If some points have specificity exactly ``v`` (floating-point equality), the *first* of them is used, i.e.
  the highest sensitivity on that vertical stretch of the step curve.
* Otherwise the sensitivity is interpolated linearly between the last point with specificity < ``v`` and
  the first with specificity > ``v`` (a diagonal segment where scores are tied across classes, a horizontal
  one otherwise).

Specificities are the exact ratios ``k / n_controls`` computed the way pROC computes them, so equality hits
and misses the same grid values as pROC does (``numpy.linspace(0, 1, 101)`` equals R's ``seq(0, 1, 0.01)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from gsscreen.evaluation.metrics import check_labels_scores, midrank

__all__ = [
    "AucCI",
    "BootstrapCI",
    "DelongTest",
    "RocBand",
    "auc_ci_bootstrap",
    "auc_ci_delong",
    "delong_covariance",
    "delong_test",
    "pooled_roc_summary",
    "resampled_aucs",
    "resampled_sensitivities",
    "roc_ci_band",
    "roc_points",
    "sensitivity_at_specificity",
]

DEFAULT_SPECIFICITIES = np.linspace(0.0, 1.0, 101)


class AucCI(NamedTuple):
    """AUC with a DeLong confidence interval: ``lo``/``hi`` clipped to [0, 1], ``se`` = sqrt(DeLong variance)."""

    auc: float
    lo: float
    hi: float
    se: float


class BootstrapCI(NamedTuple):
    """AUC with a percentile bootstrap CI (quantiles type 7) and the bootstrap median."""

    auc: float
    lo: float
    hi: float
    median: float
    n_boot: int


class DelongTest(NamedTuple):
    """DeLong's paired test of two correlated AUCs: ``z = (auc1 - auc2) / sd``, two-sided ``p_value``."""

    z: float
    p_value: float
    auc1: float
    auc2: float


# --------------------------------------------------------------------------------------------------- ROC points


def roc_points(y: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical ROC: one point per distinct score, plus the origin.

    Returns:
        ``(fpr, tpr, thresholds)``, each ``(k + 1,)`` for ``k`` distinct scores; thresholds descend from
        ``+inf`` (nothing called GS) and point ``i`` calls GS every photo with ``p >= thresholds[i]``.
        This is ``sklearn.metrics.roc_curve(y, p, drop_intermediate=False)`` after the labels are checked.
    """
    from sklearn.metrics import roc_curve

    yy, s = check_labels_scores(y, p, score_name="p")
    fpr, tpr, thresholds = roc_curve(yy, s, drop_intermediate=False)
    return fpr.astype(np.float64), tpr.astype(np.float64), thresholds.astype(np.float64)


def _class_bins(s: np.ndarray) -> tuple[np.ndarray, int]:
    """Index of each score among the distinct scores (ascending) and their number."""
    u, inv = np.unique(s, return_inverse=True)
    return inv.ravel().astype(np.int64), int(u.size)


def _curves_from_counts(c0: np.ndarray, c1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pROC-ordered ROC curves from per-score class counts.

    Args:
        c0, c1: ``(B, K)`` counts of controls / cases at each distinct score (ascending).

    Returns:
        ``C0`` ``(B, K+1)`` int: controls at or below each threshold (threshold ``-inf`` first, then the
        midpoints above each distinct score), ``se`` ``(B, K+1)`` sensitivities, ``n0`` ``(B,)`` controls.
        Specificity is ``C0 / n0``. Scores absent from a replicate only add duplicate points, which leave
        pROC's reading of the curve unchanged.
    """
    b = c0.shape[0]
    zero = np.zeros((b, 1), dtype=np.int64)
    big_c0 = np.concatenate([zero, np.cumsum(c0, axis=1)], axis=1)
    big_c1 = np.concatenate([zero, np.cumsum(c1, axis=1)], axis=1)
    n0 = big_c0[:, -1]
    n1 = big_c1[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        se = (n1[:, None] - big_c1) / n1[:, None]  # same arithmetic as pROC: tp / ncases
    return big_c0, se, n0


def _sens_at_spec(big_c0: np.ndarray, se: np.ndarray, n0: np.ndarray, spec: np.ndarray) -> np.ndarray:
    """pROC's ``coords(input="specificity", ret="sensitivity")`` for ``B`` curves at once -> ``(B, S)``.

    Specificities ``C0 / n0`` are compared through integers: ``k / n0 == v`` and ``k / n0 > v`` are
    monotone in ``k``, so one batched ``searchsorted`` on the integer counts (rows offset so the flattened
    array stays sorted) finds the equal point and the first point beyond ``v`` for every row and ``v``.
    """
    b, kp1 = big_c0.shape
    n0f = n0.astype(np.float64)[:, None]  # (B, 1)
    v = spec[None, :]  # (1, S)
    with np.errstate(invalid="ignore", divide="ignore"):
        base = np.floor(v * n0f)
        base = np.where(np.isfinite(base), base, 0).astype(np.int64)
        c_eq = np.full(base.shape, -1, dtype=np.int64)
        for d in (-1, 0, 1):
            c = base + d
            c_eq = np.where((c >= 0) & (c / n0f == v), c, c_eq)
        c_gt = base - 1
        for _ in range(3):  # floor(v * n0) is within one step of the boundary; three nudges always suffice
            c_gt = np.where(c_gt / n0f <= v, c_gt + 1, c_gt)
    nmax = int(n0.max()) if n0.size else 0
    stride = nmax + 2
    rows = np.arange(b, dtype=np.int64)[:, None]
    flat = (big_c0 + stride * rows).ravel()

    def first_at_least(c: np.ndarray) -> np.ndarray:
        q = np.clip(c, 0, nmax + 1) + stride * rows
        pos = np.searchsorted(flat, q.ravel(), side="left").reshape(c.shape) - kp1 * rows
        return np.clip(pos, 0, kp1 - 1)

    pos_eq = first_at_least(c_eq)
    exact = (c_eq >= 0) & (np.take_along_axis(big_c0, pos_eq, axis=1) == c_eq)
    se_eq = np.take_along_axis(se, pos_eq, axis=1)

    j = np.clip(first_at_least(c_gt), 1, kp1 - 1)
    sp_j = np.take_along_axis(big_c0, j, axis=1) / n0f
    sp_prev = np.take_along_axis(big_c0, j - 1, axis=1) / n0f
    se_j = np.take_along_axis(se, j, axis=1)
    se_prev = np.take_along_axis(se, j - 1, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        proportion = (v - sp_j) / (sp_prev - sp_j)  # same operation order as pROC's coords.roc
        se_int = se_j + proportion * (se_prev - se_j)
    out = np.where(exact, se_eq, se_int)
    out[(n0 == 0) | np.isnan(se[:, 0])] = np.nan
    return out


def _check_specificities(specificities: ArrayLike) -> np.ndarray:
    sp = np.atleast_1d(np.asarray(specificities, dtype=np.float64))
    if sp.ndim != 1 or sp.size == 0:
        raise ValueError(f"specificities must be a non-empty 1-D array, got shape {sp.shape}")
    if not np.all(np.isfinite(sp)) or sp.min() < 0 or sp.max() > 1:
        raise ValueError("specificities must be finite and within [0, 1]")
    return sp


def sensitivity_at_specificity(y: ArrayLike, p: ArrayLike, specificities: ArrayLike) -> np.ndarray:
    """Sensitivity of the empirical ROC at each specificity, read the way pROC's ``coords`` does. ``(S,)``."""
    yy, s = check_labels_scores(y, p, score_name="p")
    sp = _check_specificities(specificities)
    inv, k = _class_bins(s)
    c0 = np.bincount(inv[yy == 0], minlength=k)[None, :]
    c1 = np.bincount(inv[yy == 1], minlength=k)[None, :]
    big_c0, se, n0 = _curves_from_counts(c0, c1)
    return _sens_at_spec(big_c0, se, n0, sp)[0]


# --------------------------------------------------------------------------------------------------- resampling

_CHUNK_ELEMENTS = 4_000_000  # bound the (replicates × photos) index block held in memory at once


def _counts_from_resamples(y: np.ndarray, inv: np.ndarray, k: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-replicate class counts at each distinct score. ``idx`` ``(B, m)`` indexes the full sample."""
    b = idx.shape[0]
    bins = inv[idx] + k * y[idx].astype(np.int64)  # (B, m) in [0, 2K)
    flat = (bins + (2 * k) * np.arange(b, dtype=np.int64)[:, None]).ravel()
    counts = np.bincount(flat, minlength=b * 2 * k).reshape(b, 2, k)
    return counts[:, 0, :], counts[:, 1, :]


def _validated_index(idx: ArrayLike, n: int, name: str) -> np.ndarray:
    a = np.asarray(idx)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be a 2-D integer array (replicates, sample size), got {a.dtype} {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"{name} holds indices outside [0, {n})")
    return a.astype(np.int64)


def _global_index(y: np.ndarray, idx_controls: ArrayLike, idx_cases: ArrayLike) -> np.ndarray:
    """Map (replicates × controls) and (replicates × cases) positions to indices of the full sample."""
    controls = np.flatnonzero(y == 0)
    cases = np.flatnonzero(y == 1)
    i0 = _validated_index(idx_controls, controls.size, "idx_controls")
    i1 = _validated_index(idx_cases, cases.size, "idx_cases")
    if i0.shape[0] != i1.shape[0]:
        raise ValueError(f"idx_controls has {i0.shape[0]} replicates but idx_cases has {i1.shape[0]}")
    return np.concatenate([controls[i0], cases[i1]], axis=1)


def _replicate_blocks(rng: np.random.Generator, y: np.ndarray, n_boot: int, stratified: bool):
    """Yield ``(B_chunk, n)`` index blocks into the full sample, drawn like pROC's bootstrap.

    Stratified: controls and cases are each resampled with replacement to their own size (the class
    balance is fixed). Otherwise the whole sample is resampled.
    """
    n = y.shape[0]
    controls = np.flatnonzero(y == 0)
    cases = np.flatnonzero(y == 1)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    done = 0
    while done < n_boot:
        b = min(per_chunk, n_boot - done)
        if stratified:
            i0 = rng.integers(0, controls.size, size=(b, controls.size))
            i1 = rng.integers(0, cases.size, size=(b, cases.size))
            yield np.concatenate([controls[i0], cases[i1]], axis=1)
        else:
            yield rng.integers(0, n, size=(b, n))
        done += b


def _aucs_from_counts(c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    """Mann–Whitney AUC per replicate from ``(B, K)`` class counts; ``nan`` where a class is missing."""
    n0 = c0.sum(axis=1)
    n1 = c1.sum(axis=1)
    below = np.cumsum(c0, axis=1) - c0  # controls strictly below each score
    won = (c1 * (below + 0.5 * c0)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return won / (n0 * n1).astype(np.float64)


def resampled_sensitivities(
    y: ArrayLike, p: ArrayLike, idx_controls: ArrayLike, idx_cases: ArrayLike, specificities: ArrayLike
) -> np.ndarray:
    """Sensitivities at ``specificities`` for given stratified resamples. ``(B, S)``.

    ``idx_controls`` ``(B, n_controls)`` / ``idx_cases`` ``(B, n_cases)`` are 0-based positions among the
    controls / cases in their order of appearance (R's ``roc$controls`` / ``roc$cases``), so replicates
    drawn by R can be replayed exactly.
    """
    yy, s = check_labels_scores(y, p, score_name="p")
    sp = _check_specificities(specificities)
    inv, k = _class_bins(s)
    c0, c1 = _counts_from_resamples(yy, inv, k, _global_index(yy, idx_controls, idx_cases))
    return _sens_at_spec(*_curves_from_counts(c0, c1), sp)


def resampled_aucs(y: ArrayLike, p: ArrayLike, idx_controls: ArrayLike, idx_cases: ArrayLike) -> np.ndarray:
    """AUC of each given stratified resample (see :func:`resampled_sensitivities`). ``(B,)``."""
    yy, s = check_labels_scores(y, p, score_name="p")
    inv, k = _class_bins(s)
    c0, c1 = _counts_from_resamples(yy, inv, k, _global_index(yy, idx_controls, idx_cases))
    return _aucs_from_counts(c0, c1)


# --------------------------------------------------------------------------------------------------- CI band


@dataclass
class RocBand:
    """Bootstrap confidence band of sensitivity at fixed specificities (pROC ``ci.se``).

    All arrays are ``(S,)`` aligned with ``specificities``; ``sensitivity`` is the observed curve read at
    those specificities, ``lo``/``median``/``hi`` the bootstrap quantiles (type 7).
    """

    specificities: np.ndarray
    sensitivity: np.ndarray
    lo: np.ndarray
    median: np.ndarray
    hi: np.ndarray
    conf: float
    n_boot: int
    n_boot_used: int
    stratified: bool
    seed: int | None

    @property
    def fpr(self) -> np.ndarray:
        """1 − specificity, the x axis of a ROC plot."""
        return 1.0 - self.specificities

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (lists of floats)."""
        return {
            "specificities": self.specificities.tolist(),
            "sensitivity": self.sensitivity.tolist(),
            "lo": self.lo.tolist(),
            "median": self.median.tolist(),
            "hi": self.hi.tolist(),
            "conf": self.conf,
            "n_boot": self.n_boot,
            "n_boot_used": self.n_boot_used,
            "stratified": self.stratified,
            "seed": self.seed,
        }


def _check_conf(conf: float) -> tuple[float, float]:
    if not 0.0 < conf < 1.0:
        raise ValueError(f"conf must lie in (0, 1), got {conf!r}")
    a = (1.0 - conf) / 2.0
    return a, 1.0 - a


def _check_n_boot(n_boot: int) -> int:
    if int(n_boot) != n_boot or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    return int(n_boot)


def roc_ci_band(
    y: ArrayLike,
    p: ArrayLike,
    n_boot: int = 200,
    specificities: ArrayLike = DEFAULT_SPECIFICITIES,
    seed: int | None = 0,
    stratified: bool = True,
    conf: float = 0.95,
) -> RocBand:
    """Sensitivity CI at fixed specificities by bootstrap, like ``pROC::ci.se(roc, specificities, boot.n,
    boot.stratified)``.

    Each replicate resamples controls and cases separately (``stratified``) or the whole sample, rebuilds
    the empirical ROC and reads its sensitivity at every specificity (pROC's rule, see the module doc);
    the band is the ``(1-conf)/2``, 0.5 and ``(1+conf)/2`` quantiles (``numpy`` "linear" = R type 7).
    Replicates without both classes (only possible unstratified) are dropped, as pROC does.
    200 replicates of 2,400 photos over 101 specificities take a few tens of milliseconds.
    """
    yy, s = check_labels_scores(y, p, score_name="p")
    sp = _check_specificities(specificities)
    n_boot = _check_n_boot(n_boot)
    a_lo, a_hi = _check_conf(conf)
    rng = np.random.default_rng(seed)
    inv, k = _class_bins(s)
    parts = []
    for idx in _replicate_blocks(rng, yy, n_boot, stratified):
        c0, c1 = _counts_from_resamples(yy, inv, k, idx)
        parts.append(_sens_at_spec(*_curves_from_counts(c0, c1), sp))
    sens = np.concatenate(parts, axis=0)
    sens = sens[~np.isnan(sens).any(axis=1)]
    if sens.shape[0] < 2:
        raise ValueError("fewer than 2 bootstrap replicates had both classes; the sample is too small")
    q = np.quantile(sens, [a_lo, 0.5, a_hi], axis=0)
    return RocBand(
        specificities=sp,
        sensitivity=sensitivity_at_specificity(yy, s, sp),
        lo=q[0],
        median=q[1],
        hi=q[2],
        conf=float(conf),
        n_boot=n_boot,
        n_boot_used=int(sens.shape[0]),
        stratified=bool(stratified),
        seed=seed,
    )


# --------------------------------------------------------------------------------------------------- AUC CIs


def delong_covariance(y: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance for ``k`` predictors scored on the same photos.

    Uses the structural components (placements) computed from midranks (Sun & Xu 2014):
    for case ``i``, ``V10_i`` = share of controls it beats (ties ½); for control ``j``, ``V01_j`` = share
    of cases that beat it. ``cov = S10 / n_cases + S01 / n_controls`` with sample covariances (``ddof=1``),
    as pROC.

    Args:
        y: ``(n,)`` labels. scores: ``(n,)`` or ``(k, n)``.

    Returns:
        ``aucs`` ``(k,)``, ``cov`` ``(k, k)``.
    """
    s2 = np.asarray(scores)
    s2 = s2[None, :] if s2.ndim == 1 else s2
    if s2.ndim != 2:
        raise ValueError(f"scores must be (n,) or (k, n), got shape {np.shape(scores)}")
    rows = [check_labels_scores(y, row, score_name=f"scores[{i}]") for i, row in enumerate(s2)]
    yy = rows[0][0]
    cases = yy == 1
    n1 = int(cases.sum())
    n0 = yy.shape[0] - n1
    if n1 < 2 or n0 < 2:
        raise ValueError(f"DeLong's variance needs at least 2 GS and 2 controls (got {n1} GS, {n0} controls)")
    v10 = np.empty((len(rows), n1))
    v01 = np.empty((len(rows), n0))
    for i, (_, s) in enumerate(rows):
        r_all = midrank(s)
        r_cases = midrank(s[cases])
        r_controls = midrank(s[~cases])
        # Rank among everyone minus rank among one's own class = how many of the other class lie below (+½ ties).
        v10[i] = (r_all[cases] - r_cases) / n0
        v01[i] = 1.0 - (r_all[~cases] - r_controls) / n1
    aucs = v10.mean(axis=1)
    cov = np.atleast_2d(np.cov(v10, ddof=1)) / n1 + np.atleast_2d(np.cov(v01, ddof=1)) / n0
    return aucs, cov


def auc_ci_delong(y: ArrayLike, p: ArrayLike, conf: float = 0.95) -> AucCI:
    """AUC with DeLong's normal-approximation CI, as ``pROC::ci.auc(roc, method="delong")``."""
    a_lo, a_hi = _check_conf(conf)
    aucs, cov = delong_covariance(y, p)
    auc = float(aucs[0])
    se = math.sqrt(max(float(cov[0, 0]), 0.0))
    lo = auc + se * float(norm.ppf(a_lo))
    hi = auc + se * float(norm.ppf(a_hi))
    return AucCI(auc, min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0), se)


def auc_ci_bootstrap(
    y: ArrayLike, p: ArrayLike, n_boot: int = 2000, seed: int | None = 0, stratified: bool = True, conf: float = 0.95
) -> BootstrapCI:
    """AUC with a percentile bootstrap CI, as ``pROC::ci.auc(roc, method="bootstrap")``."""
    yy, s = check_labels_scores(y, p, score_name="p")
    n_boot = _check_n_boot(n_boot)
    a_lo, a_hi = _check_conf(conf)
    rng = np.random.default_rng(seed)
    inv, k = _class_bins(s)
    blocks = _replicate_blocks(rng, yy, n_boot, stratified)
    aucs = np.concatenate([_aucs_from_counts(*_counts_from_resamples(yy, inv, k, idx)) for idx in blocks])
    aucs = aucs[~np.isnan(aucs)]
    if aucs.size < 2:
        raise ValueError("fewer than 2 bootstrap replicates had both classes; the sample is too small")
    lo, med, hi = np.quantile(aucs, [a_lo, 0.5, a_hi])
    auc = float(_aucs_from_counts(*_counts_from_resamples(yy, inv, k, np.arange(yy.size)[None, :]))[0])
    return BootstrapCI(auc, float(lo), float(hi), float(med), int(aucs.size))


def delong_test(y: ArrayLike, p1: ArrayLike, p2: ArrayLike) -> DelongTest:
    """DeLong's test for two correlated ROC curves (same photos), as ``pROC::roc.test(method="delong",
    paired=TRUE)``: ``z = (auc1 - auc2) / sqrt(var1 + var2 - 2 cov12)``, two-sided normal p-value.
    Identical predictors give ``z = 0, p = 1``.
    """
    yy, s1 = check_labels_scores(y, p1, score_name="p1")
    _, s2 = check_labels_scores(yy, p2, score_name="p2")
    aucs, cov = delong_covariance(yy, np.stack([s1, s2]))
    d = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    sig = math.sqrt(max(var, 0.0))
    if sig > 0.0:
        z = d / sig
    elif d == 0.0:
        z = 0.0  # identical curves: pROC reports z = 0 rather than 0/0
    else:
        z = math.copysign(math.inf, d)
    p_value = float(2.0 * norm.sf(abs(z)))
    return DelongTest(float(z), p_value, float(aucs[0]), float(aucs[1]))


# --------------------------------------------------------------------------------------------------- summary


def pooled_roc_summary(
    y: ArrayLike,
    p: ArrayLike,
    n_boot: int = 200,
    seed: int = 0,
    conf: float = 0.95,
    specificities: ArrayLike = DEFAULT_SPECIFICITIES,
    n_boot_auc: int | None = None,
) -> dict[str, Any]:
    """Everything the run folder's ``metrics.json`` needs about the pooled ROC, as plain JSON types.

    Keys: ``n, n_gs, n_control, auc``, ``auc_ci_delong`` {lo, hi, se, conf}, ``auc_ci_bootstrap`` {lo, hi,
    median, n_boot, conf}, ``band`` (:meth:`RocBand.to_dict`, ``n_boot`` replicates) and ``roc`` {fpr, tpr}
    (all points of the empirical curve). The AUC's bootstrap uses ``n_boot_auc`` replicates (default: ``n_boot``,
    the study's ``n_bootstrap``).
    """
    yy, s = check_labels_scores(y, p, score_name="p")
    d = auc_ci_delong(yy, s, conf)
    b = auc_ci_bootstrap(yy, s, n_boot=n_boot if n_boot_auc is None else n_boot_auc, seed=seed, conf=conf)
    band = roc_ci_band(yy, s, n_boot=n_boot, specificities=specificities, seed=seed, conf=conf)
    fpr, tpr, _ = roc_points(yy, s)
    return {
        "n": int(yy.size),
        "n_gs": int(yy.sum()),
        "n_control": int(yy.size - yy.sum()),
        "auc": d.auc,
        "auc_ci_delong": {"lo": d.lo, "hi": d.hi, "se": d.se, "conf": conf},
        "auc_ci_bootstrap": {"lo": b.lo, "hi": b.hi, "median": b.median, "n_boot": b.n_boot, "conf": conf},
        "band": band.to_dict(),
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
    }
