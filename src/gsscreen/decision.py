"""From the ensemble's raw P(GS) to the number and the call a clinician sees: calibration and operating points.

At export (:func:`decision_section`) the pooled out-of-fold **validation** predictions of the study — each photo
scored by the one fold model that never trained on it — are used to

1. fit a calibration map (Platt or isotonic, chosen by cross-validated log loss on those predictions, see
   :func:`gsscreen.evaluation.calibration.choose_calibrator`), so P(GS) is a probability *at the training
   prevalence*;
2. choose operating points on the calibrated validation predictions: ``balanced`` (Youden's J) and ``screening``
   (the highest threshold whose validation sensitivity is ≥ 0.95), each stored with its validation sensitivity and
   specificity;
3. measure, on the pooled **test** predictions (never used for any choice), the Brier score and calibration
   intercept/slope before and after the map, for the model card.

At screening time (:class:`DecisionRule`) the pack's map turns the fold models' raw P(GS) into P(GS): packs from
this version apply it to **each fold model's** P(GS) and average the calibrated values (:data:`PER_FOLD`), because
the map was fitted on single fold models' outputs — the mean of five raw outputs is a less extreme number the map
never saw (one fold at 0.08 and four at 0.00 average to 0.017, which the map then reads as a single model's 0.017);
older packs apply it to the raw ensemble mean. The call is ``P(GS) ≥ threshold`` of the chosen operating point (both
on the calibrated scale). An optional clinic prevalence
moves P(GS) *and* the threshold by the same Bayes odds shift, so the call — whose sensitivity and specificity do
not depend on prevalence — stays the same while the displayed probability fits the clinic's population.

Packs exported before this existed hold one threshold and no map: they load as one operating point ``pack`` with
uncalibrated P(GS) (and refuse a prevalence, which would be meaningless on uncalibrated scores).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gsscreen.errors import GsscreenError
from gsscreen.evaluation.calibration import (
    Calibrator,
    _logit,
    _sigmoid,
    adjust_for_prevalence,
    brier_score,
    calibration_intercept_slope,
    calibrator_from_dict,
    choose_calibrator,
    reliability_table,
)

BALANCED = "balanced"
SCREENING = "screening"
LEGACY = "pack"
#: validation sensitivity the ``screening`` operating point must reach
SCREENING_SENSITIVITY = 0.95
#: the default operating point of a new pack (why: :data:`DEFAULT_WHY`)
DEFAULT_OPERATING_POINT = SCREENING
DEFAULT_WHY = (
    "The tool is a screen whose positive result only prompts a referral to a clinical geneticist, who then "
    "decides; a missed syndrome delays diagnosis and care, while a false referral costs one specialist visit. "
    "So the default is the operating point that keeps validation sensitivity at or above 95 %, accepting the "
    "lower specificity shown above; choose `balanced` (`--operating-point balanced`) where referrals are scarce.")
RULES = {BALANCED: "youden", SCREENING: f"sensitivity@{SCREENING_SENSITIVITY}"}
#: A call needs P(GS) at least this far from the threshold on the logit scale; closer, a second reading of the same
#: photo (the face found again a pixel or two away and cropped again) can land on the other side, and the result is
#: "inconclusive" (reason ``borderline``). Measured by ``benchmarks/bench_call_stability.py`` on 35 held-out photos
#: with P(GS) in [0.02, 0.98], each re-read from two turned copies: |Δ logit| median 0.085, 99th percentile 0.727;
#: two readings on opposite sides of a band of half-width m differ by at least 2 m, so m = 0.727 / 2. At a
#: threshold of 0.5 the band is P(GS) 0.41–0.59. A pack records the value it was exported with (``model.json``
#: ``borderline_logit``), older packs use this one. The logit scale makes the margin independent of a clinic
#: prevalence (the odds shift moves P(GS) and the threshold alike).
BORDERLINE_LOGIT = 0.36
#: ``calibration.applied_to`` of a pack whose map is applied to each fold model's P(GS) before averaging (the
#: setting the map was fitted in); packs without it apply the map to the raw ensemble mean
PER_FOLD = "each fold model"


class DecisionError(GsscreenError, ValueError):
    """An operating point or prevalence that this model pack cannot use; the message says why in plain words."""


@dataclass(frozen=True)
class OperatingPoint:
    """One decision threshold on calibrated P(GS) and what it did on the validation photos (fractions 0–1)."""

    name: str
    threshold: float
    sensitivity: float | None
    specificity: float | None
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "sensitivity": self.sensitivity, "specificity": self.specificity,
                "rule": self.rule}


# ------------------------------------------------------------------------------------------------------ export


def pooled_predictions(fold_dirs: Sequence[Path], subset: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(y, p)`` of every fold's ``predictions.csv`` rows of ``subset`` (``val`` / ``test``), pooled; None when a
    fold lacks the file or the pool lacks a class."""
    import pandas as pd

    from gsscreen.training import run_folder as rf

    parts = []
    for d in fold_dirs:
        f = Path(d) / rf.FOLD_PREDICTIONS
        if not f.is_file():
            return None
        df = pd.read_csv(f)
        parts.append(df[df["set"] == subset])
    if not parts:
        return None
    pool = pd.concat(parts, ignore_index=True)
    y, p = pool["y"].to_numpy(int), np.clip(pool["p_gs"].to_numpy(float), 0.0, 1.0)
    if not 0 < y.sum() < len(y):
        return None
    return y, p


def _point(name: str, y: np.ndarray, p: np.ndarray) -> OperatingPoint:
    from gsscreen.evaluation.metrics import binary_metrics, choose_threshold

    t = float(choose_threshold(y, p, RULES[name]))
    m = binary_metrics(y, p, t)
    return OperatingPoint(name, t, float(m["recall"]), float(m["specificity"]), RULES[name])


def _measures(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    fit = calibration_intercept_slope(y, p)
    table = reliability_table(y, p, n_bins=10, strategy="quantile")
    return {"brier": brier_score(y, p), **fit.to_dict(),
            "reliability": [{k: (int(v) if k in ("bin", "n", "n_gs") else round(float(v), 4)) for k, v in r.items()}
                            for r in table.to_dict("records")]}


def decision_section(fold_dirs: Sequence[Path], default: str = DEFAULT_OPERATING_POINT) -> dict[str, Any] | None:
    """The ``model.json`` entries for calibration and operating points from a study's kept fold folders.

    Returns ``{"calibration": {...}, "operating_points": {...}, "default_operating_point": str, "threshold":
    float}`` or None when the folds lack pooled validation predictions of both classes (the pack then keeps the
    study's single threshold, uncalibrated).
    """
    if default not in RULES:
        raise DecisionError(f"unknown operating point {default!r}; choose {' or '.join(RULES)}")
    val = pooled_predictions(fold_dirs, "val")
    if val is None:
        return None
    y, p = val
    cal, measurement = choose_calibrator(p, y)
    pc = cal.predict(p)
    points = {name: _point(name, y, pc) for name in RULES}
    if points[SCREENING].threshold > points[BALANCED].threshold:
        # Where Youden's point already reaches the sensitivity target, the highest threshold that still reaches it
        # lies above Youden's and trades sensitivity for specificity: the opposite of what a screening point is
        # for. The screening point is then Youden's threshold (sensitivity never below the balanced point's).
        b = points[BALANCED]
        points[SCREENING] = OperatingPoint(SCREENING, b.threshold, b.sensitivity, b.specificity,
                                           f"{RULES[SCREENING]}, at most the {RULES[BALANCED]} threshold")
    calibration: dict[str, Any] = {
        "map": cal.to_dict(),
        "train_prevalence": float(y.mean()),
        "fitted_on": "pooled out-of-fold validation predictions (each photo scored by the fold model that did "
                     "not train on it)",
        "n_validation": int(y.size),
        "selection": measurement,
        "applied_to": PER_FOLD,
    }
    test = pooled_predictions(fold_dirs, "test")
    if test is not None:
        yt, pt = test
        calibration["heldout"] = {
            "what": "pooled test predictions of the fold models (each photo scored by the fold model whose test "
                    "subset it was; never used to fit or choose anything)",
            "n": int(yt.size), "n_gs": int(yt.sum()),
            "before": _measures(yt, pt), "after": _measures(yt, cal.predict(pt)),
        }
    return {"calibration": calibration, "operating_points": {k: v.to_dict() for k, v in points.items()},
            "default_operating_point": default, "threshold": points[default].threshold,
            "threshold_scale": "calibrated", "borderline_logit": BORDERLINE_LOGIT}


def heldout_curves(fold_dirs: Sequence[Path], info: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"before calibration": (y, p), "after calibration": (y, p')}`` on the pooled test predictions (for the
    reliability diagram); empty when the pack is not calibrated or the folds lack test predictions."""
    cal = (info.get("calibration") or {}).get("map")
    test = pooled_predictions(fold_dirs, "test")
    if not cal or test is None:
        return {}
    y, p = test
    return {"before calibration": (y, p), "after calibration": (y, calibrator_from_dict(cal).predict(p))}


# ------------------------------------------------------------------------------------------------------ screening


class DecisionRule:
    """The pack's calibration map and operating points, with the user's choice of point and prevalence.

    ``probability(raw)`` → P(GS) shown to the user (calibrated, then adjusted to ``prevalence`` when given);
    ``threshold`` is the active operating point's threshold on the same scale, so ``P(GS) ≥ threshold`` is the
    call. Build with :meth:`from_info`.
    """

    def __init__(self, calibrator: Calibrator | None, train_prevalence: float | None,
                 points: dict[str, OperatingPoint], default: str, operating_point: str | None = None,
                 prevalence: float | None = None, per_fold: bool = False,
                 borderline_logit: float = BORDERLINE_LOGIT) -> None:
        if not (isinstance(borderline_logit, (int, float)) and 0.0 <= float(borderline_logit) < 10.0):
            raise DecisionError("the model's borderline margin must be a number from 0 to 10, "
                                f"got {borderline_logit!r}")
        self.borderline_logit = float(borderline_logit)
        self.calibrator = calibrator
        self.per_fold = bool(per_fold and calibrator is not None)
        self.train_prevalence = train_prevalence
        self.points = points
        self.default = default
        name = operating_point or default
        if name not in points:
            raise DecisionError(f"this model has no operating point {name!r}; it has: {', '.join(points)}")
        self.operating_point = points[name]
        if prevalence is not None:
            if not (isinstance(prevalence, (int, float)) and 0.0 < float(prevalence) < 1.0):
                raise DecisionError(f"the prevalence must be a fraction between 0 and 1 (e.g. 0.01 for 1 in 100), "
                                    f"got {prevalence}")
            if calibrator is None or not train_prevalence:
                raise DecisionError("this model's P(GS) is not calibrated, so it cannot be adjusted to a "
                                    "prevalence: re-export the model with this version of gsscreen")
        self.prevalence = None if prevalence is None else float(prevalence)

    @classmethod
    def from_info(cls, info: dict[str, Any], operating_point: str | None = None,
                  prevalence: float | None = None) -> DecisionRule:
        """From a pack's ``model.json``; older packs (one threshold, no map) become one point named ``pack``."""
        ops = info.get("operating_points") or {}
        cal = info.get("calibration") or {}
        if not ops:
            pt = OperatingPoint(LEGACY, float(info["threshold"]), None, None,
                                str(info.get("threshold_method") or info.get("threshold_rule") or ""))
            return cls(None, None, {LEGACY: pt}, LEGACY, operating_point, prevalence,
                       borderline_logit=info.get("borderline_logit", BORDERLINE_LOGIT))
        points = {k: OperatingPoint(k, float(v["threshold"]), v.get("sensitivity"), v.get("specificity"),
                                    str(v.get("rule", ""))) for k, v in ops.items()}
        calibrator = calibrator_from_dict(cal["map"]) if cal.get("map") else None
        default = str(info.get("default_operating_point") or next(iter(points)))
        return cls(calibrator, cal.get("train_prevalence"), points, default, operating_point, prevalence,
                   per_fold=cal.get("applied_to") == PER_FOLD,
                   borderline_logit=info.get("borderline_logit", BORDERLINE_LOGIT))

    @property
    def calibrated(self) -> bool:
        return self.calibrator is not None

    def _shift(self, p: np.ndarray) -> np.ndarray:
        if self.prevalence is None or self.train_prevalence is None:
            return p
        return adjust_for_prevalence(p, float(self.train_prevalence), self.prevalence)

    def probability(self, raw: float) -> float:
        """P(GS) to show for the ensemble's raw mean P(GS) ``raw`` (0–1)."""
        p = np.asarray([min(max(float(raw), 0.0), 1.0)])
        if self.calibrator is not None:
            p = self.calibrator.predict(p)
        return float(self._shift(p)[0])

    def ensemble_probability(self, fold_p: Sequence[float] | np.ndarray) -> float:
        """P(GS) to show for the fold models' raw P(GS) ``fold_p`` ``(K,)`` (0–1): the mean of the calibrated
        fold values for a per-fold pack (:data:`PER_FOLD`), else :meth:`probability` of their mean."""
        f = np.clip(np.asarray(fold_p, dtype=np.float64).reshape(-1), 0.0, 1.0)
        if f.size == 0 or not np.all(np.isfinite(f)):
            raise ValueError(f"fold P(GS) must be a non-empty list of numbers in [0, 1], got {fold_p!r}")
        if not self.per_fold or self.calibrator is None:
            return self.probability(float(f.mean()))
        return float(self._shift(np.asarray([float(self.calibrator.predict(f).mean())]))[0])

    @property
    def threshold(self) -> float:
        """The active operating point's threshold on the scale of :meth:`probability`."""
        return float(self._shift(np.asarray([self.operating_point.threshold]))[0])

    def borderline(self, p_gs: float) -> bool:
        """Whether P(GS) ``p_gs`` (the scale of :meth:`probability`) lies within :data:`BORDERLINE_LOGIT` (this
        pack's value) of the threshold on the logit scale: too close for a call a second reading would keep."""
        z = _logit(np.asarray([float(p_gs), self.threshold]))
        return bool(abs(float(z[0] - z[1])) < self.borderline_logit)

    def borderline_band(self) -> tuple[float, float]:
        """The P(GS) interval ``(low, high)`` around the threshold that :meth:`borderline` leaves without a call."""
        z = float(_logit(np.asarray([self.threshold]))[0])
        lo, hi = _sigmoid(np.asarray([z - self.borderline_logit, z + self.borderline_logit]))
        return float(lo), float(hi)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for ``/api/model``, ``results.json`` and the page."""
        return {
            "operating_point": self.operating_point.name,
            "default_operating_point": self.default,
            "operating_points": {k: v.to_dict() for k, v in self.points.items()},
            "threshold": self.threshold,
            "calibrated": self.calibrated,
            "calibration_method": getattr(self.calibrator, "method", None),
            "calibration_applied_to": (PER_FOLD if self.per_fold else "ensemble mean") if self.calibrated else None,
            "train_prevalence": self.train_prevalence,
            "prevalence": self.prevalence,
            "borderline_logit": self.borderline_logit,
            "borderline_band": list(self.borderline_band()),
        }


# ------------------------------------------------------------------------------------------------------ model card


def _f(v: Any, nd: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _ci(lo_hi: Any) -> str:
    return f"({_f(lo_hi[0], 2)} to {_f(lo_hi[1], 2)})" if isinstance(lo_hi, (list, tuple)) and len(lo_hi) == 2 else ""


def card_section(info: dict[str, Any], figure: str | None = None) -> list[str]:
    """The model card's "Calibration and operating points" lines (empty list for an uncalibrated pack)."""
    cal, ops = info.get("calibration") or {}, info.get("operating_points") or {}
    if not cal or not ops:
        return []
    sel = cal.get("selection") or {}
    cv = sel.get("cv") or {}
    raw = sel.get("raw") or {}
    prev = cal.get("train_prevalence")
    lines = [
        "## Calibration: what P(GS) means",
        "",
        f"P(GS) is **calibrated at the training prevalence ({100 * prev:.1f} % GS)**: among many photos like the "
        "training photos with P(GS) ≈ 0.8, about 80 % were GS. In a clinic where syndromes are rarer, give its "
        "prevalence (`--prevalence 0.02` on `screen` / `serve`) and P(GS) is moved by Bayes' rule; the call does not "
        "change.",
        "",
        f"- Map: **{sel.get('chosen', cal['map'].get('method'))}**, fitted on {cal.get('n_validation')} "
        f"{cal.get('fitted_on')}.",
        f"- Chosen by {sel.get('criterion', 'cross-validated log loss')} ({sel.get('n_splits')}-fold, on those "
        "validation predictions; lower is better; log loss punishes a confident wrong 0.00 or 1.00 most):",
        "",
        "| map | log loss | Brier |",
        "|---|---|---|",
        f"| none (raw) | {_f(raw.get('log_loss'), 4)} | {_f(raw.get('brier'), 4)} |",
        *(f"| {m} | {_f(v.get('log_loss'), 4)} | {_f(v.get('brier'), 4)} |" for m, v in cv.items()),
        "",
        ("- The map was fitted on single fold models' predictions, so it is applied to each fold model's P(GS) and "
         "the calibrated values are averaged: check calibration again on an external cohort."
         if cal.get("applied_to") == PER_FOLD else
         "- The map was fitted on single fold models' predictions and is applied to the ensemble mean, which is "
         "usually a little less extreme: check calibration again on an external cohort."),
        "",
    ]
    ho = cal.get("heldout")
    if ho:
        b, a = ho["before"], ho["after"]
        lines += [
            f"### On held-out photos ({ho['n']} test photos, {ho['n_gs']} GS)",
            "",
            f"{ho['what'][0].upper()}{ho['what'][1:]}.",
            "",
            "| | Brier | calibration intercept (95 % CI) | calibration slope (95 % CI) |",
            "|---|---|---|---|",
            f"| before calibration | {_f(b['brier'], 4)} | {_f(b['intercept'], 2)} {_ci(b['intercept_ci'])} | "
            f"{_f(b['slope'], 2)} {_ci(b['slope_ci'])} |",
            f"| after calibration | {_f(a['brier'], 4)} | {_f(a['intercept'], 2)} {_ci(a['intercept_ci'])} | "
            f"{_f(a['slope'], 2)} {_ci(a['slope_ci'])} |",
            "",
            "Perfect calibration: intercept 0, slope 1 (a slope below 1 means the scores are too extreme).",
            "",
        ]
        if figure:
            lines += [f"![Reliability diagram before and after calibration]({figure})", ""]
        lines += ["Reliability after calibration (equal-count bins):", "",
                  "| mean P(GS) | observed GS | photos | 95 % CI |", "|---|---|---|---|"]
        lines += [f"| {r['mean_p']:.3f} | {r['observed']:.3f} | {r['n']} | {r['ci_low']:.2f}–{r['ci_high']:.2f} |"
                  for r in a["reliability"]]
        lines.append("")
    default = info.get("default_operating_point")
    lines += [
        "## Operating points",
        "",
        "Chosen on the calibrated pooled validation predictions; sensitivity and specificity are those on the "
        "validation photos.",
        "",
        "| operating point | rule | threshold on P(GS) | sensitivity | specificity |",
        "|---|---|---|---|---|",
        *(f"| {k}{' (default)' if k == default else ''} | {v.get('rule')} | {_f(v.get('threshold'), 4)} | "
          f"{_f(v.get('sensitivity'))} | {_f(v.get('specificity'))} |" for k, v in ops.items()),
        "",
        f"**Default: `{default}`.** " + (DEFAULT_WHY if default == SCREENING else
                                         "Chosen at export (`gsscreen export --operating-point`)."),
        "Every result names the operating point that made its call.",
        "",
    ]
    return lines


__all__ = [
    "BALANCED",
    "BORDERLINE_LOGIT",
    "DEFAULT_OPERATING_POINT",
    "LEGACY",
    "PER_FOLD",
    "SCREENING",
    "DecisionError",
    "DecisionRule",
    "OperatingPoint",
    "card_section",
    "decision_section",
    "heldout_curves",
    "pooled_predictions",
]
