"""Publication outputs next to the report: every table as CSV, LaTeX and DOCX, and the TRIPOD+AI checklist.

Tables are the report's own :class:`~gsscreen.report.format.Table` records (text cells, already formatted), so
the HTML, the CSV, the LaTeX and the Word copy of a table show the same numbers. Files go to
``report/tables/NAME.csv|.tex|.docx``, plus ``report/tables/all_tables.docx`` with every table in order (for a
supplement).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsscreen.report.format import Table, make_table

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
}
_LATEX_UNICODE = {"±": r"$\pm$", "–": "--", "−": "$-$", "κ": r"$\kappa$", "χ": r"$\chi$", "²": r"$^2$",
                  "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "•": r"\textbullet{}"}


def latex_escape(text: Any) -> str:
    """Text safe inside a LaTeX table cell (special characters escaped, common symbols as math)."""
    out = []
    for ch in str(text):
        out.append(_LATEX_SPECIAL.get(ch) or _LATEX_UNICODE.get(ch) or ch)
    return "".join(out)


def table_to_latex(t: Table) -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""
    ncol = max(len(t.header), max((len(r) for r in t.rows), default=0))
    lines = [r"\begin{table}[htbp]", r"\centering"]
    if t.caption:
        lines.append(rf"\caption{{{latex_escape(t.caption)}}}")
    lines.append(rf"\label{{tab:{latex_escape(t.name)}}}")
    lines.append(r"\begin{tabular}{" + "l" * ncol + "}")
    lines.append(r"\toprule")
    if t.has_header:
        lines.append(" & ".join(latex_escape(h) for h in t.header) + r" \\")
        lines.append(r"\midrule")
    for r in t.rows:
        cells = [latex_escape(c) for c in r] + [""] * (ncol - len(r))
        lines.append(" & ".join(cells) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    for n in t.notes:
        lines.append(r"\par\smallskip{\footnotesize " + latex_escape(n) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_csv(t: Table, path: Path) -> None:
    # utf-8-sig: spreadsheet programs then read "±" and "κ" correctly.
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        frame = t.to_frame()
        w = csv.writer(fh)
        w.writerow(frame.columns)
        w.writerows(frame.itertuples(index=False))


def _docx_table(doc: Any, t: Table) -> None:
    if t.caption:
        try:
            doc.add_paragraph(t.caption, style="Caption")
        except KeyError:  # a template without the Caption style
            doc.add_paragraph().add_run(t.caption).bold = True
    ncol = max(len(t.header), max((len(r) for r in t.rows), default=0))
    rows = ([t.header] if t.has_header else []) + t.rows
    table = doc.add_table(rows=len(rows), cols=ncol)
    table.style = "Table Grid"
    for i, r in enumerate(rows):
        for j in range(ncol):
            cell = table.cell(i, j)
            cell.text = r[j] if j < len(r) else ""
            if i == 0 and t.has_header:
                for run in cell.paragraphs[0].runs:
                    run.bold = True
    for n in t.notes:
        p = doc.add_paragraph(n)
        for run in p.runs:
            run.italic = True


def write_docx(tables: Sequence[Table], path: Path, title: str | None = None) -> None:
    from docx import Document

    doc = Document()
    if title:
        doc.add_heading(title, level=1)
    for k, t in enumerate(tables):
        if k:
            doc.add_paragraph()
        _docx_table(doc, t)
    doc.save(str(path))


def export_tables(tables: Iterable[Table], out_dir: Path, title: str = "Supplementary tables") -> list[Path]:
    """Write each table as ``NAME.csv``, ``NAME.tex`` and ``NAME.docx`` under ``out_dir``, and every table in
    one ``all_tables.docx``. Table names must be unique (a repeated name gets ``_2``, ``_3``…). Returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    seen: dict[str, int] = {}
    ts = list(tables)
    for t in ts:
        k = seen.get(t.name, 0) + 1
        seen[t.name] = k
        stem = t.name if k == 1 else f"{t.name}_{k}"
        write_csv(t, out_dir / f"{stem}.csv")
        (out_dir / f"{stem}.tex").write_text(table_to_latex(t), encoding="utf-8")
        write_docx([t], out_dir / f"{stem}.docx")
        written += [out_dir / f"{stem}.{ext}" for ext in ("csv", "tex", "docx")]
    if ts:
        write_docx(ts, out_dir / "all_tables.docx", title=title)
        written.append(out_dir / "all_tables.docx")
    return written


# ------------------------------------------------------------------------------------------------- TRIPOD+AI


@dataclass(frozen=True)
class ChecklistItem:
    """One TRIPOD+AI item (paraphrased) and the report sections (by id) that can answer it, best first."""

    item: str
    topic: str
    section_ids: tuple[str, ...]
    what: str = ""


# Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement: updated guidance for reporting clinical prediction
# models that use regression or machine learning methods. BMJ 2024;385:e078378. Items paraphrased; section ids
# are those of this report (other sections join the list simply by using these ids).
TRIPOD_AI: tuple[ChecklistItem, ...] = (
    ChecklistItem("1", "Title", ()),
    ChecklistItem("2", "Abstract", ()),
    ChecklistItem("3", "Background: context, rationale, existing models", ()),
    ChecklistItem("4", "Objectives: development and/or evaluation", ()),
    ChecklistItem("5", "Data sources, dates of collection", ("cohort",), "cohort table and photo counts"),
    ChecklistItem("6", "Participants: setting, eligibility", ("cohort",), "Table 1, participant flow"),
    ChecklistItem("7", "Data preparation (pre-processing, quality checks)", ("software", "cohort"),
                  "alignment settings in config.json; photos left out"),
    ChecklistItem("8", "Outcome: definition, how assessed", ("cohort",), "labels as given in the cohort table"),
    ChecklistItem("9", "Predictors: definition, measurement", ("software",), "frontal photo, aligned crop"),
    ChecklistItem("10", "Sample size", ("cohort",), "photos and subjects per class (no formal calculation)"),
    ChecklistItem("11", "Missing data", ("cohort",), "photos excluded, with reasons"),
    ChecklistItem("12", "Analytical methods: data use, model, tuning, performance measures",
                  ("performance", "software", "leakage"), "k-fold design, thresholds, configuration"),
    ChecklistItem("13", "Class imbalance", ("software",), "sampling / loss settings in config.json"),
    ChecklistItem("14", "Fairness", ("subgroups",), "performance by subgroup"),
    ChecklistItem("15", "Model output", ("performance",), "P(GS) and the fold threshold"),
    ChecklistItem("16", "Differences between development and evaluation data", ("external", "evaluation"),
                  "external validation"),
    ChecklistItem("17", "Ethical approval", ()),
    ChecklistItem("18", "Open science: funding, conflicts, protocol, registration, data and code", ("software",),
                  "software versions only"),
    ChecklistItem("19", "Patient and public involvement", ()),
    ChecklistItem("20", "Participants: flow, characteristics", ("cohort",), "participant flow and Table 1"),
    ChecklistItem("21", "Model development: participants and outcome events per analysis", ("cohort", "performance"),
                  "photos per fold and class"),
    ChecklistItem("22", "Model specification", ("software",), "architecture and training configuration"),
    ChecklistItem("23a", "Model performance with confidence intervals", ("performance", "calibration"),
                  "discrimination (and calibration where reported)"),
    ChecklistItem("23b", "Performance in key subgroups", ("subgroups",), "subgroup results"),
    ChecklistItem("24", "Model updating / recalibration", ("calibration",), "calibration"),
    ChecklistItem("25", "Interpretation", ()),
    ChecklistItem("26", "Limitations", ()),
    ChecklistItem("27", "Usability and implications", ("readers", "gradcam"),
                  "comparison with physicians; Grad-CAM maps"),
)


def checklist_rows(sections: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per TRIPOD+AI item: where this report answers it (the present sections among its ids, as
    ``[(number, title, id)]``) or nothing (then the row says "not reported": the manuscript must)."""
    present = {s.id: s for s in sections}
    rows = []
    for it in TRIPOD_AI:
        where = [(present[i].number, present[i].title, i) for i in it.section_ids if i in present]
        rows.append({"item": it.item, "topic": it.topic, "where": where, "what": it.what if where else ""})
    return rows


def checklist_table(rows: Sequence[dict[str, Any]]) -> Table:
    body = []
    for r in rows:
        where = "; ".join(f"Section {n} ({t})" for n, t, _i in r["where"]) or "not reported"
        body.append([r["item"], r["topic"], where + (f": {r['what']}" if r["what"] else "")])
    return make_table(
        "tripod_ai_checklist", ["Item", "Topic", "Where in this report"], body, cls="checklist",
        caption="TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378), items paraphrased",
        notes=["\"Not reported\": this report does not answer the item; the manuscript must. Check every item "
               "against the official checklist."],
    )
