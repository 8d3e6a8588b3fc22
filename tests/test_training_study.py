"""End-to-end studies on a synthetic cohort with the ``tiny`` backbone: the CLI, the run folder, thresholds on
validation, external controls, the baseline, failures, the resume guard, and the uncached (image) mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm
from training_synth import make_cohort, make_controls
from typer.testing import CliRunner

from gsscreen.cli import app
from gsscreen.config import load_config
from gsscreen.training.config import StudyConfig, preset, replace
from gsscreen.training.run_folder import RunFolderMismatch, fold_dir, load_fold_model, photo_path, read_json
from gsscreen.training.splits import fold_roles
from gsscreen.training.study import run_study

pytestmark = pytest.mark.slow

QUICK_TOML = """
seed = 3
n_bootstrap = 20
[train]
epochs = 2
"""


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("study")
    table = make_cohort(root / "photos", n_subjects=22)
    broken = root / "photos" / "broken.png"
    broken.write_bytes(b"not an image")
    table = pd.concat([table, pd.DataFrame([{"image": str(broken), "label": "GS", "subject_id": "bad"}])])
    table.to_csv(root / "cohort.csv", index=False)
    ext = make_controls(root / "kids", n=5)
    (root / "study.toml").write_text(QUICK_TOML)
    run_dir = root / "run"
    args = ["study", str(root / "cohort.csv"), "-o", str(run_dir), "--preset", "quick", "--config",
            str(root / "study.toml"), "--external-controls", str(ext), "--quiet"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return {"root": root, "run": run_dir, "args": args, "output": res.output, "table": table, "ext": ext}


def test_run_folder_layout_and_results_table(study_run: dict) -> None:
    run: Path = study_run["run"]
    for name in ("config.json", "versions.json", "splits.csv", "predictions.csv", "metrics.json", "failures.csv",
                 "study.log", "external_predictions.csv"):
        assert (run / name).is_file(), name
    for k in range(5):
        d = fold_dir(run, k)
        for name in ("checkpoint.safetensors", "state.json", "history.csv", "result.json", "predictions.csv"):
            assert (d / name).is_file(), (k, name)
        assert len(pd.read_csv(d / "history.csv")) == 2
    v = read_json(run / "versions.json")
    assert {"python", "torch", "numpy", "gsscreen", "platform", "git_commit"} <= set(v)
    assert "auc" in study_run["output"] and "±" in study_run["output"] and "FPR kids" in study_run["output"]
    cfg = load_config(StudyConfig, run / "config.json")
    assert cfg.backbone == "tiny" and cfg.seed == 3 and cfg.train.epochs == 2 and cfg.train.optim.lr == 3e-3


def test_every_usable_photo_is_tested_once_with_its_subset(study_run: dict) -> None:
    run: Path = study_run["run"]
    preds = pd.read_csv(run / "predictions.csv")
    splits = pd.read_csv(run / "splits.csv")
    usable = study_run["table"][~study_run["table"]["image"].str.endswith("broken.png")]
    assert sorted(preds["photo"]) == sorted(splits["photo"])
    # Written relative to the cohort CSV's folder; photo_path gives the file back.
    assert not any(Path(p).is_absolute() for p in preds["photo"])
    assert sorted(str(photo_path(run, p)) for p in preds["photo"]) == sorted(usable["image"])
    merged = preds.merge(splits, on="photo")
    assert (merged["fold"] == merged["subset"]).all()  # fold k tests subset k
    assert set(preds.columns) >= {"photo", "subject", "label", "fold", "p_gs", "call", "threshold", "baseline_p_gs"}
    assert ((preds["p_gs"] >= preds["threshold"]) == (preds["call"] == "GS")).all()
    failures = pd.read_csv(run / "failures.csv")
    assert failures["file"].str.endswith("broken.png").any()


def test_thresholds_come_from_validation_only(study_run: dict) -> None:
    run: Path = study_run["run"]
    splits = pd.read_csv(run / "splits.csv")
    for k in range(5):
        result = read_json(fold_dir(run, k) / "result.json")
        fp = pd.read_csv(fold_dir(run, k) / "predictions.csv")
        val = fp[fp["set"] == "val"]
        _, val_subset, test_subset = fold_roles(k, 5)
        assert set(splits.loc[val["row"], "subset"]) == {val_subset}
        assert set(splits.loc[fp.loc[fp["set"] == "test", "row"], "subset"]) == {test_subset}
        # Youden's J of the chosen rule, counted directly on this fold's validation rows, is the best any rule
        # between the validation scores reaches (oracle independent of choose_threshold).
        y, p = val["y"].to_numpy(), val["p_gs"].to_numpy()
        u = np.unique(p)
        rules = np.concatenate([u[:1], (u[:-1] + u[1:]) / 2, [u[-1] + 1]])

        def youden(t: float, y: np.ndarray = y, p: np.ndarray = p) -> float:
            return float((p[y == 1] >= t).mean() + (p[y == 0] < t).mean() - 1)

        assert youden(result["threshold"]) == pytest.approx(max(youden(t) for t in rules))


def test_metrics_json_has_folds_summary_roc_external_and_baseline(study_run: dict) -> None:
    m = json.loads((study_run["run"] / "metrics.json").read_text())
    preds = pd.read_csv(study_run["run"] / "predictions.csv")
    for who, col in (("model", "p_gs"), ("baseline", "baseline_p_gs")):
        part = m[who]
        assert len(part["per_fold"]) == 5
        # Each fold's metrics are those of its TEST rows in predictions.csv, recomputed here with scikit-learn at
        # the fold's own threshold; the summary is their mean and sample SD.
        expected: dict[str, list[float]] = {k: [] for k in ("accuracy", "recall", "specificity", "precision", "f1",
                                                             "auc")}
        for k in range(5):
            rows = preds[preds["fold"] == k]
            y = (rows["label"] == "GS").astype(int).to_numpy()
            p = rows[col].to_numpy()
            t = part["per_fold"][k]["threshold"]
            call = (p >= t).astype(int)
            tn, fp, fn, tp = skm.confusion_matrix(y, call, labels=[0, 1]).ravel()
            assert (part["per_fold"][k]["tp"], part["per_fold"][k]["fn"]) == (tp, fn)
            assert (part["per_fold"][k]["tn"], part["per_fold"][k]["fp"]) == (tn, fp)
            expected["accuracy"].append(skm.accuracy_score(y, call))
            expected["recall"].append(skm.recall_score(y, call, zero_division=np.nan))
            expected["specificity"].append(tn / (tn + fp))
            expected["precision"].append(skm.precision_score(y, call, zero_division=np.nan))
            expected["f1"].append(skm.f1_score(y, call, zero_division=np.nan))
            expected["auc"].append(skm.roc_auc_score(y, p))
        for name, vals in expected.items():
            got = [np.nan if v is None else v for v in part["summary"][name]["values"]]
            np.testing.assert_allclose(got, vals, atol=1e-9, err_msg=f"{who} {name}")
            assert part["summary"][name]["mean"] == pytest.approx(np.nanmean(vals))
            assert part["summary"][name]["sd"] == pytest.approx(np.nanstd(vals, ddof=1))
        roc = part["pooled_roc"]
        assert roc["n"] == m["n_photos"] and roc["band"] and roc["auc_ci_delong"]["lo"] <= roc["auc"]
        assert roc["auc_ci_bootstrap"]["hi"] >= roc["auc_ci_bootstrap"]["lo"]
        ext = part["external"]["kids"]
        assert len(ext["values"]) == 5 and all(0 <= v <= 1 for v in ext["values"])
    # The tints make the classes separable: both the model and the baseline must find it.
    assert m["model"]["summary"]["auc"]["mean"] > 0.8
    assert m["baseline"]["summary"]["auc"]["mean"] > 0.8
    assert "model_vs_baseline_delong" in m


def test_fold_checkpoint_reproduces_its_predictions(study_run: dict) -> None:
    from PIL import Image

    run: Path = study_run["run"]
    preds = pd.read_csv(run / "predictions.csv")
    mine = preds[preds["fold"] == 1].head(4)
    model = load_fold_model(fold_dir(run, 1))
    x = torch.stack([
        torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR,
                                                                         reducing_gap=None)).copy())
        .permute(2, 0, 1).float() / 255 for p in (photo_path(run, q) for q in mine["photo"])
    ])
    with torch.no_grad():
        p = (model.predict_proba(x)[:, 1] + model.predict_proba(torch.flip(x, dims=[3]))[:, 1]) / 2
    # The cache stores float16 features, so agreement is close, not exact.
    assert np.allclose(p.numpy(), mine["p_gs"].to_numpy(), atol=1e-2)


def test_rerun_skips_finished_folds_and_other_config_is_refused(study_run: dict) -> None:
    run: Path = study_run["run"]
    before = {k: (fold_dir(run, k) / "checkpoint.safetensors").stat().st_mtime_ns for k in range(5)}
    res = CliRunner().invoke(app, study_run["args"])
    assert res.exit_code == 0, res.output
    assert {k: (fold_dir(run, k) / "checkpoint.safetensors").stat().st_mtime_ns for k in range(5)} == before
    assert (run / "study.log").read_text().count("already done, skipped") == 5
    other = [*study_run["args"], "--seed", "4"]
    res = CliRunner().invoke(app, other)
    assert res.exit_code == 2 and "different config" in res.output and "seed: 3 -> 4" in res.output


def test_image_mode_without_cache(tmp_path: Path) -> None:
    """Full fine-tuning path (no feature cache): augmentation on the fly, the whole body trains in stage 2."""
    table = make_cohort(tmp_path / "p", n_subjects=12)
    cfg = preset("quick")
    cfg = replace(cfg, folds=3, baseline=False, n_bootstrap=10,
                  train=replace(cfg.train, epochs=2, cache_features=False,
                                finetune=replace(cfg.train.finetune, unfreeze_stages=-1)))
    res = run_study(table, tmp_path / "run", cfg, progress=False)
    assert not (tmp_path / "run" / "cache").exists()
    assert "images" in res.metrics["mode"] and len(res.predictions) == len(table)
    assert "baseline" not in res.metrics
    with pytest.raises(RunFolderMismatch, match="different config"):
        run_study(table, tmp_path / "run", replace(cfg, seed=1), progress=False)
