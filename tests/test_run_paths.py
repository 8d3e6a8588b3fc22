"""Photo paths in predictions.csv / splits.csv are written relative to the cohort CSV's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from gsscreen.training.run_folder import cohort_dir, photo_path, photos_relative_to_cohort


def test_relative_to_the_cohort_csv_and_back(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    data = tmp_path / "data"
    photos = pd.Series([str(data / "gs" / "a.jpg"), str(tmp_path / "elsewhere" / "b.png"), "already/rel.jpg"])
    # No cohort CSV recorded (a DataFrame cohort): unchanged.
    assert photos_relative_to_cohort(run, photos).tolist() == photos.tolist()
    assert cohort_dir(run) is None and photo_path(run, "x/y.jpg") == Path("x/y.jpg")
    (run / "cohort_source.json").write_text(json.dumps({"cohort_csv": str(data / "cohort.csv")}))
    rel = photos_relative_to_cohort(run, photos).tolist()
    assert rel == ["gs/a.jpg", "../elsewhere/b.png", "already/rel.jpg"]
    assert [str(photo_path(run, r)) for r in rel[:2]] == photos.tolist()[:2]
    assert photo_path(run, str(data / "gs" / "a.jpg")) == data / "gs" / "a.jpg"  # absolute stays absolute
