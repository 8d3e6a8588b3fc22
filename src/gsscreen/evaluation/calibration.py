"""Is P(GS) a probability? Calibration measures and the small maps that make it one.

A screening tool that shows "P(GS) 0.80" promises that about 80 of 100 such children carry a syndrome — *in a
population with the training prevalence*. This module measures that promise and repairs it:

- measures: :func:`brier_score`, :func:`calibration_intercept_slope` (logistic recalibration, Cox 1958: intercept
  0 and slope 1 are perfect; slope < 1 means over-confident scores), :func:`reliability_table` (observed GS rate
  per bin of P(GS) with Wilson intervals);
- maps, fitted on validation predictions only: :class:`PlattCalibrator` (a logistic curve on logit P — two
  parameters, smooth, monotone) and :class:`IsotonicCalibrator` (the best non-decreasing step map, pool adjacent
  violators; flexible, needs more data); both ``fit(p, y)`` / ``predict(p)`` and serialise to plain JSON dicts
  (:func:`calibrator_from_dict`), so a model pack stores them without pickles;
- :func:`adjust_for_prevalence`: Bayes' rule on the odds scale moves a calibrated P(GS) from the training
  prevalence to a clinic's own prior (the likelihood ratio of the photo is unchanged; only the prior odds change);
- :func:`choose_calibrator`: cross-validates both maps on the pooled validation predictions and keeps the one
  with the lower held-out log loss (see its docstring for why log loss).

Shapes: every ``y`` is ``(n,)`` of 0 (control) / 1 (GS); every ``p`` is ``(n,)`` of probabilities in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from gsscreen.evaluation.metrics import check_labels_scores, check_scores

__all__ = [
    "CalibrationFit",
    "IsotonicCalibrator",
    "PlattCalibrator",
    "adjust_for_prevalence",
    "brier_score",
    "calibration_intercept_slope",
    "calibrator_from_dict",
    "check_probabilities",
    "choose_calibrator",
    "log_loss",
    "reliability_table",
    "wilson_interval",
]

#: logits are taken of probabilities clipped to [EPS, 1 − EPS]: a softmax that saturates at 0 or 1 in float32
#: would otherwise give infinite logits (and Platt would read it as infinitely sure)
EPS = 1e-6


# ---------------------------------------------------------------------------------------------- validation


def check_probabilities(p: ArrayLike, n: int | None = None, name: str = "p") -> np.ndarray:
    """``p`` as a 1-D float64 array of finite values in [0, 1] (length ``n`` when given), else ``ValueError``."""
    arr = np.asarray(p)
    if n is None:
        n = arr.shape[0] if arr.ndim == 1 else -1
    s = check_scores(arr, n, name)
    if s.size and (s.min() < 0.0 or s.max() > 1.0):
        i = int(np.flatnonzero((s < 0) | (s > 1))[0])
        raise ValueError(f"{name} must lie in [0, 1]; found {s[i]!r} at index {i}")
    return s


def _labels_probs(y: ArrayLike, p: ArrayLike, need_both: bool) -> tuple[np.ndarray, np.ndarray]:
    yy, pp = check_labels_scores(y, p, need_both=need_both, score_name="p")
    return yy, check_probabilities(pp, yy.shape[0])


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPS, 1.0 - EPS)
    return np.log(q) - np.log1p(-q)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


# ---------------------------------------------------------------------------------------------- measures


def brier_score(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared difference between P(GS) and the outcome (0 best; 0.25 = always saying 0.5)."""
    yy, pp = _labels_probs(y, p, need_both=False)
    return float(np.mean((pp - yy) ** 2))


def log_loss(y: ArrayLike, p: ArrayLike, eps: float = 1e-4) -> float:
    """Mean negative log-likelihood, with P(GS) clipped to [eps, 1 − eps].

    The clip matches what a user can see (P(GS) is shown with three decimals); without it one "0.000" on a GS
    photo would make the loss infinite and hide every other difference.
    """
    yy, pp = _labels_probs(y, p, need_both=False)
    q = np.clip(pp, eps, 1.0 - eps)
    return float(-np.mean(yy * np.log(q) + (1 - yy) * np.log1p(-q)))


@dataclass(frozen=True)
class CalibrationFit:
    """Logistic recalibration of P(GS): ``logit P(y=1) = intercept + slope · logit(p)``.

    ``intercept`` is estimated with the slope fixed at 1 (calibration-in-the-large: are the scores too high or too
    low on average?); ``slope`` comes from the full two-parameter fit (< 1: too extreme, > 1: too timid). The
    intervals are 95 % Wald intervals (or ``1 − alpha``). ``n`` is the number of photos.
    """

    intercept: float
    intercept_ci: tuple[float, float]
    slope: float
    slope_ci: tuple[float, float]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"intercept": self.intercept, "intercept_ci": list(self.intercept_ci), "slope": self.slope,
                "slope_ci": list(self.slope_ci), "n": self.n}


def calibration_intercept_slope(y: ArrayLike, p: ArrayLike, alpha: float = 0.05) -> CalibrationFit:
    """Calibration intercept and slope of ``p`` against outcomes ``y`` (statsmodels GLM, binomial, logit link).

    Needs both classes. When the outcome is perfectly separated by ``p`` the maximum-likelihood slope is infinite;
    the values are then NaN rather than a number the optimiser stopped at.
    """
    import warnings

    import statsmodels.api as sm

    yy, pp = _labels_probs(y, p, need_both=True)
    lp = _logit(pp)
    nan = (math.nan, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # separation / convergence warnings: handled below through the numbers
        try:
            fit1 = sm.GLM(yy, np.ones((yy.size, 1)), family=sm.families.Binomial(), offset=lp).fit()
            a, a_ci = float(fit1.params[0]), tuple(float(v) for v in fit1.conf_int(alpha)[0])
        except Exception:  # statsmodels raises several types on degenerate data
            a, a_ci = math.nan, nan
        try:
            if lp[yy == 0].max() < lp[yy == 1].min():  # complete separation: the ML slope is infinite
                raise ValueError("separated")
            fit2 = sm.GLM(yy, sm.add_constant(lp, has_constant="add"), family=sm.families.Binomial()).fit()
            b, b_ci = float(fit2.params[1]), tuple(float(v) for v in fit2.conf_int(alpha)[1])
            if not (np.isfinite(b) and np.all(np.isfinite(fit2.bse))) or abs(b) > 1e3:
                b, b_ci = math.nan, nan
        except Exception:
            b, b_ci = math.nan, nan
    return CalibrationFit(a, a_ci, b, b_ci, int(yy.size))  # type: ignore[arg-type]


def wilson_interval(k: ArrayLike, n: ArrayLike, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``k`` successes out of ``n`` (element-wise; NaN where ``n`` is 0)."""
    from scipy.stats import norm

    kk, nn = np.asarray(k, float), np.asarray(n, float)
    z = float(norm.ppf(1 - alpha / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        ph = kk / nn
        den = 1 + z * z / nn
        centre = (ph + z * z / (2 * nn)) / den
        half = z * np.sqrt(ph * (1 - ph) / nn + z * z / (4 * nn * nn)) / den
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def reliability_table(y: ArrayLike, p: ArrayLike, n_bins: int = 10, strategy: str = "quantile") -> Any:
    """Observed GS rate per bin of P(GS): the numbers behind a reliability diagram.

    Bins as :func:`sklearn.calibration.calibration_curve` makes them (``quantile``: equal-count bins from the
    percentiles of ``p``; ``uniform``: equal-width bins on [0, 1]); empty bins are dropped.

    Returns:
        a pandas DataFrame, one row per non-empty bin: ``bin`` (0-based), ``p_low``/``p_high`` (bin edges),
        ``mean_p`` (mean P(GS)), ``observed`` (fraction GS), ``n``, ``n_gs``, ``ci_low``/``ci_high`` (95 % Wilson
        interval of ``observed``).
    """
    import pandas as pd

    yy, pp = _labels_probs(y, p, need_both=False)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be ≥ 1, got {n_bins}")
    if strategy == "quantile":
        edges = np.percentile(pp, np.linspace(0, 100, int(n_bins) + 1))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    ids = np.searchsorted(edges[1:-1], pp)
    n = np.bincount(ids, minlength=n_bins)
    s = np.bincount(ids, weights=pp, minlength=n_bins)
    k = np.bincount(ids, weights=yy.astype(float), minlength=n_bins)
    keep = np.flatnonzero(n > 0)
    lo, hi = wilson_interval(k[keep], n[keep])
    return pd.DataFrame({
        "bin": keep, "p_low": edges[keep], "p_high": edges[keep + 1], "mean_p": s[keep] / n[keep],
        "observed": k[keep] / n[keep], "n": n[keep].astype(int), "n_gs": k[keep].astype(int),
        "ci_low": lo, "ci_high": hi,
    })


# ---------------------------------------------------------------------------------------------- maps


class PlattCalibrator:
    """Platt scaling on the logit: ``P = sigmoid(a + b · logit(p))``, fitted by maximum likelihood.

    Two parameters, so it cannot overfit a few hundred validation photos, and it keeps the ranking (AUC) of the
    scores when ``b > 0``. Fitted with Newton–Raphson and a tiny ridge (``1e-6``) so separable data still gives a
    finite, very steep curve instead of diverging.
    """

    method = "platt"

    def __init__(self, a: float = 0.0, b: float = 1.0) -> None:
        self.a, self.b = float(a), float(b)
        self.fitted = False

    def fit(self, p: ArrayLike, y: ArrayLike) -> PlattCalibrator:
        """Fit on raw probabilities ``p`` ``(n,)`` and outcomes ``y`` ``(n,)`` (both classes needed)."""
        yy, pp = _labels_probs(y, p, need_both=True)
        x = np.column_stack([np.ones(pp.size), _logit(pp)])
        w = np.zeros(2)
        ridge = 1e-6 * np.eye(2)
        for _ in range(100):
            mu = _sigmoid(x @ w)
            grad = x.T @ (yy - mu) - ridge @ w
            hess = (x * (mu * (1 - mu))[:, None]).T @ x + ridge
            step = np.linalg.solve(hess, grad)
            w = w + step
            if np.max(np.abs(step)) < 1e-10:
                break
        self.a, self.b = float(w[0]), float(w[1])
        self.fitted = True
        return self

    def predict(self, p: ArrayLike) -> np.ndarray:
        """Calibrated P(GS) ``(n,)`` for raw probabilities ``p`` ``(n,)``."""
        pp = check_probabilities(p)
        return _sigmoid(self.a + self.b * _logit(pp))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlattCalibrator:
        try:
            a, b = float(d["a"]), float(d["b"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"a Platt calibration needs numbers 'a' and 'b', got {dict(d)!r}") from None
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError("a Platt calibration needs finite 'a' and 'b'")
        c = cls(a, b)
        c.fitted = True
        return c


class IsotonicCalibrator:
    """The best non-decreasing map from raw to calibrated P(GS) (pool adjacent violators), least squares.

    Stored as knots ``x`` (raw P(GS), increasing) and ``y`` (calibrated, non-decreasing); between knots the map is
    linear, outside it is clipped to the end values — the same map as scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip")``. Flexible (any monotone shape), but it is a step map fitted to
    the validation photos: with few photos per step it gives flat stretches and exact 0 or 1.
    """

    method = "isotonic"

    def __init__(self, x: ArrayLike | None = None, y: ArrayLike | None = None) -> None:
        self.x = np.asarray([] if x is None else x, float)
        self.y = np.asarray([] if y is None else y, float)
        self.fitted = x is not None

    def fit(self, p: ArrayLike, y: ArrayLike) -> IsotonicCalibrator:
        """Fit on raw probabilities ``p`` ``(n,)`` and outcomes ``y`` ``(n,)``."""
        yy, pp = _labels_probs(y, p, need_both=False)
        # Equal raw scores become one point (their mean outcome, weight = count), as the map must be a function.
        ux, inv, cnt = np.unique(pp, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=yy.astype(float))
        vals: list[float] = []
        wts: list[float] = []
        starts: list[int] = []
        for i in range(ux.size):
            vals.append(sums[i] / cnt[i])
            wts.append(float(cnt[i]))
            starts.append(i)
            while len(vals) > 1 and vals[-2] >= vals[-1]:  # pool adjacent violators (ties pooled too)
                w = wts[-2] + wts[-1]
                v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
                vals[-2:], wts[-2:], starts[-2:] = [v], [w], [starts[-2]]
        fitted = np.empty(ux.size)
        bounds = [*starts, ux.size]
        for j, v in enumerate(vals):
            fitted[bounds[j]:bounds[j + 1]] = v
        # Keep only the knots where the step begins and ends: same interpolant, smaller pack.
        keep = np.ones(ux.size, bool)
        if ux.size > 2:
            same_prev = np.r_[False, fitted[1:] == fitted[:-1]]
            same_next = np.r_[fitted[:-1] == fitted[1:], False]
            keep = ~(same_prev & same_next)
        self.x, self.y, self.fitted = ux[keep], fitted[keep], True
        return self

    def predict(self, p: ArrayLike) -> np.ndarray:
        """Calibrated P(GS) ``(n,)`` for raw probabilities ``p`` ``(n,)``."""
        if not self.fitted or self.x.size == 0:
            raise ValueError("isotonic calibration is not fitted")
        pp = check_probabilities(p)
        return np.interp(pp, self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": [float(v) for v in self.x], "y": [float(v) for v in self.y]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IsotonicCalibrator:
        try:
            x, y = np.asarray(d["x"], float), np.asarray(d["y"], float)
        except (KeyError, TypeError, ValueError):
            raise ValueError("an isotonic calibration needs number lists 'x' and 'y'") from None
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ValueError("an isotonic calibration needs 'x' and 'y' of the same non-zero length")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.any(np.diff(x) < 0) \
                or np.any(np.diff(y) < 0) or y.min() < 0 or y.max() > 1:
            raise ValueError("an isotonic calibration needs increasing 'x' and non-decreasing 'y' in [0, 1]")
        return cls(x, y)


Calibrator = PlattCalibrator | IsotonicCalibrator
_METHODS: dict[str, type[PlattCalibrator] | type[IsotonicCalibrator]] = {
    "platt": PlattCalibrator, "isotonic": IsotonicCalibrator}


def calibrator_from_dict(d: Mapping[str, Any]) -> Calibrator:
    """Rebuild a calibrator from its :meth:`to_dict` (``method`` names the kind); ``ValueError`` if malformed."""
    if not isinstance(d, Mapping) or d.get("method") not in _METHODS:
        raise ValueError(f"unknown calibration {d!r}; expected method 'platt' or 'isotonic'")
    return _METHODS[str(d["method"])].from_dict(d)


def adjust_for_prevalence(p: ArrayLike, train_prevalence: float, prevalence: float) -> np.ndarray:
    """Move calibrated P(GS) ``(n,)`` from the training prevalence to another prior (Bayes' rule on the odds).

    ``odds' = odds · [prevalence / (1 − prevalence)] / [train / (1 − train)]``. Both prevalences must lie strictly
    between 0 and 1. Exact 0 and 1 stay 0 and 1 (no prior moves a certainty).
    """
    for name, v in (("train_prevalence", train_prevalence), ("prevalence", prevalence)):
        if not (isinstance(v, (int, float)) and 0.0 < float(v) < 1.0):
            raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {v!r}")
    pp = check_probabilities(p)
    shift = math.log(prevalence / (1 - prevalence)) - math.log(train_prevalence / (1 - train_prevalence))
    with np.errstate(divide="ignore"):
        z = np.log(pp) - np.log1p(-pp)
    out = _sigmoid(z + shift)
    return np.where((pp == 0) | (pp == 1), pp, out)


# ---------------------------------------------------------------------------------------------- choice


def choose_calibrator(p: ArrayLike, y: ArrayLike, n_splits: int = 5, seed: int = 0) -> tuple[Calibrator, dict]:
    """Fit Platt and isotonic maps on validation predictions and keep the better one, measured out of sample.

    Both maps are cross-validated on ``(p, y)`` (stratified ``n_splits``-fold; each map fitted on four fifths and
    scored on the fifth it never saw) and the one with the lower pooled **log loss** wins (ties → Platt, the
    simpler map). Log loss, not Brier, because it punishes what matters in a clinic: a confident 0.00 or 1.00 that
    turns out wrong — exactly the failure of a step map fitted on too few photos. The Brier scores are reported too.
    The winner is refitted on all of ``(p, y)``.

    Returns:
        ``(calibrator, measurement)`` with ``measurement`` = ``{"criterion", "n_splits", "n", "chosen",
        "cv": {method: {"log_loss", "brier"}}, "raw": {"log_loss", "brier"}}``.
    """
    from sklearn.model_selection import StratifiedKFold

    yy, pp = _labels_probs(y, p, need_both=True)
    k = int(min(n_splits, np.bincount(yy).min()))
    if k < 2:
        raise ValueError("calibration needs at least 2 GS and 2 control validation photos")
    oof = {m: np.empty(pp.size) for m in _METHODS}
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(pp, yy):
        for m, cls in _METHODS.items():
            oof[m][te] = cls().fit(pp[tr], yy[tr]).predict(pp[te])
    cv = {m: {"log_loss": log_loss(yy, q), "brier": brier_score(yy, q)} for m, q in oof.items()}
    chosen = "platt" if cv["platt"]["log_loss"] <= cv["isotonic"]["log_loss"] else "isotonic"
    measurement = {"criterion": "cross-validated log loss", "n_splits": k, "n": int(pp.size), "chosen": chosen,
                   "cv": cv, "raw": {"log_loss": log_loss(yy, pp), "brier": brier_score(yy, pp)}}
    return _METHODS[chosen]().fit(pp, yy), measurement
