"""`gsscreen explain` on a real (tiny-backbone) study of the synthetic demo cohort: every fold explains its own
test photos, overlays and the table are written, and the eye bars are drawn."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from gsscreen.cli import app


@pytest.mark.slow
def test_explain_writes_overlays_table_and_gallery(tmp_path):
    from gsscreen.cohort import load_cohort
    from gsscreen.demo import DemoCohortConfig, build_demo_cohort
    from gsscreen.training.config import build_config
    from gsscreen.training.study import run_study

    csv = build_demo_cohort(tmp_path / "cohort", DemoCohortConfig(n_per_class=6, seed=3))
    cfg = build_config("quick", None, {"align": True, "folds": 3, "baseline": False, "n_bootstrap": 20})
    run_study(load_cohort(csv), tmp_path / "run", cfg, progress=False)

    res = CliRunner().invoke(app, ["explain", str(tmp_path / "run"), "-o", str(tmp_path / "ex"), "--which", "all"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "ex" / "explain.csv")
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert len(table) == len(preds) == 12
    # each photo explained by the fold that tested it
    fold_of = dict(zip(preds["photo"], preds["fold"], strict=True))
    assert all(fold_of[f] == k for f, k in zip(table["file"], table["fold"], strict=True))
    assert "maps mainly on the face" in res.output
    assert (tmp_path / "ex" / "gallery.png").is_file() and (tmp_path / "ex" / "gallery.svg").is_file()
    assert json.loads((tmp_path / "ex" / "config.json").read_text())["cover_eyes"] is True
    # eyes covered by default: the pixel between the eyes is the bar's grey in every overlay
    for _, row in table.iterrows():
        lms = np.array(json.loads(row["landmarks"]))
        img = np.asarray(Image.open(row["overlay"]).convert("RGB"))
        mid = lms[:2].mean(axis=0).round().astype(int)
        assert tuple(img[mid[1], mid[0]]) == (128, 128, 128), row["overlay"]
