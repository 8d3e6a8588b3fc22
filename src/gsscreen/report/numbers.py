"""What the report says about the model: per-fold metrics, the pooled ROC with its band and AUC CIs, and the
pooled confusion matrix, from a run's predictions.csv and (where present) metrics.json."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gsscreen.report import figures as F
from gsscreen.report.run import RunData, finite


@dataclass
class ModelNumbers:
    """What the report shows about the model, from predictions.csv and (where present) metrics.json."""

    per_fold: list[dict[str, Any]]
    summary: dict[str, dict[str, Any]]
    pooled_fpr: np.ndarray
    pooled_tpr: np.ndarray
    auc: float
    auc_ci_delong: tuple[float, float] | None
    auc_ci_bootstrap: tuple[float, float] | None
    band: Any  # gsscreen.evaluation.roc.RocBand
    band_from: str  # "metrics.json" or "recomputed"
    confusion: np.ndarray  # (2, 2) [[tn, fp], [fn, tp]]
    fold_curves: list[F.FoldCurve]


def find_key(obj: Any, want: Iterable[str]) -> Any:
    """The first value (depth-first) whose key contains one of ``want`` (case-insensitive)."""
    want = tuple(w.lower() for w in want)
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if any(w in str(k).lower() for w in want):
                return v
        for v in obj.values():
            hit = find_key(v, want)
            if hit is not None:
                return hit
    return None


def _find_pooled(metrics: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The model's pooled-ROC summary in metrics.json (``model.pooled_roc``, as written by
    :func:`gsscreen.evaluation.roc.pooled_roc_summary`), else the first dict holding ``band`` and ``auc`` outside
    the baseline's part."""
    model = metrics.get("model") if isinstance(metrics, Mapping) else None
    if isinstance(model, Mapping) and isinstance(model.get("pooled_roc"), Mapping):
        return model["pooled_roc"]
    if isinstance(metrics, Mapping):
        metrics = {k: v for k, v in metrics.items() if "baseline" not in str(k).lower()}
        if isinstance(metrics.get("band"), Mapping) and "auc" in metrics:
            return metrics
        for v in metrics.values():
            hit = _find_pooled(v) if isinstance(v, Mapping) else None
            if hit is not None:
                return hit
    return None


def _band_from_dict(d: Mapping[str, Any]) -> Any | None:
    from gsscreen.evaluation.roc import RocBand

    try:
        sp = np.asarray(d["specificities"], dtype=float)
        lo, hi = np.asarray(d["lo"], dtype=float), np.asarray(d["hi"], dtype=float)
        med = np.asarray(d.get("median", (lo + hi) / 2), dtype=float)
        sens = np.asarray(d.get("sensitivity", med), dtype=float)
    except (KeyError, TypeError, ValueError):
        return None
    if not (sp.shape == lo.shape == hi.shape) or sp.ndim != 1 or sp.size < 2:
        return None
    return RocBand(
        specificities=sp, sensitivity=sens, lo=lo, median=med, hi=hi, conf=float(d.get("conf", 0.95)),
        n_boot=int(d.get("n_boot", 0) or 0), n_boot_used=int(d.get("n_boot_used", d.get("n_boot", 0)) or 0),
        stratified=bool(d.get("stratified", True)), seed=d.get("seed"),
    )


def _ci(d: Any) -> tuple[float, float] | None:
    if isinstance(d, Mapping) and finite(d.get("lo")) and finite(d.get("hi")):
        return float(d["lo"]), float(d["hi"])
    return None


def model_numbers(run: RunData, n_boot: int = 200, seed: int = 0) -> ModelNumbers:
    """Per-fold metrics (each fold at its own threshold), their mean ± SD, the pooled ROC with its band and AUC
    CIs, the pooled confusion matrix and per-fold curves.

    Per-fold metrics are always recomputed from predictions.csv (the source of truth, and it matches what the
    study wrote); the band and the AUC CIs come from metrics.json when it has them (so the report shows the
    study's own bootstrap), else they are recomputed with ``n_boot`` replicates and ``seed``.
    """
    from gsscreen.evaluation.metrics import binary_metrics, confusion_matrix, summarize_folds
    from gsscreen.evaluation.roc import auc_ci_bootstrap, auc_ci_delong, roc_ci_band, roc_points

    pred = run.predictions
    per_fold: list[dict[str, Any]] = []
    curves: list[F.FoldCurve] = []
    for fold, part in pred.groupby("fold", sort=True):
        y = part["y"].to_numpy()
        # binary_metrics calls p >= threshold; the study's own calls are used for the confusion counts below.
        m = binary_metrics(y, part["p_gs"].to_numpy(), float(part["threshold"].iloc[0]))
        m["fold"] = int(fold)
        per_fold.append(m)
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_points(y, part["p_gs"].to_numpy())
            curves.append(F.FoldCurve(int(fold), fpr, tpr, float(m["auc"])))
    summary = summarize_folds([{k: v for k, v in m.items() if k != "fold"} for m in per_fold])

    y_all, p_all = pred["y"].to_numpy(), pred["p_gs"].to_numpy()
    fpr, tpr, _ = roc_points(y_all, p_all)
    pooled = _find_pooled(run.metrics)
    band = _band_from_dict(pooled["band"]) if pooled else None
    if band is not None:
        band_from = "metrics.json"
        delong = _ci(pooled.get("auc_ci_delong"))  # type: ignore[union-attr]
        boot = _ci(pooled.get("auc_ci_bootstrap"))  # type: ignore[union-attr]
        auc = float(pooled["auc"]) if finite(pooled.get("auc")) else float("nan")  # type: ignore[union-attr]
    else:
        band_from = "recomputed"
        band = roc_ci_band(y_all, p_all, n_boot=n_boot, seed=seed)
        d = auc_ci_delong(y_all, p_all)
        b = auc_ci_bootstrap(y_all, p_all, n_boot=n_boot, seed=seed)
        auc, delong, boot = d.auc, (d.lo, d.hi), (b.lo, b.hi)
    conf = confusion_matrix(y_all, pred["called"].to_numpy())
    return ModelNumbers(per_fold, summary, fpr, tpr, auc, delong, boot, band, band_from, conf, curves)

