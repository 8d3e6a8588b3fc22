"""The physicians as a group: who completed the reading, group means (e.g. junior / senior), agreement (κ) and an
Obuchowski–Rockette MRMC comparison of the physicians with the model.

Per-reader statistics (metrics, band position, McNemar, DeLong) live in :mod:`gsscreen.evaluation.readers`; this
module takes their table and the answers and adds what a reader *study* reports. A reader who answered only part
of the photos is flagged and, by default, left out of every group statistic here (their own row stays in the
per-reader table): group means, κ and MRMC would otherwise mix readers who saw different photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gsscreen.evaluation.agreement import Kappa, calls_matrix, group_fleiss_kappa, pairwise_kappa
from gsscreen.evaluation.mrmc import ORResult, readers_vs_model

GROUP_COLUMNS = ("group", "experience", "seniority", "level", "role")
GROUP_METRICS = ("accuracy", "sensitivity", "specificity")
MIN_SHARE = 0.9  # a reader who answered at least 90% of the photos in the reading set is complete


@dataclass
class ReaderStudy:
    """``completeness``: one row per reader (``reader, group, n_answered, n_photos, share, complete,
    included``); ``groups``: mean ± SD of each metric per group and over all included readers; ``pairwise``:
    Cohen's κ per pair; ``fleiss``: Fleiss' κ of all included readers on the photos all answered; ``mrmc``: the
    OR analysis (physicians vs model) or None with ``mrmc_note`` saying why."""

    group_column: str | None
    completeness: pd.DataFrame
    groups: pd.DataFrame
    pairwise: pd.DataFrame
    fleiss: Kappa | None
    mrmc: ORResult | None
    mrmc_score: str = ""
    model_ci: tuple[float, float] | None = None  # DeLong 95% CI of the model's AUC on the MRMC photos
    mrmc_note: str = ""
    notes: list[str] = field(default_factory=list)


def find_group_column(answers: pd.DataFrame, group_column: str | None = None) -> str | None:
    """The reader attribute that defines groups: ``group_column`` if given (must exist), else the first of
    ``group, experience, seniority, level, role`` present with a value for every answer."""
    if group_column is not None:
        if group_column not in answers.columns:
            raise ValueError(f"readers file has no column {group_column!r} to group readers by")
        return group_column
    for c in GROUP_COLUMNS:
        if c in answers.columns and answers[c].notna().all() and answers[c].astype(str).str.strip().ne("").all():
            return c
    return None


def completeness(answers: pd.DataFrame, group_column: str | None, min_share: float = MIN_SHARE) -> pd.DataFrame:
    """Photos each reader answered out of the reading set (every photo anyone answered)."""
    n_photos = int(answers["photo"].nunique())
    rows = []
    for reader, g in answers.groupby("reader", sort=False):
        n = int(g["photo"].nunique())
        grp = str(g[group_column].iloc[0]).strip() if group_column else ""
        rows.append({"reader": reader, "group": grp, "n_answered": n, "n_photos": n_photos,
                     "share": n / n_photos if n_photos else float("nan"), "complete": n >= min_share * n_photos})
    return pd.DataFrame(rows)


def group_means(per_reader: pd.DataFrame, metrics: tuple[str, ...] = GROUP_METRICS) -> pd.DataFrame:
    """Mean and sample SD of each metric per ``group`` (rows in order of first appearance), then all readers.

    ``per_reader``: columns ``reader, group`` and the metrics. SD is NaN for a group of one reader.
    """
    out = []
    parts: list[tuple[str, pd.DataFrame]] = [(str(k), g) for k, g in per_reader.groupby("group", sort=False)
                                              if str(k)]
    if not (len(parts) == 1 and len(parts[0][1]) == len(per_reader)):  # no "all" row when it repeats the group
        parts.append(("All physicians", per_reader))
    for name, g in parts:
        row: dict[str, Any] = {"group": name, "n_readers": len(g)}
        for m in metrics:
            v = pd.to_numeric(g[m], errors="coerce").dropna()
            row[f"{m}_mean"] = float(v.mean()) if len(v) else float("nan")
            row[f"{m}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
        out.append(row)
    return pd.DataFrame(out)


def reader_study(
    answers: pd.DataFrame,
    per_reader: pd.DataFrame,
    y: pd.Series,
    p_model: pd.Series,
    group_column: str | None = None,
    include_incomplete: bool = False,
    min_share: float = MIN_SHARE,
    cov_method: str = "jackknife",
) -> ReaderStudy:
    """Group statistics of a reader study.

    Args:
        answers: one row per (reader, photo) with ``reader, photo, call`` (1 = GS, 0 = control), optional
            ``confidence`` (1–5) and reader attribute columns; photos already named as in ``y``.
        per_reader: the per-reader table (``reader`` and ``accuracy, sensitivity, specificity``).
        y, p_model: truth (1/0) and the model's P(GS), indexed by photo.
        group_column: reader attribute to group by (default: found, see :func:`find_group_column`).
        include_incomplete: also use readers who answered fewer than ``min_share`` of the photos.
        cov_method: ``"jackknife"`` or ``"delong"`` covariances for the MRMC analysis.
    """
    gcol = find_group_column(answers, group_column)
    comp = completeness(answers, gcol, min_share)
    comp["included"] = comp["complete"] | include_incomplete
    notes: list[str] = []
    left_out = comp.loc[~comp["included"], "reader"].tolist()
    if left_out:
        notes.append(
            f"{len(left_out)} reader(s) answered fewer than {min_share:.0%} of the {int(comp['n_photos'].iloc[0])} "
            f"photos and are left out of the group statistics: {', '.join(map(str, left_out))}."
        )
    used = comp.loc[comp["included"], ["reader", "group"]]
    pr = used.merge(per_reader.drop(columns=["group"], errors="ignore"), on="reader", how="left")
    groups = group_means(pr) if len(pr) else pd.DataFrame()

    a = answers[answers["reader"].isin(used["reader"])]
    calls = calls_matrix(a, "call") if len(a) else pd.DataFrame()
    pairwise = pairwise_kappa(calls) if calls.shape[1] >= 2 else pd.DataFrame()
    fleiss = group_fleiss_kappa(calls) if calls.shape[1] >= 2 else None

    mrmc, note, score, model_ci = None, "", "", None
    readers = list(calls.columns)
    if len(readers) < 2:
        note = "An MRMC analysis needs at least two complete readers."
    else:
        has_conf = "confidence" in a.columns and pd.to_numeric(a["confidence"], errors="coerce").isin(
            [1, 2, 3, 4, 5]).all()
        if has_conf:
            from gsscreen.evaluation.readers import reader_score

            b = a.copy()
            b["score"] = reader_score(b["call"].map({1: "GS", 0: "control"}).to_numpy(),
                                      pd.to_numeric(b["confidence"]).to_numpy())
            scores = calls_matrix(b, "score")
            score = "answer + 1–5 confidence (10-level score)"
        else:
            scores = calls.astype(float)
            score = "binary answer (AUC = (sensitivity + specificity) / 2)"
        full = scores.dropna()
        full = full[full.index.isin(y.index)]
        yy = y.loc[full.index].to_numpy().astype(int)
        if len(full) < 10 or min(int(yy.sum()), int(len(yy) - yy.sum())) < 2:
            note = (f"Only {len(full)} photo(s) were answered by every included reader (with at least 2 GS and 2 "
                    "control needed): no MRMC analysis.")
        else:
            from gsscreen.evaluation.roc import auc_ci_delong

            pm = p_model.loc[full.index].to_numpy(dtype=float)
            mrmc = readers_vs_model(full.to_numpy().T, pm, yy, cov_method=cov_method)  # type: ignore[arg-type]
            d = auc_ci_delong(yy, pm)
            model_ci = (float(d.lo), float(d.hi))
            if len(full) < len(scores):
                note = (f"MRMC on the {len(full)} photos every included reader answered (of {len(scores)}).")
    return ReaderStudy(gcol, comp, groups, pairwise, fleiss, mrmc, score, model_ci, note, notes)


def mrmc_rows(res: ORResult, model_ci: tuple[float, float] | None = None) -> list[dict[str, Any]]:
    """The MRMC result as rows for a table: physicians (mean AUC with CI), the model, and the difference."""
    d = res.differences[0]
    mlo, mhi = model_ci if model_ci else (np.nan, np.nan)
    ci_r = res.modality_cis[0]
    return [
        {"what": "Physicians (mean AUC)", "estimate": ci_r.estimate, "lo": ci_r.lo, "hi": ci_r.hi,
         "p_value": np.nan},
        {"what": "Model (AUC, DeLong CI)", "estimate": float(res.means[1]), "lo": mlo, "hi": mhi, "p_value": np.nan},
        {"what": "Physicians − model", "estimate": d.estimate, "lo": d.lo, "hi": d.hi, "p_value": d.p_value},
    ]
