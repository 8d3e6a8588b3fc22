"""Binary classification metrics for GS-vs-control screening.

Conventions (shared by :mod:`gsscreen.evaluation.roc` and :mod:`gsscreen.evaluation.readers`):

* ``y_true``: ``(n,)`` integers, ``1`` = GS (genetic syndrome, the positive class), ``0`` = control.
* ``p_gs``: ``(n,)`` finite floats, the model's P(GS) (any score where larger means "more GS-like" works).
* A photo is called GS when ``p_gs >= threshold``.
* Undefined ratios (e.g. precision when nothing is called GS) are ``nan``, never a silent 0, so fold
  summaries can tell "no data" from "all wrong".

The AUC is the Mann–Whitney statistic: the probability that a random GS photo scores higher than a random
control, ties counting ½. It equals the area under the empirical ROC curve (trapezoidal rule).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "auc_mann_whitney",
    "binary_metrics",
    "check_labels",
    "check_labels_scores",
    "check_scores",
    "choose_threshold",
    "confusion_matrix",
    "metrics_from_counts",
    "midrank",
    "summarize_folds",
    "threshold_candidates",
]


# --------------------------------------------------------------------------------------------------- validation


def check_labels(y_true: ArrayLike, name: str = "y_true") -> np.ndarray:
    """Return ``y_true`` as a 1-D int8 array of 0/1, raising ``ValueError`` on anything else."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,), got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{name} is empty")
    if y.dtype == bool:
        return y.astype(np.int8)
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"{name} must hold 1 (GS) / 0 (control) numbers, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating) and np.isnan(y).any():
        raise ValueError(f"{name} contains NaN at index {int(np.flatnonzero(np.isnan(y))[0])}")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must contain only 0 (control) and 1 (GS); found {y[i].item()!r} at index {i}")
    return y.astype(np.int8)


def check_scores(p: ArrayLike, n: int, name: str = "p_gs") -> np.ndarray:
    """Return ``p`` as a 1-D float64 array of length ``n`` with finite values, else ``ValueError``."""
    s = np.asarray(p)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,), got shape {s.shape}")
    if s.shape[0] != n:
        raise ValueError(f"{name} has {s.shape[0]} values but y_true has {n}")
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite; found {s[i].item()!r} at index {i} ({int(bad.sum())} bad value(s))")
    return s


def check_labels_scores(
    y_true: ArrayLike, p_gs: ArrayLike, *, need_both: bool = True, score_name: str = "p_gs"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (labels, scores) pair; with ``need_both`` both GS and control must be present."""
    y = check_labels(y_true)
    s = check_scores(p_gs, y.shape[0], score_name)
    if need_both:
        n1 = int(y.sum())
        if n1 == 0 or n1 == y.shape[0]:
            missing = "GS (1)" if n1 == 0 else "control (0)"
            raise ValueError(f"y_true has no {missing} examples; this statistic needs both classes")
    return y, s


# --------------------------------------------------------------------------------------------------- AUC


def midrank(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given the average of the ranks they span (``(n,)`` float64)."""
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    return (last - (counts - 1) / 2.0)[inv.ravel()]


def auc_mann_whitney(y_true: ArrayLike, p_gs: ArrayLike) -> float:
    """AUC = P(score of a GS photo > score of a control) + ½ P(tie), from midranks in O(n log n)."""
    y, s = check_labels_scores(y_true, p_gs)
    n1 = int(y.sum())
    n0 = y.shape[0] - n1
    r = midrank(s)
    # Rank-sum of the positives minus its minimum possible value = number of (pos, neg) pairs won (+½ ties).
    u = float(r[y == 1].sum()) - n1 * (n1 + 1) / 2.0
    return u / (n1 * n0)


# --------------------------------------------------------------------------------------------------- confusion


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """2×2 counts ``[[tn, fp], [fn, tp]]`` (rows = truth control/GS, columns = call control/GS).

    This is ``sklearn.metrics.confusion_matrix(y_true, y_pred, labels=[0, 1])`` after the labels are checked.
    """
    from sklearn.metrics import confusion_matrix as sk_confusion

    y = check_labels(y_true)
    c = check_labels(y_pred, "y_pred")
    if c.shape != y.shape:
        raise ValueError(f"y_pred has {c.shape[0]} values but y_true has {y.shape[0]}")
    return sk_confusion(y, c, labels=[0, 1]).astype(np.int64)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


def metrics_from_counts(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """Accuracy, recall (= sensitivity), specificity, precision and F1 from confusion counts (nan if undefined)."""
    return {
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        # 2TP / (2TP + FP + FN) is F1 without dividing by a possibly-undefined precision.
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def binary_metrics(y_true: ArrayLike, p_gs: ArrayLike, threshold: float = 0.5) -> dict[str, float | int]:
    """Threshold metrics plus the AUC for one set of predictions.

    Args:
        y_true: ``(n,)`` 1 = GS, 0 = control.
        p_gs: ``(n,)`` P(GS); a photo is called GS when ``p_gs >= threshold``.
        threshold: decision threshold (choose it on validation data with :func:`choose_threshold`).

    Returns:
        ``accuracy, recall, sensitivity (= recall), specificity, precision, f1, auc`` (floats, ``nan`` where
        undefined, e.g. ``auc`` when only one class is present) and ``tp, fp, tn, fn, n, threshold``.
    """
    y, s = check_labels_scores(y_true, p_gs, need_both=False)
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    call = (s >= threshold).astype(np.int8)
    (tn, fp), (fn, tp) = confusion_matrix(y, call).tolist()
    out: dict[str, float | int] = dict(metrics_from_counts(tp, fp, tn, fn))
    out["sensitivity"] = out["recall"]
    both = 0 < int(y.sum()) < y.shape[0]
    out["auc"] = auc_mann_whitney(y, s) if both else math.nan
    out.update(tp=int(tp), fp=int(fp), tn=int(tn), fn=int(fn), n=int(y.shape[0]), threshold=float(threshold))
    return out


# --------------------------------------------------------------------------------------------------- thresholds


def threshold_candidates(p: np.ndarray) -> np.ndarray:
    """Every distinct decision rule on ``p`` as a threshold, ascending, ``(k + 1,)`` for ``k`` distinct scores.

    The first candidate is the lowest score (everything called GS); the next are midpoints between
    consecutive distinct scores (midpoints, like pROC, so the rule transfers to new data without sitting on a
    training score); the last is just above the highest score (nothing called GS).
    """
    u = np.unique(p)
    mid = u[:-1] + (u[1:] - u[:-1]) / 2.0
    # With adjacent doubles the midpoint can round down onto the lower score, which would change the rule.
    mid = np.where(mid <= u[:-1], u[1:], mid)
    return np.concatenate([u[:1], mid, [np.nextafter(u[-1], np.inf)]])


_TARGET = re.compile(r"^(sensitivity|specificity)@([0-9]*\.?[0-9]+)$")
_FIXED = re.compile(r"^fixed[_:@=]([0-9]*\.?[0-9]+)$")


def choose_threshold(y_val: ArrayLike, p_val: ArrayLike, method: str = "youden") -> float:
    """Pick the decision threshold on validation data only (never on the test fold).

    Methods:
        ``"youden"``: maximise sensitivity + specificity − 1;
        ``"accuracy"``: maximise accuracy;
        ``"f1"``: maximise F1;
        ``"sensitivity@X"`` (e.g. ``"sensitivity@0.9"``): the highest threshold whose sensitivity is ≥ X
        (so specificity is as high as possible under that constraint);
        ``"specificity@X"``: the lowest threshold whose specificity is ≥ X.
        ``"fixed_X"`` (e.g. ``"fixed_0.5"``; ``fixed:X`` also accepted): X itself, whatever the data.

    Ties between equally good thresholds go to the lowest one (the most sensitive rule), since missing a
    syndrome costs more than a referral in screening.

    Returns:
        a threshold ``t`` to use as ``p >= t`` (one of :func:`threshold_candidates` unless fixed).
    """
    m = method.strip().lower()
    fixed = _FIXED.match(m)
    hit = _TARGET.match(m)
    if fixed is None and hit is None and m not in ("youden", "accuracy", "f1"):
        raise ValueError(
            f"unknown threshold method {method!r}; use 'youden', 'accuracy', 'f1', 'sensitivity@X', "
            "'specificity@X' (X in [0, 1]) or 'fixed_X'"
        )
    if fixed is not None:
        check_labels_scores(y_val, p_val, need_both=False, score_name="p_val")
        return float(fixed.group(1))
    y, s = check_labels_scores(y_val, p_val, score_name="p_val")
    cand = threshold_candidates(s)
    # Counts of each class strictly below each candidate (= called control), vectorised via sorted search.
    neg_sorted = np.sort(s[y == 0])
    pos_sorted = np.sort(s[y == 1])
    tn = np.searchsorted(neg_sorted, cand, side="left")
    fn = np.searchsorted(pos_sorted, cand, side="left")
    n0, n1 = neg_sorted.size, pos_sorted.size
    tp = n1 - fn
    fp = n0 - tn
    se = tp / n1
    sp = tn / n0
    if m == "youden":
        score = se + sp - 1.0
    elif m == "accuracy":
        score = (tp + tn) / (n0 + n1)
    elif m == "f1":
        score = 2.0 * tp / np.maximum(2 * tp + fp + fn, 1)
    else:
        assert hit is not None  # checked above
        kind, target = hit.group(1), float(hit.group(2))
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"target in {method!r} must lie in [0, 1]")
        if kind == "sensitivity":
            ok = np.flatnonzero(se >= target - 1e-12)
            return float(cand[ok[-1]])  # se is non-increasing in the threshold; candidate 0 has se = 1
        ok = np.flatnonzero(sp >= target - 1e-12)
        return float(cand[ok[0]])  # sp is non-decreasing; the last candidate has sp = 1
    return float(cand[int(np.argmax(score))])  # argmax takes the first (lowest) of tied maxima


# --------------------------------------------------------------------------------------------------- folds


def summarize_folds(fold_metrics: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean ± sample SD (``ddof=1``, as papers report over CV folds) of each numeric metric.

    Args:
        fold_metrics: one dict per fold, e.g. from :func:`binary_metrics`. Non-numeric entries are skipped;
            a key missing from some folds is summarised over the folds that have it.

    Returns:
        ``{name: {"mean", "sd", "values", "n"}}`` where ``values`` keeps every fold's value (``None`` for
        missing/``nan``) and ``mean``/``sd`` ignore ``nan`` (``n`` = folds used; ``sd`` is ``nan`` when ``n < 2``).
    """
    if len(fold_metrics) == 0:
        raise ValueError("summarize_folds needs at least one fold's metrics")
    names: list[str] = []
    for d in fold_metrics:
        for k, v in d.items():
            numeric = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            if numeric and k not in names:
                names.append(k)
    out: dict[str, dict[str, Any]] = {}
    for k in names:
        vals = [float(d[k]) if k in d and d[k] is not None else math.nan for d in fold_metrics]
        arr = np.asarray(vals, dtype=np.float64)
        ok = arr[~np.isnan(arr)]
        out[k] = {
            "mean": float(ok.mean()) if ok.size else math.nan,
            "sd": float(ok.std(ddof=1)) if ok.size >= 2 else math.nan,
            "values": [None if math.isnan(v) else v for v in vals],
            "n": int(ok.size),
        }
    return out
