"""Calibrated P(GS) and operating points: export, screening, prevalence, old packs, CLI (gsscreen.decision)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from screen_support import encode, fabricate_run

from gsscreen.decision import BORDERLINE_LOGIT, PER_FOLD, DecisionError, DecisionRule, decision_section
from gsscreen.evaluation.calibration import brier_score, calibrator_from_dict
from gsscreen.evaluation.metrics import binary_metrics
from gsscreen.modelpack import ExportConfig, export_model_pack, load_model_pack, read_model_pack


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fabricate_run(tmp_path_factory.mktemp("dec") / "run", folds=3)


@pytest.fixture(scope="module")
def pack(run: Path) -> Path:
    return export_model_pack(run, run.parent / "m.gss", ExportConfig(name="dec"))


def _val(run: Path, subset: str = "val") -> tuple[np.ndarray, np.ndarray]:
    df = pd.concat([pd.read_csv(run / "folds" / f"fold_{k}" / "predictions.csv") for k in range(3)])
    df = df[df["set"] == subset]
    return df["y"].to_numpy(int), df["p_gs"].to_numpy(float)


def test_export_stores_map_points_and_heldout_measures(run: Path, pack: Path) -> None:
    info = read_model_pack(pack).info
    y, p = _val(run)
    cal = info["calibration"]
    assert cal["map"]["method"] in ("platt", "isotonic") and cal["map"]["method"] == cal["selection"]["chosen"]
    assert cal["train_prevalence"] == pytest.approx(y.mean()) and cal["n_validation"] == len(y)
    pc = calibrator_from_dict(cal["map"]).predict(p)
    ops = info["operating_points"]
    assert set(ops) == {"balanced", "screening"} and info["default_operating_point"] == "screening"
    for name, op in ops.items():  # each point's validation sensitivity / specificity are what it does on them
        m = binary_metrics(y, pc, op["threshold"])
        assert op["sensitivity"] == pytest.approx(m["recall"]) and op["specificity"] == pytest.approx(
            m["specificity"]), name
    assert ops["screening"]["sensitivity"] >= 0.95
    assert ops["screening"]["threshold"] <= ops["balanced"]["threshold"]
    # before/after on the pooled *test* predictions, never used for fitting
    yt, pt = _val(run, "test")
    ho = cal["heldout"]
    assert ho["n"] == len(yt)
    assert ho["before"]["brier"] == pytest.approx(brier_score(yt, pt))
    assert ho["after"]["brier"] == pytest.approx(brier_score(yt, calibrator_from_dict(cal["map"]).predict(pt)))


def test_model_card_reports_calibration_and_default_point(pack: Path) -> None:
    c = read_model_pack(pack)
    assert "## Calibration: what P(GS) means" in c.card and "calibrated at the training prevalence" in c.card
    assert "before calibration" in c.card and "after calibration" in c.card and "calibration slope" in c.card
    assert "**Default: `screening`.**" in c.card and "missed syndrome" in c.card
    assert "![Reliability diagram" in c.card and c.figures["reliability.png"].startswith(b"\x89PNG")


def test_screening_uses_the_map_and_names_the_point(pack: Path, astronaut: np.ndarray) -> None:
    m = load_model_pack(pack)
    cal = calibrator_from_dict(m.info["calibration"]["map"])
    r = m.screen(astronaut, heatmap=False)
    # the map was fitted on single fold models' outputs: it is applied to each fold's P(GS), then averaged
    assert m.info["calibration"]["applied_to"] == PER_FOLD and m.summary()["calibration_applied_to"] == PER_FOLD
    assert r.p_gs == pytest.approx(float(cal.predict(r.fold_p_gs).mean()))
    assert r.p_gs_raw == pytest.approx(np.mean(r.fold_p_gs))
    assert r.operating_point == "screening" and r.threshold == pytest.approx(m.info["threshold"])
    assert r.to_dict()["operating_point"] == "screening"
    m.set_decision("balanced")
    r2 = m.screen(astronaut, heatmap=False)
    assert r2.operating_point == "balanced"
    assert r2.threshold == pytest.approx(m.info["operating_points"]["balanced"]["threshold"])
    assert m.summary()["operating_point"] == "balanced" and m.summary()["calibrated"] is True


def test_prevalence_moves_probability_and_threshold_but_not_the_call(pack: Path) -> None:
    info = read_model_pack(pack).info
    base = DecisionRule.from_info(info)
    low = DecisionRule.from_info(info, prevalence=0.01)
    raws = np.linspace(0.01, 0.99, 99)
    for raw in raws:
        assert (base.probability(raw) >= base.threshold) == (low.probability(raw) >= low.threshold)
        assert low.probability(raw) <= base.probability(raw) + 1e-12  # rarer syndrome → lower P(GS)
    assert low.threshold < base.threshold and low.describe()["prevalence"] == 0.01
    with pytest.raises(DecisionError, match="between 0 and 1"):
        DecisionRule.from_info(info, prevalence=2.0)
    with pytest.raises(DecisionError, match="no operating point 'strict'"):
        DecisionRule.from_info(info, operating_point="strict")


def test_per_fold_map_versus_ensemble_mean_map(pack: Path) -> None:
    """One confident fold among sure-negative ones: the per-fold map keeps what each fold model said (its own
    calibrated value, averaged), while a pack from before ``applied_to`` maps the raw mean as if one model said it."""
    info = read_model_pack(pack).info
    per_fold = DecisionRule.from_info(info)
    old_info = {**info, "calibration": {k: v for k, v in info["calibration"].items() if k != "applied_to"}}
    mean_map = DecisionRule.from_info(old_info)
    cal = calibrator_from_dict(info["calibration"]["map"])
    folds = np.array([0.9, 0.001, 0.002])
    assert per_fold.ensemble_probability(folds) == pytest.approx(cal.predict(folds).mean())
    assert mean_map.ensemble_probability(folds) == pytest.approx(float(cal.predict([folds.mean()])[0]))
    assert mean_map.describe()["calibration_applied_to"] == "ensemble mean"
    # folds that agree give the same P(GS) either way; the prevalence shift applies on top of the per-fold mean
    same = np.full(3, 0.3)
    assert per_fold.ensemble_probability(same) == pytest.approx(mean_map.ensemble_probability(same))
    low = DecisionRule.from_info(info, prevalence=0.01)
    assert low.ensemble_probability(folds) < per_fold.ensemble_probability(folds)
    for bad in ([], [0.2, float("nan")]):
        with pytest.raises(ValueError, match="fold P"):
            per_fold.ensemble_probability(bad)


def test_borderline_band_around_the_threshold(pack: Path) -> None:
    """No call within BORDERLINE_LOGIT of the threshold on the logit scale; the band moves with a clinic prevalence
    exactly as P(GS) does, so whether a photo is borderline never depends on the prior."""
    info = read_model_pack(pack).info
    assert info["borderline_logit"] == BORDERLINE_LOGIT  # recorded at export
    rule = DecisionRule.from_info(info)
    t = rule.threshold
    lo, hi = rule.borderline_band()
    assert lo < t < hi
    logit = lambda q: np.log(q / (1 - q))  # noqa: E731
    assert logit(hi) - logit(t) == pytest.approx(BORDERLINE_LOGIT) and logit(t) - logit(lo) == pytest.approx(
        BORDERLINE_LOGIT)
    assert rule.borderline(t) and rule.borderline(0.5 * (lo + t)) and rule.borderline(0.5 * (t + hi))
    assert not rule.borderline(lo - 1e-3) and not rule.borderline(hi + 1e-3)
    assert not rule.borderline(0.0) and not rule.borderline(1.0)
    low = DecisionRule.from_info(info, prevalence=0.01)
    for folds in np.random.default_rng(0).random((200, 3)):
        assert rule.borderline(rule.ensemble_probability(folds)) == low.borderline(low.ensemble_probability(folds))
    assert rule.describe()["borderline_band"] == [lo, hi]
    # a pack from before the margin uses the measured default; a pack's own value is used as recorded
    old = DecisionRule.from_info({k: v for k, v in info.items() if k != "borderline_logit"})
    assert old.borderline_logit == BORDERLINE_LOGIT
    assert DecisionRule.from_info({**info, "borderline_logit": 0.0}).borderline(t) is False
    with pytest.raises(DecisionError, match="borderline margin"):
        DecisionRule.from_info({**info, "borderline_logit": -1})


def test_borderline_result_is_inconclusive_with_its_reason(pack: Path, astronaut: np.ndarray) -> None:
    from gsscreen.faces.quality import REASON_TEXT
    from gsscreen.web.i18n import STRINGS

    m = load_model_pack(pack)
    plain = m.screen(astronaut, heatmap=False)
    assert plain.outcome != "inconclusive" and "borderline" not in plain.reasons
    m.decision.borderline_logit = 50.0  # every P(GS) is now "close" to the threshold
    r = m.screen(astronaut, heatmap=False)
    assert r.outcome == "inconclusive" and r.suspected is None and r.reasons == ["borderline"]
    assert r.p_gs == pytest.approx(plain.p_gs)  # P(GS) is still shown
    assert "too close to the decision threshold" in REASON_TEXT["borderline"]
    assert all("reason.borderline" in table for table in STRINGS.values())


def test_old_single_threshold_pack_still_loads(pack: Path, tmp_path: Path, astronaut: np.ndarray) -> None:
    from gsscreen.packsign import write_pack_members

    with zipfile.ZipFile(pack) as z:
        members = {n: z.read(n) for n in z.namelist() if n not in ("reliability.png", "manifest.json")}
    info = json.loads(members["model.json"])
    for k in ("calibration", "operating_points", "default_operating_point", "threshold_scale"):
        info.pop(k)
    info.update(format_version=1, threshold=0.5)
    members["model.json"] = json.dumps(info).encode()
    old = write_pack_members(tmp_path / "old.gss", False, members)  # sealed with a fresh manifest
    m = load_model_pack(old)
    r = m.screen(astronaut, heatmap=False)
    assert r.operating_point == "pack" and r.threshold == 0.5 and r.p_gs == pytest.approx(r.p_gs_raw)
    assert m.decision.calibrated is False
    with pytest.raises(DecisionError, match="not calibrated"):
        m.set_decision(prevalence=0.02)


def test_no_validation_predictions_means_no_section(tmp_path: Path) -> None:
    assert decision_section([tmp_path]) is None
    with pytest.raises(DecisionError):
        decision_section([tmp_path], default="strict")


def test_cli_operating_point_and_prevalence(pack: Path, tmp_path: Path, astronaut: np.ndarray) -> None:
    from typer.testing import CliRunner

    from gsscreen.cli import app

    photo = tmp_path / "a.jpg"
    photo.write_bytes(encode(astronaut))
    runner = CliRunner()
    r = runner.invoke(app, ["screen", str(photo), "--model", str(pack), "--no-heatmap", "--operating-point",
                            "balanced", "--prevalence", "0.02", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "operating point balanced" in r.output and "adjusted to prevalence 0.02" in r.output
    row = pd.read_csv(tmp_path / "out" / "results.csv").iloc[0]
    assert row["operating_point"] == "balanced"
    r = runner.invoke(app, ["screen", str(photo), "--model", str(pack), "--operating-point", "strict"])
    assert r.exit_code == 2 and "no operating point 'strict'" in r.output and "Traceback" not in r.output


def test_screening_point_is_never_less_sensitive_than_the_balanced_one(tmp_path: Path) -> None:
    """Well-separated validation scores: Youden's threshold already has sensitivity 1.0, and the highest threshold
    with sensitivity >= 0.95 lies above it. The screening point must not trade that sensitivity away."""
    rng = np.random.default_rng(0)
    dirs = []
    for k in range(3):
        d = tmp_path / f"fold_{k}"
        d.mkdir()
        y = np.repeat([0, 1], 200)
        # GS scores spread over 0.55–1.0, controls 0.0–0.5: Youden sits in the gap, sensitivity 1.0
        p = np.where(y == 1, rng.uniform(0.55, 1.0, y.size), rng.uniform(0.0, 0.5, y.size))
        pd.DataFrame({"set": ["val"] * y.size, "y": y, "p_gs": p}).to_csv(d / "predictions.csv", index=False)
        dirs.append(d)
    sec = decision_section(dirs)
    assert sec is not None
    ops = sec["operating_points"]
    assert ops["balanced"]["sensitivity"] == pytest.approx(1.0)
    assert ops["screening"]["threshold"] == pytest.approx(ops["balanced"]["threshold"])
    assert ops["screening"]["sensitivity"] >= ops["balanced"]["sensitivity"]
    assert "at most the youden threshold" in ops["screening"]["rule"]
    assert sec["threshold"] == pytest.approx(ops["screening"]["threshold"])
