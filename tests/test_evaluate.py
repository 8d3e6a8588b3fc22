"""`gsscreen evaluate`: a model pack on a labelled cohort -> predictions, metrics with CIs, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from screen_support import fabricate_run
from typer.testing import CliRunner

from gsscreen.cli import app

pytestmark = pytest.mark.slow


def _cohort(folder: Path, astronaut: np.ndarray, grace_hopper: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (src, label) in enumerate([(astronaut, "GS"), (grace_hopper, "control")] * 3):
        im = Image.fromarray(src)
        if i >= 2:  # different framings of the two portraits
            w, h = im.size
            m = 0.04 * i
            im = im.crop((int(m * w), int(m * h), int((1 - m / 2) * w), int((1 - m / 3) * h)))
        name = f"p{i}.jpg"
        im.save(folder / name, quality=92)
        rows.append({"image": name, "label": label, "syndrome": "down" if label == "GS" else "",
                     "subject_id": "astronaut" if label == "GS" else "hopper",
                     "sex": "male" if i % 2 == 0 else "female"})
    # a row the model cannot call: no face
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(folder / "blank.jpg")
    rows.append({"image": "blank.jpg", "label": "control", "syndrome": "", "subject_id": "blank", "sex": "female"})
    csv = folder / "cohort.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def test_evaluate_writes_predictions_metrics_and_report(tmp_path: Path, astronaut, grace_hopper) -> None:
    from gsscreen.modelpack import export_model_pack

    run = fabricate_run(tmp_path / "run", folds=2)
    pack = export_model_pack(run, tmp_path / "m.gss")
    csv = _cohort(tmp_path / "photos", astronaut, grace_hopper)
    out = tmp_path / "ev"
    res = CliRunner().invoke(app, ["evaluate", str(pack), str(csv), "-o", str(out), "--quiet", "--workers", "0",
                                   "--n-boot", "200", "--subgroup", "sex", "--prevalence", "0.05"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    pred = pd.read_csv(out / "predictions.csv")
    fails = pd.read_csv(out / "failures.csv")
    # every cohort photo is either analysed or left out with a reason
    assert len(pred) + len(fails) == 7 and "blank.jpg" in " ".join(fails["file"].astype(str))
    assert set(pred["fold"]) == {0} and pred["p_gs"].between(0, 1).all()
    # paths relative to the cohort CSV, as in a study's run folder, and they resolve to the photos
    from gsscreen.training.run_folder import photo_path

    written = set(pd.read_csv(csv)["image"])
    for table in (pred, pd.read_csv(out / "splits.csv")):
        assert set(table["photo"]) <= written
        assert all(photo_path(out, ph) == (csv.parent / ph).resolve() for ph in table["photo"])
    thr = json.loads((out / "config.json").read_text())["evaluation"]["threshold"]
    assert ((pred["p_gs"] >= thr) == (pred["call"] == "GS")).all()
    m = json.loads((out / "metrics.json").read_text())
    assert m["kind"] == "external_validation" and m["n_photos"] == len(pred)
    # clusters are the subjects: the bootstrap resamples two children, not six photos
    assert pd.read_csv(out / "splits.csv")["group"].nunique() == pred["subject"].nunique()
    html = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert "external validation" in html.lower() and "Results by sex" in html and "Decision curve" in html
    assert "PPV at the given prevalence" in html and "ROC per test fold" not in html
    # one fixed model: the cohort table speaks of photos analysed, not of test folds
    assert "Photos analysed" in html and "Test photos (all folds)" not in html
