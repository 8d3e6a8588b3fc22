"""`gsscreen report`: a fabricated but realistic run folder -> one self-contained HTML file + figures.

The run folder is built inside each test: 5 folds of predictions drawn from two overlapping distributions,
metrics.json written with the evaluation functions, a cohort CSV with ages and sexes, and a readers CSV with
three physicians. Expected numbers are computed here independently (numpy / scipy), not copied from the report.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats
from typer.testing import CliRunner

from gsscreen.cli import app
from gsscreen.report import build_report, load_fold_model, load_run
from gsscreen.report.run import landmark_columns, match_photos

N_PER_CLASS = 60
N_FOLDS = 5
EVIL = '<script>alert("x")</script>.jpg'


def _cohort(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for label in ("GS", "control"):
        for i in range(N_PER_CLASS):
            age = rng.normal(40 if label == "GS" else 48, 12)
            rows.append(
                {
                    "image": f"photos/{label.lower()}_{i:03d}.jpg",
                    "label": label,
                    "syndrome": ("down" if i % 3 else "williams") if label == "GS" else "",
                    "subject_id": f"{label}-{i:03d}",
                    "age_months": round(max(age, 1.0), 1),
                    "sex": "male" if rng.random() < (0.6 if label == "GS" else 0.45) else "female",
                }
            )
    return pd.DataFrame(rows)


def make_run(
    root: Path, seed: int = 0, synthetic: bool = False, with_metrics: bool = True
) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """A run folder under ``root``: returns (run_dir, cohort table, predictions)."""
    from gsscreen.evaluation.metrics import binary_metrics, summarize_folds
    from gsscreen.evaluation.roc import pooled_roc_summary

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    cohort = _cohort(rng)
    cohort.to_csv(root / "cohort.csv", index=False)
    if synthetic:
        (root / "README.txt").write_text("SYNTHETIC COHORT: morphed copies of two portraits.\n", encoding="utf-8")
    run = root / "run"
    run.mkdir()
    y = (cohort["label"] == "GS").to_numpy().astype(int)
    # Two overlapping score distributions: GS ~ Beta(4, 2), control ~ Beta(2, 4).
    p = np.where(y == 1, rng.beta(4, 2, len(y)), rng.beta(2, 4, len(y)))
    fold = np.empty(len(y), int)
    fold[y == 1] = np.arange(int(y.sum())) % N_FOLDS
    fold[y == 0] = np.arange(int((1 - y).sum())) % N_FOLDS
    thresholds = np.array([0.45, 0.5, 0.48, 0.52, 0.5])
    thr = thresholds[fold]
    pred = pd.DataFrame(
        {
            "photo": cohort["image"],
            "subject": cohort["subject_id"],
            "label": cohort["label"],
            "fold": fold,
            "p_gs": p.round(6),
            "call": np.where(p.round(6) >= thr, "GS", "control"),
            "threshold": thr,
        }
    )
    pred.to_csv(run / "predictions.csv", index=False)
    (run / "config.json").write_text(json.dumps({"backbone": "tiny", "folds": N_FOLDS, "seed": 0}), encoding="utf-8")
    (run / "versions.json").write_text(json.dumps({"python": "3.11", "torch": "2.x"}), encoding="utf-8")
    pd.DataFrame({"file": ["photos/blurry.jpg", EVIL], "problem": ["no face found", "unreadable"],
                  "stage": ["align", "read"]}).to_csv(run / "failures.csv", index=False)
    if with_metrics:  # the layout gsscreen.training.study writes
        per_fold = [binary_metrics(y[fold == k], p.round(6)[fold == k], thresholds[k]) for k in range(N_FOLDS)]
        ext_fpr = [0.05 + 0.01 * k for k in range(N_FOLDS)]
        p_base = np.clip(p + rng.normal(0, 0.2, len(p)), 0, 1)
        base_folds = [binary_metrics(y[fold == k], p_base[fold == k], 0.5) for k in range(N_FOLDS)]
        metrics = {
            "n_photos": len(y),
            "folds": N_FOLDS,
            "model": {
                "per_fold": [{"fold": k, **m} for k, m in enumerate(per_fold)],
                "summary": summarize_folds(per_fold),
                "pooled_roc": pooled_roc_summary(y, p.round(6), n_boot=200, seed=0, n_boot_auc=500),
                "external": {"utk_children": {"mean": float(np.mean(ext_fpr)), "sd": float(np.std(ext_fpr, ddof=1)),
                                              "values": ext_fpr, "n_photos": 250}},
            },
            "baseline": {
                "per_fold": [{"fold": k, **m} for k, m in enumerate(base_folds)],
                "summary": summarize_folds(base_folds),
                "pooled_roc": pooled_roc_summary(y, p_base, n_boot=50, seed=0, n_boot_auc=50),
                "external": {},
                "description": "logistic regression on frozen embeddings",
            },
            "model_vs_baseline_delong": {"z": 2.5, "p_value": 0.0124, "auc1": 0.8, "auc2": 0.7},
        }
        (run / "metrics.json").write_text(json.dumps(metrics, default=float), encoding="utf-8")
    return run, cohort, pred


def make_readers(path: Path, pred: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """Three physicians answering every test photo, with different accuracies and 1–5 confidences."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, role, acc_gs, acc_ctrl in (("Dr <Junior> A", "junior", 0.70, 0.65), ("Dr B", "junior", 0.60, 0.80),
                                         ("Dr C", "senior", 0.92, 0.90)):
        for photo, label in zip(pred["photo"], pred["label"], strict=True):
            right = rng.random() < (acc_gs if label == "GS" else acc_ctrl)
            answer = label if right else ("control" if label == "GS" else "GS")
            rows.append({"reader": name, "role": role, "photo": photo, "answer": answer,
                         "confidence": int(rng.integers(1, 6)), "seconds": 4.2})
    df = pd.DataFrame(rows)
    df.to_csv(path, index=False)
    return df


def _row_of(html: str, first_cell: str) -> str:
    """The <tr> whose first cell is ``first_cell`` (already HTML-escaped)."""
    m = re.search(r"<tr><td>" + re.escape(first_cell) + r"</td>.*?</tr>", html)
    assert m, f"no table row for {first_cell!r}"
    return m.group(0)


def _no_remote(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", html), "a resource outside the file"
    assert "<script" not in html.lower()


def test_report_tables_readers_band_and_figures(tmp_path: Path) -> None:
    run, cohort, pred = make_run(tmp_path / "study")
    readers = make_readers(tmp_path / "readers.csv", pred)
    out = build_report(run, readers_csv=tmp_path / "readers.csv", gallery="none")
    assert out == run / "report" / "report.html"
    html = out.read_text(encoding="utf-8")
    _no_remote(html)
    assert "not a medical device" in html
    assert "SYNTHETIC COHORT" not in html  # not marked synthetic

    # Table 1, computed independently (one photo per child here, so children = photos).
    gs, ctrl = cohort[cohort.label == "GS"], cohort[cohort.label == "control"]
    for part in (gs, ctrl):
        a = part["age_months"].to_numpy()
        assert f"{a.mean():.1f} ± {a.std(ddof=1):.1f}" in html
    t_p = stats.ttest_ind(gs["age_months"], ctrl["age_months"]).pvalue
    t1 = _row_of(html, "Age, months, mean ± SD")
    assert (f"{t_p:.3f}" if t_p >= 0.001 else "&lt;0.001") in t1
    table = [[int((g.sex == s).sum()) for s in ("male", "female")] for g in (gs, ctrl)]
    chi_p = stats.chi2_contingency(table, correction=False)[1]
    sex_row = _row_of(html, "Sex, male, n (%)")
    assert f"{chi_p:.3f}" in sex_row and f"{table[0][0]} (" in sex_row
    n_row = _row_of(html, "N (photos)")
    assert n_row.count(f"<td>{N_PER_CLASS}</td>") == 2, n_row  # both columns: GS and controls

    # Table 2: model mean ± SD over folds, per metric, at each fold's own threshold.
    accs = []
    for k in range(N_FOLDS):
        f = pred[pred.fold == k]
        called = (f.p_gs >= f.threshold).to_numpy()
        accs.append(float((called == (f.label == "GS").to_numpy()).mean()))
    model_row = _row_of(html, "Model (mean ± SD over folds)")
    assert f"{np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}" in model_row
    assert "Baseline: logistic regression" in html

    # Each reader's sensitivity and the band position, independently.
    metrics = json.loads((run / "metrics.json").read_text())
    band = metrics["model"]["pooled_roc"]["band"]
    truth = pred.set_index("photo")["label"]
    for name, g in readers.groupby("reader"):
        t = truth.loc[g.photo].to_numpy()
        sens = float(((g.answer.to_numpy() == "GS") & (t == "GS")).sum() / (t == "GS").sum())
        spec = float(((g.answer.to_numpy() == "control") & (t == "control")).sum() / (t == "control").sum())
        row = _row_of(html, name.replace("<", "&lt;").replace(">", "&gt;"))
        assert f"<td>{sens:.3f}</td>" in row and f"<td>{spec:.3f}</td>" in row
        lo = np.interp(spec, band["specificities"], band["lo"])
        hi = np.interp(spec, band["specificities"], band["hi"])
        expect = "above" if sens > hi else "below" if sens < lo else "inside"
        assert expect in row, (name, sens, lo, hi, row)
    assert "Dr <Junior> A" not in html  # reader names are escaped

    # User text is escaped: the failure with a script tag in its name shows as text.
    assert EVIL not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;.jpg" in html
    # External-control false-positive rates per fold, and the baseline's pooled AUC and DeLong p.
    assert "<td>Fold 3</td><td>0.080</td>" in html and "<td>0.070 ± 0.016</td>" in html
    base_auc = metrics["baseline"]["pooled_roc"]["auc"]
    assert f"Baseline pooled AUC: {base_auc:.3f}; DeLong test model vs baseline: p = 0.012" in html
    base_row = _row_of(html, "Baseline: logistic regression on embeddings")
    b_acc = metrics["baseline"]["summary"]["accuracy"]
    assert f"{b_acc['mean']:.3f} ± {b_acc['sd']:.3f}" in base_row

    # Figures: PNG at print resolution and SVG, for each figure; the ROC SVG has the shaded band and the markers.
    figs = run / "report" / "figures"
    for name in ("roc", "roc_folds", "confusion_matrix", "fold_metrics"):
        png, svg = figs / f"{name}.png", figs / f"{name}.svg"
        assert png.stat().st_size > 10_000 and svg.read_text().lstrip().startswith("<?xml")
        with Image.open(png) as im:
            assert round(im.info["dpi"][0]) == 300
    roc_svg = (figs / "roc.svg").read_text()
    assert "#56b4e9" in roc_svg.lower()  # the band's fill colour
    assert roc_svg.lower().count("#e69f00") >= 1 and "#d55e00" in roc_svg.lower()  # junior and senior markers


def test_confusion_matrix_uses_each_folds_calls(tmp_path: Path) -> None:
    run, _cohort_df, pred = make_run(tmp_path / "s", seed=3)
    html = build_report(run, gallery="none").read_text(encoding="utf-8")
    called = pred.call == "GS"
    gs = pred.label == "GS"
    tp, fp = int((called & gs).sum()), int((called & ~gs).sum())
    tn, fn = int((~called & ~gs).sum()), int((~called & gs).sum())
    assert f"TP {tp}, FP {fp}, TN {tn}, FN {fn}" in html


def test_synthetic_banner_and_missing_metrics_are_recomputed(tmp_path: Path) -> None:
    run, _c, pred = make_run(tmp_path / "demo", seed=5, synthetic=True, with_metrics=False)
    html = build_report(run, gallery="none", out=tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'class="synthetic"' in html and "morphed copies of two portraits" in html
    assert "metrics.json: not found" in html  # said, not hidden
    assert "recomputed" in html
    from gsscreen.evaluation.roc import auc_ci_delong

    d = auc_ci_delong((pred.label == "GS").astype(int).to_numpy(), pred.p_gs.to_numpy())
    assert f"<strong>{d.auc:.3f}</strong>" in html and f"DeLong 95% CI {d.lo:.3f}–{d.hi:.3f}" in html
    _no_remote(html)
    assert "No external control set" in html


def test_missing_predictions_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"predictions\.csv.*not found"):
        build_report(tmp_path / "empty")
    with pytest.raises(ValueError, match="gallery"):
        build_report(tmp_path / "empty", gallery="some")


def test_cli_prints_the_path(tmp_path: Path) -> None:
    run, _c, pred = make_run(tmp_path / "s", seed=2)
    make_readers(tmp_path / "readers.csv", pred)
    out = tmp_path / "out" / "study.html"
    res = CliRunner().invoke(app, ["report", str(run), "-o", str(out), "--readers", str(tmp_path / "readers.csv"),
                                   "--gallery", "none"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(out)
    assert "Dr C" in out.read_text(encoding="utf-8")
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert bad.exit_code != 0 and "run folder not found" in bad.output


def test_helpers_match_photos_and_landmark_columns() -> None:
    m = match_photos(["/data/gs/001.jpg", "/x/ctrl/001.jpg", "b/002.jpg"], ["gs/001.jpg", "ctrl/001.jpg", "002.jpg"])
    assert m == {"/data/gs/001.jpg": "gs/001.jpg", "/x/ctrl/001.jpg": "ctrl/001.jpg", "b/002.jpg": "002.jpg"}
    # A bare name shared by two folders is ambiguous: no match rather than a wrong one.
    assert match_photos(["001.jpg"], ["a/001.jpg", "b/001.jpg"]) == {}
    cols = ["le_x", "le_y", "re_x", "re_y", "nose_x", "nose_y", "lm_x", "lm_y", "rm_x", "rm_y", "score"]
    assert landmark_columns(cols) == [("le_x", "le_y"), ("re_x", "re_y"), ("nose_x", "nose_y"), ("lm_x", "lm_y"),
                                      ("rm_x", "rm_y")]
    assert landmark_columns([f"{a}{i}" for i in range(5) for a in "xy"])[4] == ("x4", "y4")
    assert landmark_columns(["x0", "y0"]) is None


# ------------------------------------------------------------------------------------------------ Grad-CAM


def _aligned_examples() -> list[tuple[np.ndarray, np.ndarray]]:
    from gsscreen.examples import EXAMPLE_NAMES, example_image
    from gsscreen.faces.align import AlignConfig, align_face

    out = []
    for name in EXAMPLE_NAMES:
        face = align_face(example_image(name), AlignConfig(size=64))
        out.append((face.image, np.asarray(face.landmarks, np.float64)))
    return out


def _save_tiny_checkpoints(run: Path, folds: list[int]) -> None:
    import torch
    from safetensors.torch import save_file

    from gsscreen.models import create_model

    for k in folds:
        torch.manual_seed(k)
        model = create_model("tiny", pretrained=False)
        d = run / "folds" / f"fold_{k}"
        d.mkdir(parents=True, exist_ok=True)
        state = {n: t.contiguous() for n, t in model.state_dict().items()}
        if k % 2 == 0:
            save_file(state, str(d / "checkpoint.safetensors"))  # a bare full state dict
        else:  # the study's format: metadata names the backbone and its init
            meta = {"backbone": "tiny", "pretrained": False, "dropout": 0.5, "init_seed": k}
            save_file(state, str(d / "checkpoint.safetensors"), metadata={a: json.dumps(b) for a, b in meta.items()})


def test_load_fold_model_round_trip(tmp_path: Path) -> None:
    import torch

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"backbone": "tiny"}))
    _save_tiny_checkpoints(run, [0, 1])
    x = torch.rand(2, 3, 64, 64)
    for k in (0, 1):
        torch.manual_seed(k)
        from gsscreen.models import create_model

        ref = create_model("tiny", pretrained=False).eval()
        got = load_fold_model(run, k)
        assert not got.training
        torch.testing.assert_close(got(x), ref(x))
    with pytest.raises(FileNotFoundError, match="fold_7"):
        load_fold_model(run, 7)


@pytest.mark.slow
def test_gradcam_gallery_with_tiny_checkpoints_and_eye_bars(tmp_path: Path) -> None:
    run, _c, pred = make_run(tmp_path / "s", seed=4)
    faces = _aligned_examples()
    from gsscreen.faces.pipeline import ALIGNED_COLUMNS, LANDMARK_COLUMNS

    aligned = run / "aligned"  # the layout of gsscreen.faces.pipeline.align_cohort: crops/ + landmarks.csv
    (aligned / "crops").mkdir(parents=True)
    rows = []
    for i, photo in enumerate(pred["photo"]):
        img, lm = faces[i % len(faces)]
        crop = aligned / "crops" / f"crop_{i:03d}.png"
        Image.fromarray(img).save(crop)
        row = dict.fromkeys(ALIGNED_COLUMNS, 0.0)
        row.update({"image": photo, "crop": str(crop), "flags": ""})
        row.update(zip(LANDMARK_COLUMNS, lm.ravel(), strict=True))
        rows.append(row)
    # One GS photo without a crop: reported, not fatal.
    missing = pred[pred.label == "GS"]["photo"].iloc[-1]
    pd.DataFrame([r for r in rows if r["image"] != missing]).to_csv(aligned / "landmarks.csv", index=False)
    _save_tiny_checkpoints(run, list(range(N_FOLDS)))
    assert load_run(run).landmarks, "landmarks.csv one folder below the run should be found"

    html = build_report(run, gallery="gs", max_gallery=None, cover_eyes=True).read_text(encoding="utf-8")
    _no_remote(html)
    n_gs = N_PER_CLASS - 1  # every GS photo but the one without a crop
    m = re.search(r"<strong>(\d+) of (\d+) maps mainly on the face</strong>", html)
    assert m, "the on-face count is missing"
    n_maps = int(m.group(2))
    # A random-init model can give an all-zero map for a photo: that photo is listed, not counted.
    n_empty = html.count("empty Grad-CAM map")
    assert n_maps + n_empty == n_gs and 0 <= int(m.group(1)) <= n_maps and n_maps > 0
    assert f"{n_empty + 1} photo(s) gave no usable map" in html
    assert html.count('alt="Grad-CAM of ') == n_maps
    assert "no aligned crop" in html
    gal = run / "report" / "figures"
    assert (gal / "gradcam_gallery.png").is_file() and (gal / "gradcam_gallery.svg").is_file()

    # Every exported overlay has a grey bar over the eyes: the pixel between the eyes is exactly grey.
    overlays = sorted((run / "report" / "gradcam").rglob("*_gradcam.png"))
    assert len(overlays) == n_gs  # an overlay is written for empty maps too (plain photo + bar)
    lm = faces[0][1]
    mid = np.round((lm[0] + lm[1]) / 2).astype(int)
    grey = [np.asarray(Image.open(p).convert("RGB"))[mid[1], mid[0]].tolist() for p in overlays]
    assert all(g == [128, 128, 128] for g in grey)

    # Without --cover-eyes the same pixel is the heatmap blend, not the bar.
    shutil.rmtree(run / "report")
    build_report(run, gallery="gs", max_gallery=4, cover_eyes=False)
    overlays = sorted((run / "report" / "gradcam").rglob("*_gradcam.png"))
    assert len(overlays) == 4
    assert all(np.asarray(Image.open(p).convert("RGB"))[mid[1], mid[0]].tolist() != [128, 128, 128]
               for p in overlays)


def test_cohort_found_from_photo_paths_and_wrong_cohort_is_refused(tmp_path: Path) -> None:
    run, cohort, pred = make_run(tmp_path / "s", seed=6)
    # As the study writes them: absolute photo paths, the cohort CSV in the photos' parent folder, the run elsewhere.
    pred["photo"] = [str(tmp_path / "s" / p) for p in pred["photo"]]
    pred.to_csv(run / "predictions.csv", index=False)
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(str(run), str(moved))
    html = build_report(moved, gallery="none").read_text(encoding="utf-8")
    a = cohort.loc[cohort.label == "GS", "age_months"]
    assert "Table 1. Demographics" in html and f"{a.mean():.1f} ± {a.std(ddof=1):.1f}" in html

    other = cohort.assign(image=[f"other/{i}.jpg" for i in range(len(cohort))])
    other.to_csv(tmp_path / "other.csv", index=False)
    html = build_report(moved, gallery="none", cohort_csv=tmp_path / "other.csv").read_text(encoding="utf-8")
    assert "does not list the study&#x27;s photos" in html and "Table 1. Demographics" not in html
