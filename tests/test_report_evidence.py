"""The report's evidence sections: accuracy with CIs, calibration, decision curve, subgroups, leakage audit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint
from test_report import make_run
from typer.testing import CliRunner

from gsscreen.cli import app


def _cells(html: str, first_cell: str) -> str:
    i = html.index(f"<td>{first_cell}</td>")
    return html[i : html.index("</tr>", i)]


def test_report_has_cis_calibration_subgroups_and_leakage(tmp_path: Path) -> None:
    run, cohort, pred = make_run(tmp_path / "s", seed=3)
    cohort["ethnicity"] = ["A" if i % 4 else "B" for i in range(len(cohort))]
    cohort.loc[:2, "ethnicity"] = "C"  # a tiny level: flagged
    cohort.to_csv(tmp_path / "s" / "cohort.csv", index=False)
    # splits.csv with groups (two photos of one child) and the study's grouping record
    groups = [f"g{i}" for i in range(len(pred))]
    groups[1] = "g0"
    pd.DataFrame({"photo": pred["photo"], "subject": pred["subject"], "label": pred["label"],
                  "subset": pred["fold"], "group": groups}).to_csv(run / "splits.csv", index=False)
    m = json.loads((run / "metrics.json").read_text())
    m["grouping"] = {"likely_same_child": True, "threshold": 0.8, "used": True, "n_clusters": 1,
                     "n_photos_in_clusters": 2, "largest_cluster": 2,
                     "leakage_audit": {"n_test": 120, "thresholds": {"0.8": {"n": 7, "share": 7 / 120,
                                                                               "per_fold": [1, 2, 1, 2, 1]},
                                                                       "0.9": {"n": 0, "share": 0.0,
                                                                               "per_fold": [0] * 5}}}}
    (run / "metrics.json").write_text(json.dumps(m))
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", str(run), "-o", str(out), "--gallery", "none", "--subgroup",
                                   "ethnicity", "--subgroup", "shoe_size", "--prevalence", "0.01"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    html = out.read_text(encoding="utf-8")
    y, c = (pred["label"] == "GS").to_numpy(int), (pred["call"] == "GS").to_numpy(int)
    tp, fn = int(((c == 1) & (y == 1)).sum()), int(((c == 0) & (y == 1)).sum())
    lo, hi = proportion_confint(tp, tp + fn, method="wilson")
    row = _cells(html, "Sensitivity (recall)")
    assert f"{lo:.3f} to {hi:.3f}" in row and f"{tp}/{tp + fn}" in row
    for name in ("Sensitivity at specificity 0.90", "Specificity at sensitivity 0.95", "PPV at the given prevalence",
                 "Calibration slope (ideal 1)", "Brier score"):
        assert "to" in _cells(html, name), name
    assert "Reliability diagram" in html and "Decision curve" in html and "Net benefit" in html
    # subgroups: syndrome (GS only), age band, sex, the named column, the missing one named, small n flagged
    assert "Results by syndrome" in html and "Results by age band" in html and "Results by sex" in html
    assert "Results by ethnicity" in html and "too few to interpret" in _cells(html, "C")
    assert "shoe_size" in html
    assert "120 clusters" not in html and "119 clusters" in html  # one pair bootstrapped together
    assert "7 of 120 (5.8%)" in html
    tables = {p.name for p in (run / "report" / "tables").iterdir()}
    assert {"accuracy_ci.csv", "calibration.csv", "subgroup_ethnicity.csv", "leakage_audit.csv"} <= tables
    assert {"reliability.svg", "decision_curve.svg"} <= {p.name for p in (run / "report" / "figures").iterdir()}
    assert np.isfinite(pd.read_csv(run / "report" / "tables" / "accuracy_ci.csv")["Estimate"]).all()
