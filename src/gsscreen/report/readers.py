"""Physicians against the model for the report: Table 2's physician rows and the points of the ROC figure.

Each reader is compared with the model on the photos that reader answered, with the model's call at the
threshold of the fold in which each photo was a test photo (the study's own calls), so McNemar's test pairs the
same decisions the study reports. The statistics come from :mod:`gsscreen.evaluation.readers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gsscreen.evaluation.reader_study import ReaderStudy
from gsscreen.report import figures as F
from gsscreen.report.format import METRIC_HEADERS, Table, fmt, fmt_ci, fmt_p, make_table, mean_sd, p_is
from gsscreen.report.numbers import ModelNumbers
from gsscreen.report.run import RunData, finite, match_photos, photo_key

READER_COLUMNS = ("reader", "role", "photo", "answer")
POSITION_TEXT = {"above": "yes, above (better)", "below": "yes, below (worse)", "inside": "no (inside)"}


@dataclass
class ReaderComparison:
    """``table``: one row per reader (see :func:`compare`); ``points``: their ROC points; ``display``: Table 2's
    physician rows as the report shows them; ``problems``: answers that could not be used."""

    table: pd.DataFrame
    points: list[F.ReaderPoint]
    display: Table | None = None
    problems: list[str] = field(default_factory=list)
    study: ReaderStudy | None = None


def read_answers(path: Path) -> pd.DataFrame:
    """The readers CSV (as ``gsscreen readers export`` writes it); raises ValueError naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"readers file not found: {path}")
    try:
        df = pd.read_csv(path, dtype={"reader": str, "role": str, "photo": str, "answer": str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: cannot read CSV ({exc})") from exc
    missing = [c for c in READER_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}")
    return df


def match_answers(answers: pd.DataFrame, run: RunData) -> tuple[pd.DataFrame, list[str]]:
    """The answers whose photo is among the study's test photos, renamed to the study's photo ids, with an int
    ``call`` column (1 = GS). Returns ``(answers, problems)``; raises ValueError when none matches."""
    from gsscreen.evaluation.readers import answers_to_labels

    pred = run.predictions.set_index("photo")
    a = answers.copy()
    a["photo"] = a["photo"].map(photo_key)
    matched = match_photos(sorted(set(a["photo"])), list(pred.index))
    problems: list[str] = []
    unknown = sorted(set(a["photo"]) - set(matched))
    if unknown:
        problems.append(
            f"{len(unknown)} answered photo(s) are not among the study's test photos and were left out, "
            f"e.g. {unknown[0]}"
        )
    a = a[a["photo"].isin(matched)].copy()
    if a.empty:
        raise ValueError("none of the readers' photos is among the study's test photos (check the photo names)")
    a["photo"] = a["photo"].map(matched)
    a["call"] = answers_to_labels(a["answer"].to_numpy(), where="answer").astype(int)
    if "late" in a.columns:  # the reader study's server marks answers given after the answer time (issue #11)
        late = int(pd.to_numeric(a["late"], errors="coerce").fillna(0).astype(bool).sum())
        if late:
            problems.append(f"{late} of {len(a)} answers were given late (after the display and answer time); "
                            "they are included")
    return a, problems


def compare(answers: pd.DataFrame, run: RunData, band: Any) -> tuple[pd.DataFrame, list[str]]:
    """Per-reader metrics, band position, McNemar vs the model and (with confidences) DeLong vs the model.

    Answers for photos that are not among the study's test predictions are left out and reported in the
    returned problems. Returns ``(table, problems)``; the table has the columns of
    :func:`gsscreen.evaluation.readers.reader_metrics` plus ``band_position, band_lo, band_hi, mcnemar_p,
    mcnemar_b, mcnemar_c, delong_p, reader_auc, model_auc``.
    """
    a, problems = match_answers(answers, run)
    return _compare_matched(a, run, band), problems


def _compare_matched(a: pd.DataFrame, run: RunData, band: Any) -> pd.DataFrame:
    from gsscreen.evaluation.readers import (
        answers_to_labels,
        mcnemar_test,
        reader_delong,
        reader_metrics,
        reader_point_vs_band,
    )

    pred = run.predictions.set_index("photo")
    truth = pred["label"]
    base = reader_metrics(a, truth)
    rows = []
    for rec in base.to_dict("records"):
        g = a[a["reader"] == rec["reader"]]
        y = pred.loc[g["photo"], "y"].to_numpy()
        model_call = pred.loc[g["photo"], "called"].to_numpy()
        reader_call = answers_to_labels(g["answer"].to_numpy(), where=f"answer of reader {rec['reader']!r}")
        mc = mcnemar_test(y, reader_call, model_call)
        rec.update(mcnemar_p=mc.p_value, mcnemar_b=mc.b, mcnemar_c=mc.c)
        if finite(rec["sensitivity"]) and finite(rec["specificity"]):
            pos = reader_point_vs_band(rec["sensitivity"], rec["specificity"], band)
            rec.update(band_position=pos["position"], band_lo=pos["band_lo"], band_hi=pos["band_hi"])
        conf = pd.to_numeric(g["confidence"], errors="coerce") if "confidence" in g.columns else None
        n1 = int(y.sum())
        if conf is not None and conf.notna().all() and min(n1, len(y) - n1) >= 2:
            d = reader_delong(y, conf.to_numpy(), pred.loc[g["photo"], "p_gs"].to_numpy(), g["answer"].to_numpy())
            rec.update(delong_p=d.p_value, reader_auc=d.auc1, model_auc=d.auc2)
        rows.append(rec)
    return pd.DataFrame(rows)


def reader_rows(
    readers_csv: Path, run: RunData, nums: ModelNumbers, include_incomplete: bool = False,
    group_column: str | None = None,
) -> ReaderComparison:
    """Read the readers CSV, compare every reader with the model (see :func:`compare`) and add the group
    statistics (:func:`gsscreen.evaluation.reader_study.reader_study`)."""
    from gsscreen.evaluation.reader_study import reader_study

    a, problems = match_answers(read_answers(readers_csv), run)
    table = _compare_matched(a, run, nums.band)
    pred = run.predictions.set_index("photo")
    study = reader_study(a, table, pred["y"], pred["p_gs"], group_column=group_column,
                         include_incomplete=include_incomplete)
    comp = study.completeness.set_index("reader")
    points = [
        F.ReaderPoint(str(r["reader"]), str(r.get("role", "")), 1.0 - float(r["specificity"]), float(r["sensitivity"]))
        for r in table.to_dict("records")
        if finite(r.get("sensitivity")) and finite(r.get("specificity"))
    ]
    header = ["Physician", "Role", "n", "Answered", *[METRIC_HEADERS[m] for m in ("accuracy", "recall",
                                                                                  "specificity", "precision", "f1")],
              "Position vs model's 95% band (descriptive)", "McNemar p vs model", "DeLong p vs model"]
    body = []
    for r in table.to_dict("records"):
        pos = r.get("band_position")
        band_txt = POSITION_TEXT.get(str(pos), "–") if isinstance(pos, str) else "–"
        if isinstance(pos, str) and finite(r.get("band_lo")):
            band_txt += f" [{fmt(r['band_lo'])}–{fmt(r['band_hi'])}]"
        delong = r.get("delong_p")
        delong_txt = "–" if delong is None or (isinstance(delong, float) and math.isnan(delong)) else fmt_p(delong)
        if delong_txt != "–" and finite(r.get("reader_auc")):
            delong_txt += f" (AUC {fmt(r['reader_auc'])} vs {fmt(r['model_auc'])})"
        c = comp.loc[r["reader"]]
        answered = f"{int(c['n_answered'])}/{int(c['n_photos'])}" + ("" if c["complete"] else " (incomplete)")
        body.append([
            r["reader"], r.get("role", ""), r.get("n", ""), answered, fmt(r["accuracy"]), fmt(r["sensitivity"]),
            fmt(r["specificity"]), fmt(r["precision"]), fmt(r["f1"]), band_txt, fmt_p(r.get("mcnemar_p")),
            delong_txt,
        ])
    display = make_table(
        "table2_physicians", header, body, caption="Table 2 (continued). Physicians on the same test photos",
        notes=[
            "Position vs band (descriptive, not a test): the model's pointwise 95% bootstrap band of sensitivity, "
            "read at the physician's specificity (above = better than the model). It ignores the physician's own "
            "sampling error and has no error rate of its own; use the tests. McNemar (test): the physician's calls "
            "against the model's calls (each photo at its fold's threshold) on the photos the physician answered. "
            "DeLong (test): the physician's answer + 1–5 confidence as a 10-level score against the model's "
            "P(GS), where confidences were given. p-values are two-sided and not adjusted for the number of "
            "physicians.",
        ],
    )
    return ReaderComparison(table=table, points=points, display=display, problems=problems, study=study)


def study_context(rc: ReaderComparison, nums: ModelNumbers) -> dict[str, Any]:
    """The context of the report's "Physicians as a group" section (``sections/readers.html.j2``)."""
    from gsscreen.evaluation.reader_study import mrmc_rows

    st = rc.study
    assert st is not None
    gname = st.group_column or "group"
    comp = make_table(
        "readers_completeness", ["Physician", gname.capitalize(), "Photos answered", "Share", "In group statistics"],
        [[r["reader"], r["group"] or "–", f"{r['n_answered']} of {r['n_photos']}", f"{r['share']:.0%}",
          "yes" if r["included"] else "no (incomplete)"] for r in st.completeness.to_dict("records")],
        caption="Completeness of the reading",
    )
    ctx: dict[str, Any] = {"completeness": comp, "notes": list(st.notes), "group_column": st.group_column}
    if len(st.groups):
        ctx["groups"] = make_table(
            "readers_group_means", [gname.capitalize(), "Physicians", "Accuracy", "Sensitivity", "Specificity"],
            [[g["group"], g["n_readers"], *[mean_sd(g[f"{m}_mean"], g[f"{m}_sd"]) for m in
                                            ("accuracy", "sensitivity", "specificity")]]
             for g in st.groups.to_dict("records")],
            caption="Physicians by group: mean ± SD over physicians (descriptive)",
        )
    if len(st.pairwise):
        ctx["pairwise"] = make_table(
            "readers_kappa", ["Physician A", "Physician B", "Photos", "Agreement", "Cohen's κ (95% CI)"],
            [[r["reader_a"], r["reader_b"], r["n"], fmt(r["agreement"]), fmt_ci(r["kappa"], r["lo"], r["hi"])]
             for r in st.pairwise.to_dict("records")],
            caption="Agreement between physicians (GS / control calls, photos both answered)",
        )
    if st.fleiss is not None:
        f = st.fleiss
        ctx["fleiss"] = (f"Fleiss' κ over all {int(st.completeness['included'].sum())} included "
                         f"physicians on the {f.n} photos all answered: {fmt_ci(f.kappa, f.lo, f.hi)} "
                         f"(observed agreement {fmt(f.observed)}; CI from the SE under κ = 0).")
    if st.mrmc is not None:
        res = st.mrmc
        rows = mrmc_rows(res, st.model_ci)
        ctx["mrmc"] = make_table(
            "readers_mrmc", ["", "AUC / difference (95% CI)", "p"],
            [[r["what"], fmt_ci(r["estimate"], r["lo"], r["hi"]), fmt_p(r["p_value"])] for r in rows],
            caption="Physicians vs model: Obuchowski–Rockette MRMC analysis (random readers, random cases)",
            notes=[
                f"{res.n_readers} physicians, {res.n_cases} photos ({res.n_pos} GS, {res.n_neg} control); "
                f"physician score: {st.mrmc_score}; model: P(GS). Empirical AUC; {res.cov_method} covariances; "
                f"F = {fmt(res.f_stat, 2)} on {res.df1} and {fmt(res.df2, 1)} df (Hillis 2007), {p_is(res.p_value)}. "
                "The model enters as a second modality read identically by every physician. With readers fixed "
                f"(inference for these physicians only): χ² = {fmt(res.fixed_readers_chi2, 2)}, "
                f"{p_is(res.fixed_readers_p)}.",
            ],
        )
    ctx["mrmc_note"] = st.mrmc_note
    return ctx
