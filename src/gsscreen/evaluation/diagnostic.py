"""Diagnostic accuracy as a journal asks for it (STARD / TRIPOD+AI): every number with a 95 % CI.

Inputs are one row per photo: ``y`` ``(n,)`` 0/1 (1 = GS), ``p`` ``(n,)`` P(GS) in [0, 1], ``call`` ``(n,)`` 0/1 (the
model's decision at its threshold) and ``clusters`` ``(n,)`` (the child, or likely-same-child group, each photo
belongs to: photos of one child are not independent, so the bootstrap resamples whole clusters).

- Proportions at the operating point (sensitivity, specificity, accuracy, PPV, NPV in the sample): Wilson score
  intervals (as ``statsmodels.stats.proportion.proportion_confint(method="wilson")``).
- AUC, F1, Brier, sensitivity at a fixed specificity and specificity at a fixed sensitivity, PPV / NPV at a
  prevalence the user gives: percentile intervals of a cluster bootstrap (clusters drawn with replacement within
  each class's majority, so every replicate has both classes).
- :func:`decision_curve`: net benefit of screening with the model against treat-all / treat-none.
- :func:`subgroup_table`: recall / specificity with Wilson CIs per level of any cohort column, flagged when a
  level has too few photos to say anything.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from gsscreen.evaluation.calibration import brier_score, wilson_interval
from gsscreen.evaluation.metrics import auc_mann_whitney, check_labels_scores
from gsscreen.evaluation.roc import sensitivity_at_specificity

FIXED_POINTS = (0.90, 0.95)
MIN_SUBGROUP_N = 10  # fewer GS (or control) photos than this in a subgroup: its rate is not interpreted


def wilson(k: int, n: int, alpha: float = 0.05) -> dict[str, float | int]:
    """``{"estimate", "lo", "hi", "k", "n"}``: k of n with its Wilson score interval (NaN when n = 0)."""
    if n == 0:
        return {"estimate": math.nan, "lo": math.nan, "hi": math.nan, "k": 0, "n": 0}
    lo, hi = wilson_interval(k, n, alpha)
    return {"estimate": k / n, "lo": float(lo), "hi": float(hi), "k": int(k), "n": int(n)}


def specificity_at_sensitivity(y: ArrayLike, p: ArrayLike, sensitivities: ArrayLike) -> np.ndarray:
    """Specificity of the empirical ROC at each sensitivity ``(S,)``: the mirror image of
    :func:`gsscreen.evaluation.roc.sensitivity_at_specificity` (controls as the positive class, scores negated)."""
    yy, s = check_labels_scores(y, p, score_name="p")
    return sensitivity_at_specificity(1 - yy, -s, sensitivities)


def predictive_values(sensitivity: ArrayLike, specificity: ArrayLike, prevalence: float) -> tuple[Any, Any]:
    """PPV and NPV at ``prevalence`` (Bayes' rule): ``PPV = se·π / (se·π + (1 − sp)(1 − π))``, likewise NPV."""
    if not 0 < prevalence < 1:
        raise ValueError(f"prevalence={prevalence}: must be between 0 and 1 (exclusive)")
    se, sp = np.asarray(sensitivity, float), np.asarray(specificity, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ppv = se * prevalence / (se * prevalence + (1 - sp) * (1 - prevalence))
        npv = sp * (1 - prevalence) / (sp * (1 - prevalence) + (1 - se) * prevalence)
    return ppv, npv


def cluster_bootstrap_indices(clusters: ArrayLike, y: ArrayLike, n_boot: int, seed: int = 0) -> list[np.ndarray]:
    """``n_boot`` resamples (photo index arrays) drawing whole clusters with replacement.

    Clusters are drawn separately among those whose photos are mostly GS and those mostly control (a stratified
    cluster bootstrap), so each replicate keeps the sample's mix of cases and controls.
    """
    c = pd.factorize(pd.Series(np.asarray(clusters)).astype(str))[0]
    yy = np.asarray(y, int)
    members = pd.Series(np.arange(len(c))).groupby(c).apply(np.asarray).to_dict()
    frac_gs = pd.Series(yy).groupby(c).mean()
    strata = [np.asarray(frac_gs.index[frac_gs >= 0.5]), np.asarray(frac_gs.index[frac_gs < 0.5])]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n_boot)):
        parts = []
        for st in strata:
            if len(st):
                parts.extend(members[k] for k in rng.choice(st, size=len(st), replace=True))
        out.append(np.concatenate(parts))
    return out


def _percentile(vals: Sequence[float], alpha: float = 0.05) -> tuple[float, float]:
    v = np.asarray([x for x in vals if np.isfinite(x)], float)
    if v.size < 10:
        return math.nan, math.nan
    return float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))


def _f1(y: np.ndarray, c: np.ndarray) -> float:
    tp = float(((c == 1) & (y == 1)).sum())
    den = float((c == 1).sum() + (y == 1).sum())
    return 2 * tp / den if den else math.nan


def diagnostic_summary(
    y: ArrayLike,
    p: ArrayLike,
    call: ArrayLike,
    clusters: ArrayLike | None = None,
    prevalence: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    points: Sequence[float] = FIXED_POINTS,
) -> dict[str, Any]:
    """Every accuracy measure with its 95 % CI.

    Args:
        y: ``(n,)`` 0/1 truth (1 = GS). p: ``(n,)`` P(GS). call: ``(n,)`` 0/1 decisions at the model's threshold.
        clusters: ``(n,)`` child / group per photo (default: every photo its own).
        prevalence: the GS prevalence of the population the model is meant for: adds PPV / NPV there.
        n_boot: bootstrap replicates; seed: their seed.
        points: the fixed specificities (and sensitivities) to read the ROC at.

    Returns:
        ``{"n", "n_gs", "n_control", "n_clusters", "metrics": {name: {"estimate", "lo", "hi", "method"[, "k",
        "n"]}}, "prevalence"}``; names: ``sensitivity, specificity, accuracy, ppv, npv`` (in the sample; Wilson),
        ``auc, f1, brier`` and ``sensitivity@spec0.90`` … ``specificity@sens0.95``, and with ``prevalence``
        ``ppv@prevalence, npv@prevalence`` (cluster bootstrap).
    """
    yy, pp = check_labels_scores(y, p, score_name="p")
    cc = np.asarray(call, int)
    if cc.shape != yy.shape:
        raise ValueError(f"call has shape {cc.shape}, expected {yy.shape}")
    cl = np.arange(len(yy)) if clusters is None else np.asarray(clusters)
    tp = int(((cc == 1) & (yy == 1)).sum())
    fp = int(((cc == 1) & (yy == 0)).sum())
    tn = int(((cc == 0) & (yy == 0)).sum())
    fn = int(((cc == 0) & (yy == 1)).sum())
    m: dict[str, dict[str, Any]] = {
        "sensitivity": wilson(tp, tp + fn), "specificity": wilson(tn, tn + fp),
        "accuracy": wilson(tp + tn, len(yy)), "ppv": wilson(tp, tp + fp), "npv": wilson(tn, tn + fn),
    }
    for v in m.values():
        v["method"] = "Wilson"
    both = 0 < yy.sum() < len(yy)

    def stats(idx: np.ndarray) -> dict[str, float]:
        ys, ps, cs = yy[idx], pp[idx], cc[idx]
        out = {"f1": _f1(ys, cs), "brier": brier_score(ys, ps)}
        if 0 < ys.sum() < len(ys):
            out["auc"] = auc_mann_whitney(ys, ps)
            for x in points:
                out[f"sensitivity@spec{x:.2f}"] = float(sensitivity_at_specificity(ys, ps, [x])[0])
                out[f"specificity@sens{x:.2f}"] = float(specificity_at_sensitivity(ys, ps, [x])[0])
            if prevalence is not None:
                se = ((cs == 1) & (ys == 1)).sum() / max(1, ys.sum())
                sp = ((cs == 0) & (ys == 0)).sum() / max(1, (1 - ys).sum())
                ppv, npv = predictive_values(se, sp, prevalence)
                out["ppv@prevalence"], out["npv@prevalence"] = float(ppv), float(npv)
        return out

    full = stats(np.arange(len(yy)))
    reps = [stats(idx) for idx in cluster_bootstrap_indices(cl, yy, n_boot, seed)] if both and n_boot else []
    for name, est in full.items():
        lo, hi = _percentile([r.get(name, math.nan) for r in reps])
        m[name] = {"estimate": est, "lo": lo, "hi": hi, "method": "cluster bootstrap" if reps else "—"}
    return {"n": len(yy), "n_gs": int(yy.sum()), "n_control": int(len(yy) - yy.sum()),
            "n_clusters": len(np.unique(cl.astype(str))), "n_boot": len(reps), "prevalence": prevalence,
            "metrics": m}


def decision_curve(y: ArrayLike, p: ArrayLike, thresholds: ArrayLike | None = None,
                   prevalence: float | None = None) -> pd.DataFrame:
    """Net benefit of acting on P(GS) ≥ t (Vickers & Elkin 2006) against treating everyone and no one.

    ``net benefit = TP/n − FP/n · t / (1 − t)``; with ``prevalence`` π (a population other than the sample's):
    ``se·π − (1 − sp)(1 − π) · t / (1 − t)``. Treat-all: ``π − (1 − π) · t / (1 − t)``; treat-none: 0.

    Returns a DataFrame with ``threshold, model, treat_all, treat_none`` (thresholds default 0.01 … 0.99).
    """
    yy, pp = check_labels_scores(y, p, score_name="p")
    t = np.arange(0.01, 1.0, 0.01) if thresholds is None else np.asarray(thresholds, float)
    if np.any((t <= 0) | (t >= 1)):
        raise ValueError("decision-curve thresholds must lie strictly between 0 and 1")
    n, n1 = len(yy), int(yy.sum())
    pi = n1 / n if prevalence is None else float(prevalence)
    odds = t / (1 - t)
    model = []
    for ti, o in zip(t, odds, strict=True):
        pos = pp >= ti
        se = (pos & (yy == 1)).sum() / max(1, n1)
        fpr = (pos & (yy == 0)).sum() / max(1, n - n1)
        model.append(se * pi - fpr * (1 - pi) * o)
    return pd.DataFrame({"threshold": t, "model": model, "treat_all": pi - (1 - pi) * odds,
                         "treat_none": np.zeros_like(t)})


def age_bands(age_months: ArrayLike, edges_years: Sequence[float] = (0, 2, 5, 10, 18)) -> pd.Series:
    """Age bands as text (``"0–2 y"``, …, ``"≥ 18 y"``; NA where the age is missing), from ages in months."""
    a = pd.to_numeric(pd.Series(np.asarray(age_months)), errors="coerce") / 12.0
    labels = [f"{lo:g}–{hi:g} y" for lo, hi in itertools.pairwise(edges_years)]
    bands = pd.cut(a, [*list(edges_years), np.inf], right=False, labels=[*labels, f"≥ {edges_years[-1]:g} y"])
    return bands.astype("string")


def subgroup_table(frame: pd.DataFrame, column: str, min_n: int = MIN_SUBGROUP_N) -> pd.DataFrame:
    """Recall and specificity per level of ``column``, each with its Wilson CI.

    ``frame``: one row per photo with ``y`` (0/1), ``call`` (0/1) and ``column``; rows where ``column`` is missing
    form the level ``(not given)``. Returns ``level, n, n_gs, recall, recall_lo, recall_hi, n_control,
    specificity, spec_lo, spec_hi, warning`` (a warning where a class has fewer than ``min_n`` photos).
    """
    if column not in frame.columns:
        raise KeyError(f"no column {column!r} (columns: {', '.join(map(str, frame.columns))})")
    lev = frame[column].astype("string").fillna("(not given)")
    rows = []
    for level, g in frame.groupby(lev, sort=True):
        y, c = g["y"].to_numpy(int), g["call"].to_numpy(int)
        r = wilson(int(((c == 1) & (y == 1)).sum()), int((y == 1).sum()))
        s = wilson(int(((c == 0) & (y == 0)).sum()), int((y == 0).sum()))
        few = [f"{int(x['n'])} {name}" for x, name in ((r, "GS"), (s, "control")) if 0 < x["n"] < min_n]
        rows.append({
            "level": str(level), "n": len(g), "n_gs": r["n"], "recall": r["estimate"], "recall_lo": r["lo"],
            "recall_hi": r["hi"], "n_control": s["n"], "specificity": s["estimate"], "spec_lo": s["lo"],
            "spec_hi": s["hi"],
            "warning": f"too few to interpret ({', '.join(few)} < {min_n})" if few else "",
        })
    return pd.DataFrame(rows)
