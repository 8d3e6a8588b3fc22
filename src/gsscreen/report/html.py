"""One self-contained HTML report of a study's run folder, for a manuscript's supplement.

Everything is inside the one file: figures as base64 data URIs (SVG for the plots, so they print sharp; JPEG for
the Grad-CAM thumbnails), CSS inline, no JavaScript, no link to anything outside the file. Every piece of text
that comes from the user's data (photo names, reader names, config values) is escaped.

The same figures are written as PNG (300 dpi) and SVG under ``RUN_DIR/report/figures/``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gsscreen.report import figures as F
from gsscreen.report.run import RunData, finite, load_run, match_photos

METRICS = ("accuracy", "recall", "specificity", "precision", "f1", "auc")
METRIC_HEADERS = {
    "accuracy": "Accuracy",
    "recall": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision",
    "f1": "F1",
    "auc": "AUC",
}
GALLERY_CHOICES = ("gs", "all", "none")
RESEARCH_LINE = (
    "Research use only. gsscreen is not a medical device: its output is not a diagnosis and must not be used to "
    "make clinical decisions."
)


def esc(x: Any) -> str:
    """``html.escape`` of ``str(x)`` (quotes too): the only way user text reaches the page."""
    return html.escape(str(x), quote=True)


def fmt(x: Any, nd: int = 3) -> str:
    """A number with ``nd`` decimals; an en dash for missing/NaN."""
    return f"{float(x):.{nd}f}" if finite(x) else "–"


def fmt_p(p: Any) -> str:
    """A p-value as journals print it: 3 decimals, ``<0.001`` below that."""
    if not finite(p):
        return "–"
    p = float(p)
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def mean_sd(mean: Any, sd: Any, nd: int = 3) -> str:
    """``"0.886 ± 0.021"`` (the SD left out when undefined, e.g. one fold)."""
    if not finite(mean):
        return "–"
    return f"{float(mean):.{nd}f} ± {float(sd):.{nd}f}" if finite(sd) else f"{float(mean):.{nd}f}"


# ----------------------------------------------------------------------------------------------------- numbers


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


def _find_key(obj: Any, want: Iterable[str]) -> Any:
    """The first value (depth-first) whose key contains one of ``want`` (case-insensitive)."""
    want = tuple(w.lower() for w in want)
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if any(w in str(k).lower() for w in want):
                return v
        for v in obj.values():
            hit = _find_key(v, want)
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


# ----------------------------------------------------------------------------------------------------- HTML bits


def table_html(
    header: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "", caption: str | None = None,
    raw_cells: bool = False,
) -> str:
    """A ``<table>``; every cell is escaped unless ``raw_cells`` (only for cells this module built itself)."""
    cell = (lambda v: str(v)) if raw_cells else esc
    parts = [f'<table class="{esc(cls)}">']
    if caption:
        parts.append(f"<caption>{esc(caption)}</caption>")
    if any(str(h) for h in header):
        parts.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>")
    parts.append("<tbody>")
    for r in rows:
        parts.append("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def frame_html(df: pd.DataFrame, cls: str = "", caption: str | None = None, index: bool = False) -> str:
    """A DataFrame as an escaped ``<table>`` (numbers with 3 decimals)."""
    d = df.reset_index() if index else df

    def show(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return fmt(v)
        return "" if v is None else str(v)

    return table_html([str(c) for c in d.columns], ([show(v) for v in r] for r in d.itertuples(index=False)),
                      cls=cls, caption=caption)


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def figure_html(saved: F.SavedFigure, alt: str, caption: str, width: str = "100%") -> str:
    """The saved figure embedded as an SVG data URI (vector: sharp on screen and paper)."""
    uri = data_uri(saved.svg.read_bytes(), "image/svg+xml")
    return (
        f'<figure class="fig"><img src="{uri}" alt="{esc(alt)}" style="max-width:{esc(width)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def _jpeg_uri(path: Path, quality: int = 88) -> str:
    from PIL import Image

    with Image.open(path) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="JPEG", quality=quality)
    return data_uri(buf.getvalue(), "image/jpeg")


CSS = """
:root { --ink:#1a1a1a; --muted:#555; --rule:#d0d0d0; --accent:#0072B2; --warn:#D55E00; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink);
       max-width: 1080px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 30px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--accent); }
h3 { font-size: 15px; margin: 18px 0 6px; }
p, li { margin: 4px 0; }
.meta { color: var(--muted); font-size: 12.5px; }
.research { border-left: 4px solid var(--accent); background: #eef5fb; padding: 8px 12px; margin: 12px 0; }
.synthetic { border: 3px solid var(--warn); background: #fdf0e6; color: #7a2f00; padding: 12px 16px;
             margin: 14px 0; font-weight: 600; font-size: 15px; }
.synthetic small { display: block; font-weight: 400; font-size: 13px; margin-top: 4px; color: #5a2300; }
.notes { border: 1px solid var(--rule); background: #fafafa; padding: 6px 12px 6px 28px; font-size: 12.5px;
         color: var(--muted); }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13px; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
th, td { padding: 4px 10px; text-align: left; vertical-align: top; }
thead th { border-top: 1.5px solid var(--ink); border-bottom: 1px solid var(--ink); }
tbody tr:last-child td { border-bottom: 1.5px solid var(--ink); }
table.kv { border-top: 1.5px solid var(--ink); }
table.kv td:first-child { color: var(--muted); }
tr.group td { font-weight: 600; background: #f2f2f2; }
td.num, th.num { text-align: right; }
.figrow { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.figrow figure { flex: 0 1 auto; }
figure.fig { margin: 8px 0 16px; }
figure.fig img { width: 100%; height: auto; display: block; }
.figrow figure.fig { width: 48%; min-width: 300px; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 4px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(132px, 1fr)); gap: 10px; }
.gallery figure { margin: 0; break-inside: avoid; }
.gallery img { width: 100%; height: auto; display: block; border-radius: 2px; }
.gallery figcaption { font-size: 10.5px; line-height: 1.3; overflow-wrap: anywhere; }
.gallery .off { color: var(--warn); font-weight: 600; }
pre { background: #f6f6f6; border: 1px solid var(--rule); padding: 8px 10px; font-size: 11.5px; overflow-x: auto;
      white-space: pre-wrap; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
@media print {
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  h2 { break-after: avoid; }
  table, figure, .synthetic, .research { break-inside: avoid; }
  .gallery { grid-template-columns: repeat(6, 1fr); }
  pre { font-size: 8pt; }
  a { color: inherit; text-decoration: none; }
}
@page { size: A4; margin: 15mm; }
"""


# ----------------------------------------------------------------------------------------------------- sections


def _cohort_section(run: RunData) -> str:
    pred = run.predictions
    n_gs, n_ctrl = int((pred["y"] == 1).sum()), int((pred["y"] == 0).sum())
    rows: list[tuple[str, str]] = [
        ("Test photos (all folds)", f"{len(pred)} ({n_gs} GS, {n_ctrl} control)"),
        ("Folds", str(len(run.folds))),
    ]
    if "subject" in pred.columns:
        subj = pred.groupby("y")["subject"].nunique()
        rows.append(
            ("Subjects", f"{int(pred['subject'].nunique())} ({int(subj.get(1, 0))} GS, {int(subj.get(0, 0))} control)")
        )
    syndromes = _syndromes(run)
    if syndromes:
        rows.append(("Syndromes (GS photos)", "; ".join(f"{k}: {v}" for k, v in syndromes.items())))
    fails = run.failures
    n_fail = 0 if fails is None else len(fails)
    rows.append(("Photos left out (alignment or reading failures)", "not recorded" if fails is None else str(n_fail)))
    out = [table_html(["", ""], rows, cls="kv")]
    if fails is not None and n_fail:
        cols = [c for c in fails.columns if c in ("file", "image", "photo", "problem", "reason", "stage")] or list(
            fails.columns
        )
        shown = fails[cols].head(30)
        more = f" (first 30 of {n_fail})" if n_fail > 30 else ""
        out.append(f"<details open><summary>Left-out photos{esc(more)}</summary>{frame_html(shown)}</details>")
    return "".join(out)


def _syndromes(run: RunData) -> dict[str, int]:
    """Photos per syndrome among the study's GS photos (from the cohort table, else a ``syndrome`` column)."""
    pred = run.predictions
    gs = pred[pred["y"] == 1]
    if "syndrome" in pred.columns:
        s = gs["syndrome"].fillna("(not given)").astype(str)
        return {str(k): int(v) for k, v in s.value_counts().sort_index().items()}
    t = _study_cohort(run)
    if t is None or "syndrome" not in t.columns:
        return {}
    s = t.loc[t["label"] == "GS", "syndrome"].fillna("(not given)").astype(str)
    return {str(k): int(v) for k, v in s.value_counts().sort_index().items()}


def _study_cohort(run: RunData) -> pd.DataFrame | None:
    """The cohort rows of the photos in the study (those with a prediction); None when none can be matched."""
    t = run.cohort
    if t is None or "image" not in t.columns:
        return None
    keys = [str(v).replace("\\", "/") for v in t["image"]]
    matched = match_photos(run.predictions["photo"].tolist(), keys)
    used = set(matched.values())
    if not used:
        return None
    return t[[k in used for k in keys]]


def _table1(run: RunData) -> str:
    t = _study_cohort(run)
    if t is None:
        why = ("No cohort table was found" if run.cohort is None
               else f"The cohort table {run.cohort_source} does not list the study's photos")
        return (f'<p class="notes">{esc(why)}, so Table 1 (demographics) is left out. Pass the cohort CSV with '
                "<code>--cohort</code>.</p>")
    from gsscreen.evaluation.demographics import demographics_table

    try:
        demo = demographics_table(t, welch=False)
    except (ValueError, KeyError) as exc:
        return f'<p class="notes">Table 1 could not be computed: {esc(exc)}</p>'
    frame = demo.to_frame()
    notes = list(getattr(demo, "notes", []) or [])
    scope = "the photos in the study" if len(t) < len(run.cohort) else "the whole cohort"  # type: ignore[arg-type]
    scope += f", from {run.cohort_source.name}" if run.cohort_source else ""
    frame.index.name = ""
    parts = [frame_html(frame, cls="t1", caption=f"Table 1. Demographics ({scope}: {len(t)} photos)", index=True)]
    foot = "Age: mean ± SD (sample SD), Student's two-sample t-test; sex: counts (% of known), Pearson's chi-squared."
    parts.append(f'<p class="meta">{esc(foot)}</p>')
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    return "".join(parts)


def _baseline_row(metrics: Mapping[str, Any]) -> list[str] | None:
    """The logistic-regression baseline's row (mean ± SD per metric) from metrics.json, or None."""
    from gsscreen.evaluation.metrics import summarize_folds

    base = metrics.get("baseline") if isinstance(metrics.get("baseline"), Mapping) else None
    if base is None:
        base = _find_key(metrics, ("baseline", "logistic"))
    if not isinstance(base, (Mapping, list)) or not base:
        return None
    summ: Mapping[str, Any] | None = None
    if isinstance(base, list) and all(isinstance(b, Mapping) for b in base):
        summ = summarize_folds(base)
    elif isinstance(base, Mapping):
        for key in ("summary", "mean_sd", "summarized", "mean"):
            if isinstance(base.get(key), Mapping):
                summ = base[key]
                break
        if summ is None:
            folds = base.get("folds") or base.get("per_fold")
            if isinstance(folds, list) and folds and all(isinstance(b, Mapping) for b in folds):
                summ = summarize_folds(folds)
            else:
                summ = base
    if summ is None:
        return None
    cells = []
    for m in METRICS:
        v = summ.get(m, summ.get("sensitivity") if m == "recall" else None)
        if isinstance(v, Mapping):
            cells.append(mean_sd(v.get("mean"), v.get("sd")))
        elif finite(v):
            cells.append(fmt(v))
        else:
            cells.append("–")
    if all(c == "–" for c in cells):
        return None
    return cells


def _external_section(metrics: Mapping[str, Any], folds: Sequence[int]) -> str:
    """False-positive rates on the external control sets: one row per fold, one column per set, then mean ± SD.

    Reads ``model.external`` of metrics.json (``{set: {"values": [per fold], "mean", "sd", "n_photos"}}``); other
    shapes (``{fold: rate}``, ``{set: rate}``) are shown as they are.
    """
    model = metrics.get("model") if isinstance(metrics.get("model"), Mapping) else {}
    ext = model.get("external") if "external" in model else _find_key(
        {k: v for k, v in metrics.items() if "baseline" not in str(k).lower()}, ("external",)
    )
    if ext is None or (isinstance(ext, (list, Mapping)) and not ext):
        return '<p class="notes">No external control set was evaluated in this run.</p>'
    caption = "False-positive rate on external controls (share of the set each fold's model calls GS)"
    if isinstance(ext, Mapping) and all(isinstance(v, Mapping) and isinstance(v.get("values"), list)
                                        for v in ext.values()):
        names = list(ext)
        n_rows = max(len(ext[n]["values"]) for n in names)
        fold_ids = list(folds) if len(folds) == n_rows else list(range(n_rows))
        rows = []
        for i in range(n_rows):
            vals = [ext[n]["values"][i] if i < len(ext[n]["values"]) else None for n in names]
            rows.append([f"Fold {fold_ids[i]}", *[fmt(v) for v in vals]])
        rows.append(["mean ± SD", *[mean_sd(ext[n].get("mean"), ext[n].get("sd")) for n in names]])
        rows.append(["photos in the set", *[str(ext[n].get("n_photos", "–")) for n in names]])
        return table_html(["", *names], rows, caption=caption)
    if isinstance(ext, Mapping):
        items = list(ext.items())
    elif isinstance(ext, list):
        items = [(str(i), v) for i, v in enumerate(ext)]
    else:
        return f'<p class="notes">External controls: {esc(ext)}</p>'
    # table_html escapes every cell: escaping here as well would show "&amp;quot;" in the page.
    rows = [[str(k), fmt(v) if finite(v) else json.dumps(v, default=str)] for k, v in items]
    vals = [float(v) for _k, v in items if finite(v)]
    if len(vals) > 1:
        rows.append(["mean ± SD", mean_sd(np.mean(vals), np.std(vals, ddof=1))])
    return table_html(["", "False-positive rate"], rows, caption=caption)


def _strip_prefix(text: str, prefix: str) -> str:
    # The banner already says "SYNTHETIC COHORT"; the demo's note starts with the same words.
    t = text.strip()
    return t[len(prefix) :].strip() if t.upper().startswith(prefix.upper()) else t


def _config_section(run: RunData) -> str:
    def pretty(d: dict[str, Any], name: str) -> str:
        return json.dumps(d, indent=2, sort_keys=True, default=str) if d else f"({name} not found)"

    return (
        f"<h3>Configuration (config.json)</h3><pre>{esc(pretty(run.config, 'config.json'))}</pre>"
        f"<h3>Versions (versions.json)</h3><pre>{esc(pretty(run.versions, 'versions.json'))}</pre>"
    )


# ----------------------------------------------------------------------------------------------------- build


def build_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    readers_csv: str | Path | None = None,
    cover_eyes: bool = False,
    gallery: str = "gs",
    max_gallery: int | None = 48,
    cohort_csv: str | Path | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> Path:
    """Write the study report of ``run_dir`` as one self-contained HTML file; returns its path.

    Args:
        run_dir: a run folder written by ``gsscreen study``.
        out: the HTML file (default ``RUN_DIR/report/report.html``). Figures always go to
            ``RUN_DIR/report/figures/`` (PNG at 300 dpi and SVG).
        readers_csv: physicians' answers (``reader, role, photo, answer[, confidence]``, as the reader-study app
            exports): adds their rows to Table 2 and their points to the ROC figure.
        cover_eyes: cover the eyes with a grey bar in every exported picture of a face (the Grad-CAM overlays and
            gallery), as the paper did.
        gallery: Grad-CAM gallery of the ``"gs"`` photos, ``"all"`` test photos, or ``"none"``.
        max_gallery: at most this many Grad-CAM maps (None = all).
        cohort_csv: the cohort table for Table 1 (default: found from config.json / next to the run).
        n_boot, seed: bootstrap replicates and seed when the band must be recomputed (metrics.json lacks it).
    """
    if gallery not in GALLERY_CHOICES:
        raise ValueError(f"gallery must be one of {', '.join(GALLERY_CHOICES)}, got {gallery!r}")
    run = load_run(run_dir, cohort_csv=cohort_csv)
    report_dir = run.run_dir / "report"
    fig_dir = report_dir / "figures"
    out_path = Path(out) if out is not None else report_dir / "report.html"
    nums = model_numbers(run, n_boot=n_boot, seed=seed)

    readers = None
    if readers_csv is not None:
        from gsscreen.report.readers import reader_rows

        readers = reader_rows(Path(readers_csv), run, nums)

    # Figures.
    band = nums.band
    saved: dict[str, F.SavedFigure] = {}
    auc_ci = nums.auc_ci_delong or nums.auc_ci_bootstrap
    roc = F.roc_figure(
        nums.pooled_fpr, nums.pooled_tpr, nums.auc, auc_ci, (band.fpr, band.lo, band.hi),
        readers.points if readers else (), band_label=f"{band.conf:.0%} CI (bootstrap, n = {band.n_boot})",
    )
    saved["roc"] = F.save_figure(roc, fig_dir, "roc")
    saved["roc_folds"] = F.save_figure(F.fold_roc_figure(nums.fold_curves), fig_dir, "roc_folds")
    saved["confusion"] = F.save_figure(F.confusion_figure(nums.confusion), fig_dir, "confusion_matrix")
    saved["fold_metrics"] = F.save_figure(
        F.fold_metrics_figure(nums.per_fold, folds=[m["fold"] for m in nums.per_fold]), fig_dir, "fold_metrics"
    )

    grad_html = ""
    if gallery != "none":
        grad_html = _gradcam_section(run, report_dir, fig_dir, gallery, max_gallery, cover_eyes)

    body = _assemble(run, nums, readers, saved, grad_html, gallery, cover_eyes)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(body, encoding="utf-8")
    return out_path


def _gradcam_section(
    run: RunData, report_dir: Path, fig_dir: Path, which: str, max_gallery: int | None, cover_eyes: bool
) -> str:
    from gsscreen.explain import gallery as gallery_figure
    from gsscreen.report.gallery import fold_gradcams

    res = fold_gradcams(run, report_dir / "gradcam", which=which, max_maps=max_gallery, cover_eyes=cover_eyes)
    what = "GS test photos" if which == "gs" else "test photos"
    parts = []
    maps = res.maps
    if len(maps):
        n_on = res.n_on_face
        gal = gallery_figure(maps, fig_dir / "gradcam_gallery", cover_eyes=cover_eyes)
        asked = min(res.eligible, max_gallery) if max_gallery is not None else res.eligible
        limited = (f" ({asked} of the {res.eligible} {what}, taken in turn from each fold)" if asked < res.eligible
                   else f" (all {res.eligible} {what})")
        n_unusable = asked - len(maps)
        unusable = (f" {n_unusable} photo(s) gave no usable map (no crop, or an empty map): listed below."
                    if n_unusable else "")
        parts.append(
            f'<p><strong>{n_on} of {len(maps)} maps mainly on the face</strong>{esc(limited)}: more than half of '
            "the map's mass inside the face region spanned by the five landmarks. Each map comes from the model of "
            f"the fold in which the photo was a test photo.{esc(unusable)} Figure files: {esc(gal.png.name)}, "
            f"{esc(gal.svg.name)}." + (" Eyes covered by a grey bar." if cover_eyes else "") + "</p>"
        )
        tiles = []
        for rec in maps.to_dict("records"):
            share = float(rec["on_face_share"])
            cls = "" if rec["on_face"] else ' class="off"'
            p = f", P(GS) {float(rec['p_gs']):.2f}" if finite(rec.get("p_gs")) else ""
            name = Path(str(rec["file"])).name
            tiles.append(
                f'<figure><img src="{_jpeg_uri(Path(rec["overlay"]))}" alt="Grad-CAM of {esc(name)}">'
                f"<figcaption>{esc(name)} (fold {int(rec['fold'])})<br><span{cls}>on face {share:.0%}</span>"
                f"{esc(p)}</figcaption></figure>"
            )
        parts.append('<div class="gallery">' + "".join(tiles) + "</div>")
    else:
        parts.append(f'<p class="notes">No Grad-CAM map could be computed for the {esc(what)}.</p>')
    if res.problems:
        shown = res.problems[:20]
        more = f" (first 20 of {len(res.problems)})" if len(res.problems) > 20 else ""
        parts.append(
            f'<details open><summary>Photos not shown{esc(more)}</summary><ul class="notes">'
            + "".join(f"<li>{esc(p)}</li>" for p in shown) + "</ul></details>"
        )
    return "".join(parts)


def _assemble(
    run: RunData,
    nums: ModelNumbers,
    readers: Any,
    saved: dict[str, F.SavedFigure],
    grad_html: str,
    gallery: str,
    cover_eyes: bool,
) -> str:
    from gsscreen import __version__

    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    h: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>gsscreen study report: {esc(run.run_dir.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        "<header>",
        "<h1>gsscreen study report</h1>",
        f'<p class="meta">Run folder <code>{esc(run.run_dir.name)}</code> · generated {esc(now)} · '
        f"gsscreen {esc(__version__)}</p>",
        f'<p class="research">{esc(RESEARCH_LINE)}</p>',
    ]
    if run.synthetic_note:
        h.append(
            '<div class="synthetic" role="alert">SYNTHETIC COHORT: these results are not about real children.'
            f"<small>{esc(_strip_prefix(run.synthetic_note, 'SYNTHETIC COHORT:'))}</small></div>"
        )
    if run.metrics.get("random_init_note"):  # the study went on without the pretrained weights it asked for
        h.append(f'<div class="synthetic" role="alert">{esc(run.metrics["random_init_note"])}</div>')
    h.append("</header>")
    if run.problems:
        h.append('<ul class="notes">' + "".join(f"<li>{esc(p)}</li>" for p in run.problems) + "</ul>")

    h.append("<h2>1. Cohort</h2>")
    h.append(_cohort_section(run))
    h.append(_table1(run))

    # Table 2.
    h.append("<h2>2. Performance</h2>")
    header = ["", *[METRIC_HEADERS[m] for m in METRICS]]
    rows: list[list[str]] = [
        ["Model (mean ± SD over folds)", *[mean_sd(nums.summary.get(m, {}).get("mean"),
                                                   nums.summary.get(m, {}).get("sd")) for m in METRICS]],
    ]
    base = _baseline_row(run.metrics)
    if base is not None:
        rows.append(["Baseline: logistic regression on embeddings", *base])
    t2 = table_html(header, rows, caption=f"Table 2. Model over {len(nums.per_fold)} test folds, each at its own "
                    "threshold")
    h.append(t2)
    ci_txt = []
    if nums.auc_ci_delong:
        ci_txt.append(f"DeLong 95% CI {fmt(nums.auc_ci_delong[0])}–{fmt(nums.auc_ci_delong[1])}")
    if nums.auc_ci_bootstrap:
        ci_txt.append(f"bootstrap 95% CI {fmt(nums.auc_ci_bootstrap[0])}–{fmt(nums.auc_ci_bootstrap[1])}")
    h.append(f"<p>Pooled AUC over all test photos: <strong>{fmt(nums.auc)}</strong>"
             + (f" ({esc('; '.join(ci_txt))})" if ci_txt else "") + ".</p>")
    base_part = run.metrics.get("baseline") if isinstance(run.metrics.get("baseline"), Mapping) else {}
    base_roc = base_part.get("pooled_roc") if isinstance(base_part.get("pooled_roc"), Mapping) else None
    vs = run.metrics.get("model_vs_baseline_delong")
    if base_roc is not None and finite(base_roc.get("auc")):
        line = f"Baseline pooled AUC: {fmt(base_roc['auc'])}"
        if isinstance(vs, Mapping) and finite(vs.get("p_value")):
            line += f"; DeLong test model vs baseline: p = {fmt_p(vs['p_value'])}"
        h.append(f"<p>{esc(line)}.</p>")
    if isinstance(base_part.get("description"), str):
        h.append(f'<p class="meta">Baseline: {esc(base_part["description"])}.</p>')
    if readers is not None:
        h.append(readers.html)

    h.append("<h3>ROC curve</h3>")
    band = nums.band
    cap = (f"Pooled ROC of the test predictions of all folds; shaded: {band.conf:.0%} bootstrap band of sensitivity "
           f"at fixed specificities ({band.n_boot} stratified replicates, {nums.band_from}); dashed: chance.")
    if readers is not None and readers.points:
        cap += " Markers: physicians (circle junior, square senior)."
    h.append(figure_html(saved["roc"], "ROC curve with confidence band", cap, width="620px"))

    h.append("<h3>Per-fold results</h3>")
    fold_rows = []
    for m in nums.per_fold:
        fold_rows.append([str(m["fold"]), str(m["n"]), fmt(m["threshold"]), *[fmt(m.get(k)) for k in METRICS],
                          f"{m['tp']}/{m['fp']}/{m['tn']}/{m['fn']}"])
    fold_rows.append(["mean ± SD", "", "", *[mean_sd(nums.summary.get(k, {}).get("mean"),
                                                     nums.summary.get(k, {}).get("sd")) for k in METRICS], ""])
    h.append('<div class="scroll">' + table_html(
        ["Fold", "n", "Threshold", *[METRIC_HEADERS[m] for m in METRICS], "TP/FP/TN/FN"], fold_rows,
        caption="Metrics per test fold (threshold chosen on the fold's validation subset)") + "</div>")
    h.append(figure_html(saved["fold_metrics"], "Metrics per fold", "Each metric per fold (points) with the mean ± SD "
                         "over folds (bar and error bar).", width="760px"))
    h.append('<div class="figrow">')
    h.append(figure_html(saved["roc_folds"], "ROC per fold", "ROC curve of each test fold.", width="480px"))
    tn, fp, fn, tp = (int(v) for v in nums.confusion.ravel())
    h.append(figure_html(saved["confusion"], "Confusion matrix",
                         f"All test photos at their fold's threshold: TP {tp}, FP {fp}, TN {tn}, FN {fn}.",
                         width="380px"))
    h.append("</div>")

    h.append("<h3>External controls</h3>")
    h.append(_external_section(run.metrics, run.folds))

    if gallery != "none":
        h.append("<h2>3. Grad-CAM</h2>")
        h.append(grad_html)

    h.append("<h2>4. Configuration and software</h2>")
    files = ", ".join(f"{s.name}.png / .svg" for s in saved.values())
    h.append(f'<p class="meta">Figures saved under <code>report/figures/</code>: {esc(files)}.</p>')
    h.append(_config_section(run))
    h.append(f'<p class="meta">{esc(RESEARCH_LINE)}</p>')
    h.append("</body></html>")
    return "\n".join(h)
