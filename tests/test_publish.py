"""Publication outputs: tables as CSV / LaTeX / DOCX, the participant flow, the TRIPOD+AI page, editable SVG text,
the multi-panel figure and eyes covered by default."""

from __future__ import annotations

import csv
import inspect
import re
from pathlib import Path

import pandas as pd
import pytest
from test_report import EVIL, make_readers, make_run

from gsscreen.report import build_report, load_run
from gsscreen.report.flow import participant_flow, reason_of
from gsscreen.report.format import make_table
from gsscreen.report.html import Section
from gsscreen.report.publish import checklist_rows, export_tables, latex_escape, table_to_latex


def _html_rows(html: str, caption: str) -> list[list[str]]:
    i = html.index(f"<caption>{caption}")
    body = html[html.index("<tbody>", i):html.index("</tbody>", i)]
    unesc = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&#x27;": "'", "&amp;": "&"}

    def text(c: str) -> str:
        for k, v in unesc.items():
            c = c.replace(k, v)
        return c

    return [[text(c) for c in re.findall(r"<td>(.*?)</td>", r)] for r in re.findall(r"<tr>(.*?)</tr>", body)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("pub")
    run, _c, pred = make_run(root / "s")
    make_readers(root / "r.csv", pred)
    out = build_report(run, readers_csv=root / "r.csv", gallery="none")
    return run, out.read_text(encoding="utf-8")


def test_every_table_is_exported_and_matches_the_page(report: tuple[Path, str]) -> None:
    from docx import Document

    run, html = report
    tdir = run / "report" / "tables"
    names = ["table2_performance", "table2_physicians", "per_fold_metrics", "table1_demographics",
             "participant_flow", "readers_kappa", "readers_mrmc", "tripod_ai_checklist"]
    for n in names:
        for ext in ("csv", "tex", "docx"):
            assert (tdir / f"{n}.{ext}").is_file(), f"{n}.{ext}"
    # CSV = the page's cells (header row, then the body).
    with (tdir / "table2_physicians.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    page = _html_rows(html, "Table 2 (continued)")
    assert rows[0][0] == "Physician" and rows[1:] == page
    assert any(r[0] == "Dr <Junior> A" for r in rows[1:])
    # DOCX: the same cells, header bold.
    doc = Document(str(tdir / "per_fold_metrics.docx"))
    t = doc.tables[0]
    got = [[c.text for c in r.cells] for r in t.rows]
    assert got[1:] == _html_rows(html, "Metrics per test fold")
    assert got[0][:3] == ["Fold", "n", "Threshold"] and t.rows[0].cells[0].paragraphs[0].runs[0].bold
    assert len(Document(str(tdir / "all_tables.docx")).tables) >= len(names)
    # LaTeX: booktabs, user text escaped.
    tex = (tdir / "table2_physicians.tex").read_text(encoding="utf-8")
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"Dr \textless{}Junior\textgreater{} A" in tex
    assert "Tables saved under" in html and "all_tables.docx" in html


def test_latex_escaping_and_repeated_names(tmp_path: Path) -> None:
    assert latex_escape("50% of a_b & c#1 {x} ~ ^ \\ $") == (
        r"50\% of a\_b \& c\#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{} \$")
    assert latex_escape("0.8 ± 0.1 (0.7–0.9)") == r"0.8 $\pm$ 0.1 (0.7--0.9)"
    t = make_table("t", ["A", "B"], [["1", "2"], ["3"]], caption="Cap_1", notes=["n%"])
    tex = table_to_latex(t)
    assert r"\caption{Cap\_1}" in tex and "3 &  \\\\" in tex and r"n\%" in tex
    paths = export_tables([t, make_table("t", [""], [["x"]])], tmp_path)
    assert (tmp_path / "t_2.csv").is_file() and (tmp_path / "all_tables.docx") in paths
    # A key-value table without a header gets generic column names in its CSV.
    assert (tmp_path / "t_2.csv").read_text(encoding="utf-8-sig").splitlines()[0] == "column 1"


def test_participant_flow_counts_per_class(tmp_path: Path) -> None:
    run, cohort, _pred = make_run(tmp_path / "s")
    # The two failed photos are rows of the cohort (as in a real study): one GS, one control.
    extra = cohort.iloc[:2].copy()
    extra["image"] = ["photos/blurry.jpg", EVIL]
    extra["label"] = ["GS", "control"]
    extra["subject_id"] = ["x1", "x2"]
    pd.concat([cohort, extra]).to_csv(tmp_path / "s" / "cohort.csv", index=False)
    flow = participant_flow(load_run(run, cohort_csv=tmp_path / "s" / "cohort.csv"))
    n_gs, n_ctrl = int((cohort.label == "GS").sum()), int((cohort.label == "control").sum())
    assert (flow.photos_in.gs, flow.photos_in.control) == (n_gs + 1, n_ctrl + 1)
    reasons = dict(flow.excluded)
    assert (reasons["no face found"].gs, reasons["no face found"].control) == (1, 0)
    assert (reasons["read: unreadable"].gs, reasons["read: unreadable"].control) == (0, 1)
    assert (flow.analysed.gs, flow.analysed.control) == (n_gs, n_ctrl)
    assert flow.unaccounted.total == 0 and not flow.notes


def test_flow_without_a_matching_cohort_says_so(report: tuple[Path, str]) -> None:
    _run, html = report
    assert "Participant flow (photos)" in html and "participant_flow.png / .svg" in html
    assert "Photos in − excluded ≠ analysed" in html  # the fixture's failures are not cohort rows


def test_reason_grouping() -> None:
    assert reason_of("[duplicate_image] same bytes as x.jpg", "cohort") == "cohort check: duplicate image"
    assert reason_of("face too small (31 px)", "align") == "face too small"
    assert reason_of("cannot read: Permission denied", "read") == "read: cannot read"


def test_tripod_points_to_sections_present(report: tuple[Path, str]) -> None:
    _run, html = report
    sec = html[html.index('<section id="tripod">'):]
    assert '<a href="#cohort">Section 1 (Cohort)</a>' in sec
    assert re.search(r"<td>17</td><td>Ethical approval</td><td><span class=\"desc\">not reported</span>", sec)
    row14 = re.search(r"<td>14</td><td>Fairness</td><td>(.*?)</td>", sec)
    assert row14
    if '<section id="subgroups">' in html:  # the subgroup section, where the report has one
        assert 'href="#subgroups"' in row14.group(1)
    else:
        assert "not reported" in row14.group(1)
    # A subgroup section added by another part of the code is found through its id.
    secs = [Section("cohort", "Cohort", "x", number=1), Section("subgroups", "Subgroups", "x", number=2)]
    rows = {r["item"]: r for r in checklist_rows(secs)}
    assert rows["14"]["where"] == [(2, "Subgroups", "subgroups")] and rows["17"]["where"] == []


def test_svg_text_is_editable_and_the_panel_figure_has_letters(report: tuple[Path, str]) -> None:
    run, html = report
    figs = run / "report" / "figures"
    roc = (figs / "roc.svg").read_text(encoding="utf-8")
    assert "<text" in roc and "Sensitivity (true-positive rate)" in roc  # text, not glyph paths
    main = (figs / "figure_main.svg").read_text(encoding="utf-8")
    for letter in "ABCD":
        assert re.search(rf">{letter}</text>", main), letter
    assert (figs / "figure_main.png").is_file() and "Multi-panel figure" in html
    assert (figs / "participant_flow.svg").read_text(encoding="utf-8").count("<text") >= 3


def test_eyes_are_covered_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert inspect.signature(build_report).parameters["cover_eyes"].default is True
    from typer.testing import CliRunner

    import gsscreen.report as rep
    from gsscreen.cli import app

    seen = {}

    def fake(run_dir: Path, **kw: object) -> Path:
        seen.update(kw)
        return tmp_path / "r.html"

    monkeypatch.setattr(rep, "build_report", fake)
    assert CliRunner().invoke(app, ["report", str(tmp_path)]).exit_code == 0
    assert seen["cover_eyes"] is True
    assert CliRunner().invoke(app, ["report", str(tmp_path), "--no-cover-eyes"]).exit_code == 0
    assert seen["cover_eyes"] is False


def test_flow_without_a_cohort_table(tmp_path: Path) -> None:
    run, _c, pred = make_run(tmp_path / "s")
    (tmp_path / "s" / "cohort.csv").unlink()
    flow = participant_flow(load_run(run))
    assert flow.photos_in.total == len(pred) + 2 and flow.photos_in.unknown == 2
    assert "No cohort table" in flow.notes[0] and flow.source.startswith("predictions.csv")


def test_gradcam_gallery_svg_keeps_its_labels_as_text(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from gsscreen.explain import gallery

    ov = tmp_path / "ov.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(ov)  # a flat synthetic tile, no face needed
    res = gallery([{"overlay": str(ov), "on_face_share": 0.8, "on_face": True, "file": "x/tile_01.png"}],
                  tmp_path / "g")
    svg = res.svg.read_text(encoding="utf-8")
    assert "<text" in svg and "tile_01.png" in svg
