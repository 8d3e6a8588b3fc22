"""The report's evidence sections: accuracy with 95 % CIs, calibration, decision curve, subgroups, leakage audit.

Each builder takes the :class:`~gsscreen.report.run.RunData` (a study's run folder or an ``evaluate`` output
folder, which has the same files) and returns the fields of a :class:`~gsscreen.report.html.Section` (its partial
under ``templates/sections/``). Clusters for the bootstrap come from ``splits.csv`` (``group``: the subject /
near-duplicate / likely-same-child group) when present, else each photo is its own cluster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gsscreen.evaluation.diagnostic import (
    FIXED_POINTS,
    MIN_SUBGROUP_N,
    age_bands,
    decision_curve,
    diagnostic_summary,
    subgroup_table,
)
from gsscreen.report import figures as F
from gsscreen.report.format import Figure, fmt, make_table
from gsscreen.report.run import RunData, match_photos, photo_key

_LABELS = {
    "sensitivity": "Sensitivity (recall)", "specificity": "Specificity", "accuracy": "Accuracy",
    "ppv": "PPV (in this sample)", "npv": "NPV (in this sample)", "auc": "AUC", "f1": "F1", "brier": "Brier score",
    "ppv@prevalence": "PPV at the given prevalence", "npv@prevalence": "NPV at the given prevalence",
}


def _label(name: str) -> str:
    if name.startswith("sensitivity@spec"):
        return f"Sensitivity at specificity {float(name.removeprefix('sensitivity@spec')):.2f}"
    if name.startswith("specificity@sens"):
        return f"Specificity at sensitivity {float(name.removeprefix('specificity@sens')):.2f}"
    return _LABELS.get(name, name)


def _section(id_: str, title: str, template: str, ctx: dict[str, Any]) -> dict[str, Any]:
    # The fields of report.html.Section: html.py wraps them (this module must not import html: no import circle).
    return {"id": id_, "title": title, "template": template, "ctx": ctx}


def figure(saved: F.SavedFigure, alt: str, caption: str, width: str = "100%") -> Figure:
    """A saved figure embedded as an SVG data URI (as :func:`gsscreen.report.html.figure`)."""
    return Figure.from_svg(saved.svg, alt, caption, width)


def prediction_clusters(run: RunData) -> np.ndarray:
    """The bootstrap cluster of every prediction row: ``splits.csv``'s ``group`` (else ``subject``), else the photo."""
    pred = run.predictions
    out = pred["photo"].astype(str).to_numpy(copy=True)
    sp = run.splits
    col = next((c for c in ("group", "subject") if sp is not None and c in sp.columns), None)
    if sp is None or col is None or "photo" not in sp.columns:
        return out
    by = dict(zip(sp["photo"].map(photo_key), sp[col].astype(str), strict=True))
    return np.array([by.get(p, p) for p in out], dtype=object)


def cohort_columns(run: RunData) -> pd.DataFrame:
    """The cohort table's columns for every prediction row (NA where the photo is not in the cohort table)."""
    pred = run.predictions
    t = run.cohort
    if t is None or "image" not in t.columns:
        return pd.DataFrame(index=pred.index)
    keys = [str(v).replace("\\", "/") for v in t["image"]]
    matched = match_photos(pred["photo"].tolist(), keys)
    row_of = {k: i for i, k in enumerate(keys)}
    idx = [row_of.get(matched.get(p, ""), -1) for p in pred["photo"]]
    cols = t.reset_index(drop=True)
    out = pd.DataFrame({c: [cols[c].iloc[i] if i >= 0 else pd.NA for i in idx] for c in cols.columns},
                       index=pred.index)
    return out


# ----------------------------------------------------------------------------------------------------- accuracy


def accuracy_section(run: RunData, fig_dir: Path, prevalence: float | None = None, n_boot: int = 1000,
                     seed: int = 0) -> Any:
    """Diagnostic accuracy with 95 % CIs, calibration (reliability diagram, Brier, intercept and slope) and the
    decision curve, from the pooled out-of-fold (or external) predictions."""
    from gsscreen.evaluation.calibration import calibration_intercept_slope, reliability_table
    from gsscreen.report.calibration_figure import reliability_figure
    pred = run.predictions
    y, p, call = pred["y"].to_numpy(int), pred["p_gs"].to_numpy(float), pred["called"].to_numpy(int)
    clusters = prediction_clusters(run)
    s = diagnostic_summary(y, p, call, clusters, prevalence=prevalence, n_boot=n_boot, seed=seed)
    rows = []
    for name, m in s["metrics"].items():
        counts = f"{m['k']}/{m['n']}" if "k" in m else ""
        rows.append([_label(name), fmt(m["estimate"]), _ci_text(m["lo"], m["hi"]), counts, m["method"]])
    grouped = s["n_clusters"] < s["n"]
    notes = [
        f"{s['n']} photos ({s['n_gs']} GS, {s['n_control']} control) in {s['n_clusters']} clusters"
        + (" (children / likely-same-child groups from splits.csv)" if grouped else " (every photo its own)") + ". "
        f"Proportions: Wilson score intervals. Others: percentile intervals of a cluster bootstrap "
        f"({s['n_boot']} replicates, clusters drawn within cases and within controls).",
        "Operating point: each photo's call at its model's threshold (chosen on validation data, never on these "
        "photos). Sensitivity / specificity at a fixed specificity / sensitivity are read from the ROC curve of "
        "these predictions, so they describe the ranking, not a threshold fixed in advance.",
    ]
    if prevalence is not None:
        notes.append(f"PPV / NPV at the given prevalence {prevalence:g} use Bayes' rule on this sample's sensitivity "
                     "and specificity; the sample's own PPV / NPV hold only at its own case mix.")
    acc = make_table("accuracy_ci", ["Measure", "Estimate", "95% CI", "Count", "CI method"], rows,
                     caption="Diagnostic accuracy with 95% confidence intervals", notes=notes)

    fit = calibration_intercept_slope(y, p)
    rel = reliability_table(y, p, n_bins=10)
    cal_rows = [
        ["Brier score", fmt(s["metrics"]["brier"]["estimate"]),
         _ci_text(s["metrics"]["brier"]["lo"], s["metrics"]["brier"]["hi"])],
        ["Calibration intercept (ideal 0)", fmt(fit.intercept), _ci_text(*fit.intercept_ci)],
        ["Calibration slope (ideal 1)", fmt(fit.slope), _ci_text(*fit.slope_ci)],
    ]
    cal = make_table("calibration", ["Measure", "Estimate", "95% CI"], cal_rows,
                     caption="Calibration of P(GS)",
                     notes=["Intercept: logistic recalibration with the logit of P(GS) as offset (calibration in the "
                            "large); slope: its coefficient (< 1: predictions too extreme). The study's P(GS) comes "
                            "from class-balanced training: it is calibrated to a balanced case mix at best."])
    rel_t = make_table("reliability", ["P(GS) bin", "Mean P(GS)", "Observed GS", "95% CI", "Photos"],
                       [[f"{r.p_low:.2f}–{r.p_high:.2f}", fmt(r.mean_p), fmt(r.observed), _ci_text(r.ci_low, r.ci_high),
                         str(r.n)] for r in rel.itertuples()], caption="Reliability table (deciles of P(GS))")
    saved_rel = F.save_figure(reliability_figure({"Model": (y, p)}), fig_dir, "reliability")

    dc = decision_curve(y, p, prevalence=prevalence)
    saved_dc = F.save_figure(_decision_figure(dc, prevalence), fig_dir, "decision_curve")
    pick = dc[dc["threshold"].round(2).isin([0.05, 0.1, 0.2, 0.3, 0.5])]
    dc_t = make_table("decision_curve", ["Threshold probability", "Net benefit: model", "Treat all", "Treat none"],
                      [[f"{r.threshold:.2f}", fmt(r.model), fmt(r.treat_all), "0"] for r in pick.itertuples()],
                      caption="Net benefit at selected threshold probabilities")
    ctx = {
        "accuracy": acc, "calibration": cal, "reliability": rel_t, "decision": dc_t,
        "reliability_figure": figure(saved_rel, "Reliability diagram", "Reliability diagram: observed GS fraction "
                                     "per decile of P(GS) with 95% Wilson intervals; below, photos per P(GS).",
                                     width="420px"),
        "decision_figure": figure(saved_dc, "Decision curve", "Decision curve: net benefit of referring the photos "
                                  "with P(GS) at or above a threshold probability, against referring all or none"
                                  + (f" (prevalence {prevalence:g})." if prevalence is not None else
                                     " (at this sample's prevalence)."), width="460px"),
        "summary": s,
    }
    return _section("calibration", "Accuracy with confidence intervals, calibration and net benefit",
                    "sections/evidence.html.j2", ctx)


def _ci_text(lo: Any, hi: Any) -> str:
    try:
        return f"{float(lo):.3f} to {float(hi):.3f}" if math.isfinite(float(lo)) and math.isfinite(float(hi)) else "—"
    except (TypeError, ValueError):
        return "—"


def _decision_figure(dc: pd.DataFrame, prevalence: float | None) -> Any:
    fig = F._new_figure(4.2, 3.2)
    ax = fig.subplots()
    ax.plot(dc["threshold"], dc["model"], color=F.MODEL_COLOUR, lw=1.4, label="Model")
    ax.plot(dc["threshold"], dc["treat_all"], color=F.PALETTE["grey"], lw=1.0, ls="--",
            label="Refer all")
    ax.axhline(0, color="black", lw=0.8, label="Refer none")
    top = max(float(dc["model"].max()), float(dc["treat_all"].max()), 0.05)
    ax.set_ylim(-0.1 * top, 1.1 * top)
    ax.set_xlim(0, 1)
    ax.set_xlabel("Threshold probability")
    ax.set_ylabel("Net benefit")
    ax.grid(True, lw=0.4, color="#e5e5e5")
    ax.legend(frameon=False)
    return fig


# ----------------------------------------------------------------------------------------------------- subgroups


def subgroup_section(run: RunData, columns: Sequence[str] = (), min_n: int = MIN_SUBGROUP_N) -> Any:
    """Recall (GS) and specificity (controls) with Wilson CIs per syndrome, age band, sex and each named column."""
    pred = run.predictions
    cc = cohort_columns(run)
    frame = pd.DataFrame({"y": pred["y"].to_numpy(int), "call": pred["called"].to_numpy(int)}, index=pred.index)
    wanted: list[tuple[str, pd.Series]] = []
    syn = pred["syndrome"] if "syndrome" in pred.columns else cc.get("syndrome")
    if syn is not None:
        wanted.append(("syndrome", pd.Series(syn, index=pred.index).where(frame["y"] == 1)))
    if "age_months" in cc.columns and cc["age_months"].notna().any():
        wanted.append(("age band", age_bands(cc["age_months"].to_numpy()).set_axis(pred.index)))
    if "sex" in cc.columns and cc["sex"].notna().any():
        wanted.append(("sex", cc["sex"]))
    missing = []
    for c in columns:
        src = pred[c] if c in pred.columns else cc[c] if c in cc.columns else None
        if src is None:
            missing.append(c)
        elif c not in ("syndrome", "sex"):
            wanted.append((c, src))
    tables = []
    for name, values in wanted:
        f = frame.assign(level=pd.Series(values, index=pred.index).astype("string"))
        if name == "syndrome":
            f = f[f["y"] == 1]
        t = subgroup_table(f, "level", min_n=min_n)
        rows = [[r.level, str(r.n), f"{r.n_gs}", _rate(r.recall, r.recall_lo, r.recall_hi, r.n_gs),
                 f"{r.n_control}", _rate(r.specificity, r.spec_lo, r.spec_hi, r.n_control), r.warning]
                for r in t.itertuples()]
        tables.append(make_table(f"subgroup_{name.replace(' ', '_')}",
                                 ["Level", "Photos", "GS", "Recall (95% CI)", "Control", "Specificity (95% CI)",
                                  "Note"], rows, caption=f"Results by {name}"))
    notes = [f"Wilson 95% intervals. A level with fewer than {min_n} GS (or control) photos is marked: its rate "
             "cannot support a conclusion. Photos are not independent when a child appears more than once."]
    if missing:
        notes.append(f"Column(s) not found in the predictions or the cohort table: {', '.join(missing)}.")
    if not tables:
        notes.append("No subgroup column available (the cohort table has no syndrome, age_months or sex, and none "
                     "was named with --subgroup).")
    return _section("subgroups", "Subgroups", "sections/subgroups.html.j2", {"tables": tables, "notes": notes})


def _rate(est: float, lo: float, hi: float, n: int) -> str:
    if not n:
        return "—"
    return f"{est:.3f} ({lo:.3f} to {hi:.3f})"


# ----------------------------------------------------------------------------------------------------- leakage


def leakage_section(run: RunData) -> Any | None:
    """The likely-same-child grouping and the leakage audit from ``metrics.json["grouping"]`` (None without it)."""
    g = run.metrics.get("grouping") if isinstance(run.metrics, dict) else None
    if not g:
        return None
    rows = [["Likely-same-child grouping", "used" if g.get("used") else f"not used ({g.get('reason', '')})"],
            ["Cosine threshold", f"{g.get('threshold', float('nan')):.2f}"]]
    if g.get("used"):
        rows += [["Clusters of 2+ photos", str(g.get("n_clusters"))],
                 ["Photos in those clusters", str(g.get("n_photos_in_clusters"))],
                 ["Largest cluster", str(g.get("largest_cluster"))]]
    audit = g.get("leakage_audit") or {}
    for t, a in sorted(audit.get("thresholds", {}).items()):
        per_fold = ", ".join(map(str, a["per_fold"]))
        rows.append([f"Test photos with a training neighbour at cosine ≥ {t}",
                     f"{a['n']} of {audit['n_test']} ({a['share']:.1%}); per fold {per_fold}"])
    table = make_table("leakage_audit", ["", ""], rows, caption="Same child in training and test: grouping and audit",
                       notes=["Without subject ids, photos are compared by FaceNet (VGGFace2) embedding; pairs at or "
                              "above the threshold are kept in one subset, together with identical files and "
                              "perceptual near-duplicate chains. The audit counts test photos whose most similar "
                              "photo in the training subsets of their own fold is at least that close: at 0.9 nearly "
                              "always the same child, at 0.8 often (see benchmarks/bench_identity.py)."])
    return _section("leakage", "Leakage audit", "sections/leakage.html.j2", {"table": table})


def evidence_sections(run: RunData, fig_dir: Path, subgroups: Sequence[str] = (), prevalence: float | None = None,
                      n_boot: int = 1000, seed: int = 0) -> list[Any]:
    """The sections above in report order (the leakage audit only when the run has one), as the keyword
    arguments of :class:`gsscreen.report.html.Section`."""
    out = [accuracy_section(run, fig_dir, prevalence, n_boot, seed), subgroup_section(run, subgroups)]
    leak = leakage_section(run)
    if leak is not None:
        out.append(leak)
    return out


__all__ = ["FIXED_POINTS", "accuracy_section", "cohort_columns", "evidence_sections", "leakage_section",
           "prediction_clusters", "subgroup_section"]
