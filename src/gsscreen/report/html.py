"""One self-contained HTML report of a study's run folder, for a manuscript's supplement.

Everything is inside the one file: figures as base64 data URIs (SVG for the plots, so they print sharp; JPEG for
the Grad-CAM thumbnails), CSS inline, no JavaScript, no link to anything outside the file.

The page is rendered from Jinja2 templates under ``report/templates/`` with autoescaping on: every piece of text
that comes from the user's data (photo names, reader names, config values) reaches the page only through the
template, escaped. ``report.html.j2`` is the frame; each section is a partial ``sections/NAME.html.j2`` that
reads its own context as ``s.ctx``. To add a section: write the partial and add a :class:`Section` to the list
:func:`build_report` renders (its :class:`~gsscreen.report.format.Table` values are exported to CSV, LaTeX and
DOCX with the others).

The same figures are written as PNG (300 dpi) and SVG under ``RUN_DIR/report/figures/``.
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from gsscreen.report import figures as F
from gsscreen.report.format import (
    METRIC_HEADERS,
    METRICS,
    RESEARCH_LINE,
    Figure,
    Table,
    data_uri,
    esc,
    fmt,
    fmt_p,
    frame_table,
    make_table,
    mean_sd,
)
from gsscreen.report.numbers import ModelNumbers, find_key, model_numbers
from gsscreen.report.run import RunData, finite, load_run, match_photos

# Re-exported: older callers import these from here.
__all__ = [
    "GALLERY_CHOICES", "METRICS", "METRIC_HEADERS", "RESEARCH_LINE", "ModelNumbers", "Section", "build_report",
    "esc", "fmt", "fmt_p", "mean_sd", "model_numbers", "render_report",
]

GALLERY_CHOICES = ("gs", "all", "none")
TEMPLATES = Path(__file__).parent / "templates"


# ----------------------------------------------------------------------------------------------------- templating


@dataclass
class Section:
    """One numbered section of the report: ``template`` (a partial under ``templates/``) rendered with ``ctx``.

    ``number`` is given when the report is assembled, so other parts (the TRIPOD+AI checklist) can cite it.
    """

    id: str
    title: str
    template: str
    ctx: dict[str, Any] = field(default_factory=dict)
    number: int = 0

    def tables(self) -> Iterator[Table]:
        """Every :class:`Table` in the context (also inside lists, dicts and objects with a ``display`` table)."""
        yield from _tables_in(self.ctx)


def _tables_in(obj: Any) -> Iterator[Table]:
    if isinstance(obj, Table):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _tables_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tables_in(v)
    elif hasattr(obj, "__dataclass_fields__") and not isinstance(obj, (Figure, type)):
        for name in obj.__dataclass_fields__:
            v = getattr(obj, name)
            if isinstance(v, (Table, list, tuple, Mapping)) or hasattr(v, "__dataclass_fields__"):
                yield from _tables_in(v)


def _finalize(value: Any) -> Any:
    # Escape with html.escape (quotes as &quot;) rather than markupsafe's &#34;, the way the report always wrote
    # them; Markup (template-built HTML) passes through. Autoescaping stays on underneath as the safety net.
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The report's Jinja2 environment: templates from the package, autoescaped, undefined names are errors."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def render_report(sections: Sequence[Section], **page: Any) -> str:
    """The whole page: ``sections`` numbered in order inside ``report.html.j2``. ``page`` holds the frame's
    values (``heading, run_name, source_label, generated, version, synthetic_note, problems``)."""
    for i, s in enumerate(sections, start=1):
        s.number = i
    ctx = {
        "heading": "gsscreen study report", "source_label": "Run folder", "run_name": "", "synthetic_note": "",
        "problems": [], "research_line": RESEARCH_LINE,
        "generated": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "css": Markup((TEMPLATES / "report.css").read_text(encoding="utf-8")),
    }
    ctx.update(page)
    ctx["sections"] = list(sections)
    return environment().get_template("report.html.j2").render(**ctx)


def figure(saved: F.SavedFigure, alt: str, caption: str, width: str = "100%") -> Figure:
    """The saved figure, embedded as an SVG data URI (vector: sharp on screen and paper)."""
    return Figure.from_svg(saved.svg, alt, caption, width)


def _jpeg_uri(path: Path, quality: int = 88) -> str:
    from PIL import Image

    with Image.open(path) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="JPEG", quality=quality)
    return data_uri(buf.getvalue(), "image/jpeg")


# ----------------------------------------------------------------------------------------------------- sections


def cohort_section(run: RunData, flow: Any = None, flow_fig: F.SavedFigure | None = None) -> Section:
    pred = run.predictions
    n_gs, n_ctrl = int((pred["y"] == 1).sum()), int((pred["y"] == 0).sum())
    external = (run.metrics or {}).get("kind") == "external_validation"  # one fixed model: no folds, no test subsets
    counts = f"{len(pred)} ({n_gs} GS, {n_ctrl} control)"
    rows: list[tuple[str, str]] = (
        [("Photos analysed", counts)] if external
        else [("Test photos (all folds)", counts), ("Folds", str(len(run.folds)))]
    )
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
    what = "no face, quality gate or reading failures" if external else "alignment or reading failures"
    rows.append((f"Photos left out ({what})", "not recorded" if fails is None else str(n_fail)))
    ctx: dict[str, Any] = {"summary": make_table("cohort_summary", ["", ""], rows, cls="kv",
                                            caption="Cohort and photos analysed")}
    if fails is not None and n_fail:
        cols = [c for c in fails.columns if c in ("file", "image", "photo", "problem", "reason", "stage")] or list(
            fails.columns
        )
        ctx["failures"] = frame_table("left_out_photos", fails[cols].head(30))
        ctx["failures_more"] = f" (first 30 of {n_fail})" if n_fail > 30 else ""
    if flow is not None:
        from gsscreen.report.flow import flow_rows

        ctx["flow_table"] = make_table("participant_flow", ["", "GS", "Control", "Class unknown", "Total"],
                                       flow_rows(flow), caption="Participant flow (photos)", notes=flow.notes)
        if flow_fig is not None:
            ctx["flow_figure"] = figure(flow_fig, "Participant flow diagram",
                                        f"Participant flow (STARD-style), from the {flow.source}, failures.csv and "
                                        "predictions.csv.", width="640px")
    ctx.update(_table1(run))
    return Section("cohort", "Cohort", "sections/cohort.html.j2", ctx)


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


def _table1(run: RunData) -> dict[str, Any]:
    t = _study_cohort(run)
    if t is None:
        why = ("No cohort table was found" if run.cohort is None
               else f"The cohort table {run.cohort_source} does not list the study's photos")
        return {"table1_missing": why}
    from gsscreen.evaluation.demographics import demographics_table

    try:
        demo = demographics_table(t, welch=False)
    except (ValueError, KeyError) as exc:
        return {"table1_error": str(exc)}
    frame = demo.to_frame()
    scope = "the photos in the study" if len(t) < len(run.cohort) else "the whole cohort"  # type: ignore[arg-type]
    scope += f", from {run.cohort_source.name}" if run.cohort_source else ""
    frame.index.name = ""
    foot = "Age: mean ± SD (sample SD), Student's two-sample t-test; sex: counts (% of known), Pearson's chi-squared."
    t1 = frame_table("table1_demographics", frame, cls="t1", index=True,
                     caption=f"Table 1. Demographics ({scope}: {len(t)} photos)")
    t1.notes.append(foot)
    return {"table1": t1, "table1_notes": list(getattr(demo, "notes", []) or [])}


def _baseline_row(metrics: Mapping[str, Any]) -> list[str] | None:
    """The logistic-regression baseline's row (mean ± SD per metric) from metrics.json, or None."""
    from gsscreen.evaluation.metrics import summarize_folds

    base = metrics.get("baseline") if isinstance(metrics.get("baseline"), Mapping) else None
    if base is None:
        base = find_key(metrics, ("baseline", "logistic"))
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


def _external_table(metrics: Mapping[str, Any], folds: Sequence[int]) -> Table | None:
    """False-positive rates on the external control sets: one row per fold, one column per set, then mean ± SD.

    Reads ``model.external`` of metrics.json (``{set: {"values": [per fold], "mean", "sd", "n_photos"}}``); other
    shapes (``{fold: rate}``, ``{set: rate}``) are shown as they are. None when there is none.
    """
    model = metrics.get("model") if isinstance(metrics.get("model"), Mapping) else {}
    ext = model.get("external") if "external" in model else find_key(
        {k: v for k, v in metrics.items() if "baseline" not in str(k).lower()}, ("external",)
    )
    if ext is None or (isinstance(ext, (list, Mapping)) and not ext):
        return None
    name = "external_controls"
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
        return make_table(name, ["", *names], rows, caption=caption)
    if isinstance(ext, Mapping):
        items = list(ext.items())
    elif isinstance(ext, list):
        items = [(str(i), v) for i, v in enumerate(ext)]
    else:
        return make_table(name, ["", ""], [["External controls", str(ext)]], caption=caption)
    rows = [[str(k), fmt(v) if finite(v) else json.dumps(v, default=str)] for k, v in items]
    vals = [float(v) for _k, v in items if finite(v)]
    if len(vals) > 1:
        rows.append(["mean ± SD", mean_sd(np.mean(vals), np.std(vals, ddof=1))])
    return make_table(name, ["", "False-positive rate"], rows, caption=caption)


def performance_section(
    run: RunData, nums: ModelNumbers, readers: Any, saved: Mapping[str, F.SavedFigure]
) -> Section:
    header = ["", *[METRIC_HEADERS[m] for m in METRICS]]
    rows: list[list[str]] = [
        ["Model (mean ± SD over folds)", *[mean_sd(nums.summary.get(m, {}).get("mean"),
                                                   nums.summary.get(m, {}).get("sd")) for m in METRICS]],
    ]
    base = _baseline_row(run.metrics)
    if base is not None:
        rows.append(["Baseline: logistic regression on embeddings", *base])
    t2 = make_table("table2_performance", header, rows,
               caption=f"Table 2. Model over {len(nums.per_fold)} test folds, each at its own threshold")
    ci_txt = []
    if nums.auc_ci_delong:
        ci_txt.append(f"DeLong 95% CI {fmt(nums.auc_ci_delong[0])}–{fmt(nums.auc_ci_delong[1])}")
    if nums.auc_ci_bootstrap:
        ci_txt.append(f"bootstrap 95% CI {fmt(nums.auc_ci_bootstrap[0])}–{fmt(nums.auc_ci_bootstrap[1])}")
    base_part = run.metrics.get("baseline") if isinstance(run.metrics.get("baseline"), Mapping) else {}
    base_roc = base_part.get("pooled_roc") if isinstance(base_part.get("pooled_roc"), Mapping) else None
    vs = run.metrics.get("model_vs_baseline_delong")
    base_line = ""
    if base_roc is not None and finite(base_roc.get("auc")):
        base_line = f"Baseline pooled AUC: {fmt(base_roc['auc'])}"
        if isinstance(vs, Mapping) and finite(vs.get("p_value")):
            base_line += f"; DeLong test model vs baseline: p = {fmt_p(vs['p_value'])}"

    band = nums.band
    cap = (f"Pooled ROC of the test predictions of all folds; shaded: {band.conf:.0%} bootstrap band of sensitivity "
           f"at fixed specificities ({band.n_boot} stratified replicates, {nums.band_from}); dashed: chance.")
    if readers is not None and readers.points:
        cap += " Markers: physicians (circle junior, square senior)."
    fold_rows = []
    for m in nums.per_fold:
        fold_rows.append([str(m["fold"]), str(m["n"]), fmt(m["threshold"]), *[fmt(m.get(k)) for k in METRICS],
                          f"{m['tp']}/{m['fp']}/{m['tn']}/{m['fn']}"])
    fold_rows.append(["mean ± SD", "", "", *[mean_sd(nums.summary.get(k, {}).get("mean"),
                                                     nums.summary.get(k, {}).get("sd")) for k in METRICS], ""])
    per_fold = make_table("per_fold_metrics", ["Fold", "n", "Threshold", *[METRIC_HEADERS[m] for m in METRICS],
                                          "TP/FP/TN/FN"], fold_rows,
                     caption="Metrics per test fold (threshold chosen on the fold's validation subset)")
    tn, fp, fn, tp = (int(v) for v in nums.confusion.ravel())
    figs = {
        "roc": figure(saved["roc"], "ROC curve with confidence band", cap, width="620px"),
        "fold_metrics": figure(saved["fold_metrics"], "Metrics per fold", "Each metric per fold (points) with the "
                               "mean ± SD over folds (bar and error bar).", width="760px"),
        "roc_folds": figure(saved["roc_folds"], "ROC per fold", "ROC curve of each test fold.", width="480px"),
        "confusion": figure(saved["confusion"], "Confusion matrix",
                            f"All test photos at their fold's threshold: TP {tp}, FP {fp}, TN {tn}, FN {fn}.",
                            width="380px"),
    }
    ctx = {
        "table2": t2, "auc": fmt(nums.auc), "auc_ci": "; ".join(ci_txt), "baseline_line": base_line,
        "baseline_description": base_part.get("description") if isinstance(base_part.get("description"), str)
        else "",
        "readers": readers, "figures": figs, "per_fold": per_fold,
        "external": _external_table(run.metrics, run.folds),
        "external_note": "No external control set was evaluated in this run.",
    }
    if "main" in saved:
        figs["main"] = figure(saved["main"], "Multi-panel figure", "A: pooled ROC with its bootstrap band (and the "
                              "physicians). B: ROC per test fold. C: confusion matrix (each photo at its fold's "
                              "threshold). D: metrics per fold, mean ± SD. Editable SVG: report/figures/"
                              "figure_main.svg.", width="760px")
    return Section("performance", "Performance", "sections/performance.html.j2", ctx)


def _strip_prefix(text: str, prefix: str) -> str:
    # The banner already says "SYNTHETIC COHORT"; the demo's note starts with the same words.
    t = text.strip()
    return t[len(prefix) :].strip() if t.upper().startswith(prefix.upper()) else t


def config_section(run: RunData, saved: Mapping[str, F.SavedFigure], table_files: str = "") -> Section:
    def pretty(d: dict[str, Any], name: str) -> str:
        return json.dumps(d, indent=2, sort_keys=True, default=str) if d else f"({name} not found)"

    ctx = {
        "figure_files": ", ".join(f"{s.name}.png / .svg" for s in saved.values())
        + " (SVG text stays editable)",
        "table_files": table_files,
        "config": pretty(run.config, "config.json"),
        "versions": pretty(run.versions, "versions.json"),
    }
    return Section("software", "Configuration and software", "sections/config.html.j2", ctx)


# ----------------------------------------------------------------------------------------------------- build


def build_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    readers_csv: str | Path | None = None,
    cover_eyes: bool = True,
    gallery: str = "gs",
    max_gallery: int | None = 48,
    cohort_csv: str | Path | None = None,
    n_boot: int = 200,
    seed: int = 0,
    include_incomplete_readers: bool = False,
    reader_group_column: str | None = None,
    subgroups: Sequence[str] = (),
    prevalence: float | None = None,
) -> Path:
    """Write the study report of ``run_dir`` as one self-contained HTML file; returns its path.

    Args:
        run_dir: a run folder written by ``gsscreen study``.
        out: the HTML file (default ``RUN_DIR/report/report.html``). Figures always go to
            ``RUN_DIR/report/figures/`` (PNG at 300 dpi and SVG).
        readers_csv: physicians' answers (``reader, role, photo, answer[, confidence]``, as the reader-study app
            exports): adds their rows to Table 2 and their points to the ROC figure.
        cover_eyes: cover the eyes with a grey bar in every exported picture of a face (the Grad-CAM overlays and
            gallery), as the paper did; on by default (children's faces in a supplement), False to show them.
        gallery: Grad-CAM gallery of the ``"gs"`` photos, ``"all"`` test photos, or ``"none"``.
        max_gallery: at most this many Grad-CAM maps (None = all).
        cohort_csv: the cohort table for Table 1 (default: found from config.json / next to the run).
        n_boot, seed: bootstrap replicates and seed when the band must be recomputed (metrics.json lacks it).
        include_incomplete_readers: also use physicians who answered under 90% of the photos in the group
            statistics (κ, group means, MRMC); by default they are flagged and left out.
        reader_group_column: readers-CSV column that groups physicians (default: group / experience / seniority
            / level / role, the first present).
        subgroups: cohort columns to report results by (besides syndrome, age band and sex).
        prevalence: GS prevalence of the intended population, for PPV / NPV there and the decision curve.
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

        readers = reader_rows(Path(readers_csv), run, nums, include_incomplete=include_incomplete_readers,
                              group_column=reader_group_column)

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

    roc_kwargs = {"fpr": nums.pooled_fpr, "tpr": nums.pooled_tpr, "auc": nums.auc, "auc_ci": auc_ci,
                  "band": (band.fpr, band.lo, band.hi), "readers": readers.points if readers else (),
                  "band_label": f"{band.conf:.0%} CI (bootstrap)"}
    saved["main"] = F.save_figure(
        F.panel_figure(roc_kwargs, nums.fold_curves, nums.confusion, nums.per_fold,
                       folds=[m["fold"] for m in nums.per_fold]), fig_dir, "figure_main")

    from gsscreen.report.flow import flow_figure, participant_flow

    flow = participant_flow(run)
    saved["flow"] = F.save_figure(flow_figure(flow), fig_dir, "participant_flow")

    sections = [cohort_section(run, flow, saved["flow"]), performance_section(run, nums, readers, saved)]
    if readers is not None and readers.study is not None:
        from gsscreen.report.readers import study_context

        sections.append(Section("readers", "Physicians as a group", "sections/readers.html.j2",
                                study_context(readers, nums)))
    from gsscreen.report.evidence import evidence_sections

    sections += [Section(**d) for d in evidence_sections(run, fig_dir, subgroups, prevalence, n_boot=max(n_boot, 1000),
                                                         seed=seed)]
    if gallery != "none":
        sections.append(gradcam_section(run, report_dir, fig_dir, gallery, max_gallery, cover_eyes))
    sections.append(config_section(run, saved))
    write_report(
        sections, out_path, report_dir,
        run_name=run.run_dir.name,
        version=_version(),
        synthetic_note=_strip_prefix(run.synthetic_note, "SYNTHETIC COHORT:") if run.synthetic_note else "",
        random_init_note=str(run.metrics.get("random_init_note") or ""),  # trained without its pretrained weights
        problems=list(run.problems),
    )
    return out_path


def write_report(sections: list[Section], out_path: Path, report_dir: Path, **page: Any) -> Path:
    """Finish a report: append the TRIPOD+AI checklist (pointing at the sections present), write every table as
    CSV, LaTeX and DOCX under ``report_dir/tables/``, and render the HTML to ``out_path``.

    ``page``: the frame's values (see :func:`render_report`). Used by every command that writes a report.
    """
    from gsscreen.report.publish import checklist_rows, checklist_table, export_tables

    for i, s in enumerate(sections, start=1):
        s.number = i
    rows = checklist_rows(sections)
    sections.append(Section("tripod", "TRIPOD+AI checklist", "sections/tripod.html.j2",
                            {"rows": rows, "table": checklist_table(rows)}))
    tables = [t for s in sections for t in s.tables()]
    written = export_tables(tables, report_dir / "tables")
    names = sorted({p.stem for p in written if p.suffix == ".csv"})
    for s in sections:
        if s.id == "software":
            s.ctx["table_files"] = ", ".join(names) + " (and all_tables.docx)" if names else ""
    body = render_report(sections, **page)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(body, encoding="utf-8")
    return out_path


def _version() -> str:
    from gsscreen import __version__

    return str(__version__)


def _fig3(rows: Any, what: str) -> dict[str, Any]:
    from gsscreen.explain_regions import fig3_context

    return fig3_context(rows, what)


def gradcam_section(
    run: RunData, report_dir: Path, fig_dir: Path, which: str, max_gallery: int | None, cover_eyes: bool
) -> Section:
    from gsscreen.explain import gallery as gallery_figure
    from gsscreen.report.gallery import fold_gradcams

    res = fold_gradcams(run, report_dir / "gradcam", which=which, max_maps=max_gallery, cover_eyes=cover_eyes)
    what = "GS test photos" if which == "gs" else "test photos"
    ctx: dict[str, Any] = {"what": what, "cover_eyes": cover_eyes, "tiles": []}
    maps = res.maps
    if len(maps):
        gal = gallery_figure(maps, fig_dir / "gradcam_gallery", cover_eyes=cover_eyes)
        asked = min(res.eligible, max_gallery) if max_gallery is not None else res.eligible
        n_unusable = asked - len(maps)
        ctx.update(
            n_on=res.n_on_face,
            limited=(f" ({asked} of the {res.eligible} {what}, taken in turn from each fold)"
                     if asked < res.eligible else f" (all {res.eligible} {what})"),
            unusable=(f" {n_unusable} photo(s) gave no usable map (no crop, or an empty map): listed below."
                      if n_unusable else ""),
            files=f"{gal.png.name}, {gal.svg.name}",
            fig3=_fig3(res.rows, what),
            tiles=[
                {
                    "uri": _jpeg_uri(Path(rec["overlay"])), "name": Path(str(rec["file"])).name,
                    "fold": int(rec["fold"]), "on_face": bool(rec["on_face"]),
                    "share": f"{float(rec['on_face_share']):.0%}",
                    "p": f", P(GS) {float(rec['p_gs']):.2f}" if finite(rec.get("p_gs")) else "",
                }
                for rec in maps.to_dict("records")
            ],
        )
    if res.problems:
        ctx["problems"] = res.problems[:20]
        ctx["problems_more"] = f" (first 20 of {len(res.problems)})" if len(res.problems) > 20 else ""
    return Section("gradcam", "Grad-CAM", "sections/gradcam.html.j2", ctx)
