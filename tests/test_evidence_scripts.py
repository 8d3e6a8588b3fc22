"""The evidence scripts of issue #12: the demo hold-out cohort and its card comparison
(``scripts/evaluate_demo_holdout.py``), the screenshot's photo removal (``scripts/make_evaluate_screenshot.py``) and
the feature-cache reuse of ``benchmarks/bench_grouping.py``. Synthetic inputs only."""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parents[1]


def _load(rel: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(rel).stem, REPO / rel)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_holdout_cohort_keeps_held_rows_and_reads_utkface_names(tmp_path: Path) -> None:
    mod = _load("scripts/evaluate_demo_holdout.py")
    clusters = pd.DataFrame({
        "image": ["/d/ds-kaggle/down/down_2.jpg", "/d/ds-kaggle/healthy/h_1.jpg", "/d/ds-kaggle/down/down_3.jpg",
                  "/d/utk-kids/7_1_0_2017.jpg.chip.jpg", "/d/utk-kids/12_0_2_2017.jpg.chip.jpg"],
        "label": ["GS", "control", "GS", "control", "control"],
        "syndrome": ["down", np.nan, "down", np.nan, np.nan],
        "side": ["held", "held", "train", "held", "held"],
    })
    csv = tmp_path / "clusters.csv"
    clusters.to_csv(csv, index=False)
    c = mod.holdout_cohort(csv, data_root=tmp_path / "moved")
    assert len(c) == 4 and "down_3" not in " ".join(c["image"])  # the training row is not in the hold-out
    assert list(c["photo_set"]) == ["ds-kaggle", "ds-kaggle", "utk-kids", "utk-kids"]
    assert c["image"].iloc[0] == str(tmp_path / "moved" / "ds-kaggle" / "down" / "down_2.jpg")
    utk = c[c["photo_set"] == "utk-kids"]
    assert list(utk["age_months"]) == [84, 144] and list(utk["sex"]) == ["female", "male"]
    assert c.loc[c["photo_set"] == "ds-kaggle", "age_months"].isna().all()
    assert list(c["syndrome"]) == ["down", "", "", ""]
    with pytest.raises(SystemExit, match="missing columns"):
        clusters.drop(columns=["side"]).to_csv(csv, index=False)
        mod.holdout_cohort(csv)


def test_headline_numbers_match_a_direct_count() -> None:
    mod = _load("scripts/evaluate_demo_holdout.py")
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(40, int), np.zeros(60, int)]
    p = np.clip(0.5 * y + rng.normal(0.3, 0.25, 100), 0, 1)
    u = rng.uniform(0, 0.7, 50)
    frame = pd.DataFrame({"photo_set": ["ds-kaggle"] * 100 + ["utk-kids"] * 50,
                          "label": np.r_[np.where(y == 1, "GS", "control"), ["control"] * 50],
                          "p_gs": np.r_[p, u]})
    thr = 0.55
    h = mod.headline(frame, thr)
    assert h["kaggle_n"] == 100 and h["kaggle_n_gs"] == 40
    assert h["kaggle_auc"] == pytest.approx(roc_auc_score(y, p))
    assert h["kaggle_auc_ci"][0] < h["kaggle_auc"] < h["kaggle_auc_ci"][1]
    assert h["kaggle_sensitivity"] == pytest.approx((p[y == 1] >= thr).mean())
    assert h["kaggle_specificity"] == pytest.approx((p[y == 0] < thr).mean())
    assert h["kaggle_missed_gs"] == int((p[y == 1] < thr).sum())
    assert h["utk_n"] == 50 and h["utk_called_gs"] == int((u >= thr).sum())
    assert h["utk_fpr"] == pytest.approx((u >= thr).mean())


def test_bench_grouping_copies_only_a_finished_sibling_cache(tmp_path: Path) -> None:
    mod = _load("benchmarks/bench_grouping.py")
    src = tmp_path / "unfreeze2" / "cache"
    (src / "study").mkdir(parents=True)
    np.save(src / "study" / "done.npy", np.ones(5, bool))
    (src / "study" / "meta.json").write_text("{}")
    (src / "external_utk").mkdir()
    np.save(src / "external_utk" / "done.npy", np.array([True, False]))  # unfinished: rebuilt, not copied
    mod._seed_cache(tmp_path, "unfreeze2_no_grouping")
    dst = tmp_path / "unfreeze2_no_grouping" / "cache"
    assert (dst / "study" / "meta.json").is_file() and not (dst / "external_utk").exists()
    # a cache already there is left alone
    (dst / "study" / "meta.json").write_text('{"mine": 1}')
    mod._seed_cache(tmp_path, "unfreeze2_no_grouping")
    assert (dst / "study" / "meta.json").read_text() == '{"mine": 1}'


@pytest.mark.browser
def test_screenshot_removes_every_picture_that_could_hold_a_photo(tmp_path: Path) -> None:
    from gsscreen.web.local_server import CHROMIUM_PATH, launch_chromium

    if not CHROMIUM_PATH.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM_PATH}")
    pw_api = pytest.importorskip("playwright.sync_api")
    mod = _load("scripts/make_evaluate_screenshot.py")
    png = base64.b64encode(bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8cfc0f0"
        "1f0005000201a5b3e1d90000000049454e44ae426082")).decode()
    clean = base64.b64encode(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                             b'<text x="1" y="9">A</text></svg>').decode()
    raster_svg = base64.b64encode(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                                  b'<image href="data:image/png;base64,' + png.encode() + b'"/></svg>').decode()
    page_html = f"""<!doctype html><html><body>
      <img id="figure" src="data:image/svg+xml;base64,{clean}">
      <img id="thumb" src="data:image/png;base64,{png}">
      <img id="file" src="child.jpg">
      <img id="svgphoto" src="data:image/svg+xml;base64,{raster_svg}">
      <svg><image href="child.jpg" width="5" height="5"/></svg>
      <div id="bg" style="background-image:url(data:image/png;base64,{png});width:5px;height:5px"></div>
      <canvas></canvas></body></html>"""
    page_file = tmp_path / "page.html"
    page_file.write_text(page_html)
    with pw_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        page.goto(page_file.as_uri())
        removed = page.evaluate(mod.HIDE_PHOTOS_JS)
        left = page.evaluate("() => [...document.querySelectorAll('img')].map(i => i.id)")
        n_raster = page.evaluate("() => document.querySelectorAll('svg image, canvas').length")
        bg = page.evaluate("() => getComputedStyle(document.getElementById('bg')).backgroundImage")
        browser.close()
    assert left == ["figure"] and n_raster == 0 and bg == "none"
    assert removed == 6
