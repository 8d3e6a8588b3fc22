"""The physicians as a group in the report: completeness, group means, κ and the MRMC comparison."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from test_report import make_readers, make_run

from gsscreen.evaluation.mrmc import readers_vs_model
from gsscreen.evaluation.reader_study import completeness, find_group_column, group_means, reader_study
from gsscreen.evaluation.readers import reader_score
from gsscreen.report import build_report


def _with_incomplete(path: Path, pred: pd.DataFrame) -> pd.DataFrame:
    df = make_readers(path, pred)
    extra = df[df.reader == "Dr B"].head(4).assign(reader="Dr D", role="senior")
    df = pd.concat([df, extra], ignore_index=True)
    df.to_csv(path, index=False)
    return df


def _section(html: str, sid: str) -> str:
    i = html.index(f'<section id="{sid}">')
    return html[i:html.index("</section>", i)]


def _row(html: str, first: str) -> str:
    m = re.search(r"<tr><td>" + re.escape(first) + r"</td>.*?</tr>", html)
    assert m, first
    return m.group(0)


def test_report_group_statistics_leave_out_the_incomplete_reader(tmp_path: Path) -> None:
    run, _c, pred = make_run(tmp_path / "s")
    df = _with_incomplete(tmp_path / "r.csv", pred)
    html = build_report(run, readers_csv=tmp_path / "r.csv", gallery="none").read_text(encoding="utf-8")
    # Table 2 (continued) flags the incomplete reader; the band is called descriptive, the others tests.
    assert "4/120 (incomplete)" in _row(html, "Dr D") and "120/120" in _row(html, "Dr B")
    assert "Position vs model&#x27;s 95% band (descriptive)" in html or "(descriptive)" in html
    assert "descriptive, not a test" in html and "McNemar (test)" in html and "DeLong (test)" in html

    sec = _section(html, "readers")
    assert "no (incomplete)" in _row(sec, "Dr D") and "4 of 120" in _row(sec, "Dr D")
    truth = pred.set_index("photo")["label"]
    full = df[df.reader != "Dr D"]

    # Group means over complete readers only, computed independently.
    def acc(g: pd.DataFrame) -> float:
        return float((g.answer.to_numpy() == truth.loc[g.photo].to_numpy()).mean())

    accs = {r: acc(g) for r, g in full.groupby("reader")}
    jun = [accs["Dr <Junior> A"], accs["Dr B"]]
    assert f"{np.mean(jun):.3f} ± {np.std(jun, ddof=1):.3f}" in _row(sec, "junior")
    senior = _row(sec, "senior")
    assert f"<td>1</td><td>{accs['Dr C']:.3f}</td>" in senior  # Dr D (senior, incomplete) is not counted
    allv = list(accs.values())
    assert f"{np.mean(allv):.3f} ± {np.std(allv, ddof=1):.3f}" in _row(sec, "All physicians")

    # Pairwise κ against scikit-learn, Fleiss' κ against statsmodels.
    wide = full.pivot(index="photo", columns="reader", values="answer")
    k_bc = cohen_kappa_score(wide["Dr B"], wide["Dr C"])
    assert f"<td>{k_bc:.3f} (" in _row(sec[sec.index("Agreement between"):], "Dr B")
    counts, _ = aggregate_raters(wide.to_numpy())
    assert f"{fleiss_kappa(counts):.3f} (" in sec

    # MRMC against the OR analysis run directly on the score matrix.
    scores = full.assign(s=reader_score(full.answer.to_numpy(), full.confidence.to_numpy()))
    sw = scores.pivot(index="photo", columns="reader", values="s")
    p = pred.set_index("photo").loc[sw.index, "p_gs"].to_numpy()
    y = (truth.loc[sw.index] == "GS").astype(int).to_numpy()
    res = readers_vs_model(sw.to_numpy().T, p, y)
    d = res.differences[0]
    assert f"{d.estimate:.3f} ({d.lo:.3f}–{d.hi:.3f})" in _row(sec, "Physicians − model")
    assert "Obuchowski–Rockette" in sec and "3 physicians, 120 photos" in sec


def test_include_incomplete_and_explicit_group_column(tmp_path: Path) -> None:
    run, _c, pred = make_run(tmp_path / "s", seed=4)
    df = _with_incomplete(tmp_path / "r.csv", pred)
    df["experience"] = np.where(df.reader == "Dr C", "senior", "junior")
    df.to_csv(tmp_path / "r.csv", index=False)
    html = build_report(run, readers_csv=tmp_path / "r.csv", gallery="none", include_incomplete_readers=True,
                        reader_group_column="experience").read_text(encoding="utf-8")
    sec = _section(html, "readers")
    assert "no (incomplete)" not in sec and "<th>Experience</th>" in sec
    assert "<td>junior</td><td>3</td>" in sec  # A, B and the incomplete D
    # D shares only 4 photos with the others: κ not computed for those pairs, MRMC on the photos all answered.
    assert "MRMC on the 4 photos" not in sec and "Only 4 photo(s)" in sec


def test_completeness_and_group_helpers() -> None:
    a = pd.DataFrame({"reader": ["a"] * 10 + ["b"] * 9 + ["c"] * 2, "photo": [*range(10), *range(9), 0, 1],
                      "role": ["junior"] * 19 + ["senior"] * 2})
    assert find_group_column(a) == "role"
    with pytest.raises(ValueError, match="no column 'grade'"):
        find_group_column(a, "grade")
    c = completeness(a, "role")
    assert c.set_index("reader")["complete"].to_dict() == {"a": True, "b": True, "c": False}
    g = group_means(pd.DataFrame({"reader": ["a", "b"], "group": ["x", "x"], "accuracy": [0.5, 0.7],
                                  "sensitivity": [0.4, 0.6], "specificity": [0.6, 0.8]}))
    assert list(g.group) == ["x"] and g.accuracy_sd.iloc[0] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    # No group attribute: one "All physicians" row.
    g2 = group_means(pd.DataFrame({"reader": ["a", "b"], "group": ["", ""], "accuracy": [0.5, 0.7],
                                   "sensitivity": [0.4, 0.6], "specificity": [0.6, 0.8]}))
    assert list(g2.group) == ["All physicians"] and g2.n_readers.iloc[0] == 2


def test_reader_study_without_confidences_uses_the_binary_calls() -> None:
    rng = np.random.default_rng(0)
    photos = [f"p{i}" for i in range(40)]
    y = pd.Series(rng.integers(0, 2, 40), index=photos)
    y.iloc[:2], y.iloc[2:4] = 1, 0
    p = pd.Series(np.clip(y + rng.normal(0, 0.6, 40), 0, 1), index=photos)
    rows = [{"reader": r, "photo": ph, "call": int(v if rng.random() < 0.8 else 1 - v), "role": "x"}
            for r in ("A", "B") for ph, v in y.items()]
    a = pd.DataFrame(rows)
    per = pd.DataFrame({"reader": ["A", "B"], "accuracy": [0.8, 0.8], "sensitivity": [0.8, 0.8],
                        "specificity": [0.8, 0.8]})
    st = reader_study(a, per, y, p)
    assert st.mrmc is not None and "binary" in st.mrmc_score
    calls = a.pivot(index="photo", columns="reader", values="call").loc[photos]
    for j, r in enumerate(("A", "B")):
        c, t = calls[r].to_numpy(), y.to_numpy()
        sens, spec = (c[t == 1] == 1).mean(), (c[t == 0] == 0).mean()
        assert st.mrmc.auc[0, j] == pytest.approx((sens + spec) / 2)


def test_late_answers_are_noted_in_the_report(tmp_path: Path) -> None:
    run, _c, pred = make_run(tmp_path / "s", seed=6)
    df = make_readers(tmp_path / "r.csv", pred)
    df["late"] = 0
    df.loc[df.index[:3], "late"] = 1
    df.to_csv(tmp_path / "r.csv", index=False)
    html = build_report(run, readers_csv=tmp_path / "r.csv", gallery="none").read_text(encoding="utf-8")
    assert f"3 of {len(df)} answers were given late" in html
