"""Screening photos with a model pack: P(GS) and call, the ensemble Grad-CAM, quality flags, batch + CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from screen_support import encode, fabricate_run

from gsscreen.modelpack import ExportConfig, export_model_pack, load_model_pack
from gsscreen.screening import (
    CALL_GS,
    CALL_NO,
    CALL_NONE,
    FLAG_TEXT,
    NO_MODEL,
    ScreenConfig,
    ScreeningModel,
    expand_inputs,
    screen_batch,
)


@pytest.fixture(scope="module", params=[4, 5], ids=["cam-in-trained-part", "cam-in-frozen-body"])
def pack_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp(f"pack{request.param}")
    run = fabricate_run(d / "run", folds=3, unfreeze_from=request.param, seed=request.param - 4)
    return export_model_pack(run, d / "m.gss", ExportConfig(name="test", age_range_months=(12, 120)))


@pytest.fixture(scope="module")
def model(pack_path: Path) -> ScreeningModel:
    return load_model_pack(pack_path)


def test_screen_astronaut(model: ScreeningModel, astronaut: np.ndarray) -> None:
    res = model.screen(astronaut, age_months=60)
    assert res.ok and res.problem is None
    assert 0.0 <= res.p_gs <= 1.0
    assert res.p_gs_raw == pytest.approx(np.mean(res.fold_p_gs)) and len(res.fold_p_gs) == 3
    assert res.p_gs == pytest.approx(model.decision.ensemble_probability(res.fold_p_gs))  # calibrated (decision)
    assert res.suspected == (res.p_gs >= model.threshold)
    assert res.call == (CALL_GS if res.suspected else CALL_NO)
    assert res.flags == []  # one frontal, large, upright face of an age inside the range
    assert res.heatmap.shape == (64, 64) and res.heatmap.dtype == np.float32
    assert res.heatmap.min() >= 0 and res.heatmap.max() == pytest.approx(1.0)
    assert res.overlay.shape == (224, 224, 3) and res.crop.shape == (224, 224, 3)
    assert res.face["n_faces"] == 1 and res.face["iod_px"] > 40
    d = res.to_dict()
    assert "heatmap" not in d and json.dumps(d)


def test_no_heatmap_path_gives_the_same_probability(model: ScreeningModel, astronaut: np.ndarray) -> None:
    a = model.screen(astronaut, heatmap=True)
    b = model.screen(astronaut, heatmap=False)
    assert b.heatmap is None and b.overlay is None
    np.testing.assert_allclose(a.fold_p_gs, b.fold_p_gs, rtol=1e-5)


def test_ensemble_cam_equals_per_fold_grad_cam(model: ScreeningModel) -> None:
    from gsscreen.explain import compute_cams

    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    p, maps, flat = model.explain_tensor(x)
    assert maps.shape == (3, 2, 64, 64)
    np.testing.assert_allclose(p, model.predict_tensor(x), rtol=1e-5, atol=1e-6)
    for k, m in enumerate(model.models):
        ref = compute_cams(m, x)
        np.testing.assert_allclose(maps[k], ref.maps, atol=1e-5)
        np.testing.assert_array_equal(flat[k], ref.flat)
        np.testing.assert_allclose(model.predict_tensor_views(x)[:, k], ref.probs[:, 1], rtol=1e-5)


def test_quality_flags_from_photos(model: ScreeningModel, astronaut: np.ndarray, grace_hopper: np.ndarray) -> None:
    small = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)
    r = model.screen(small)
    assert "face_too_small" in r.reasons and r.face["iod_px"] < model.quality.min_iod_px
    assert r.outcome == "inconclusive" and r.suspected is None and r.p_gs is not None  # P(GS) shown, no call
    assert any("too small" in m for m in r.flag_messages)
    h, w = astronaut.shape[:2]
    rot = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((w / 2, h / 2), 40, 1.0), (w, h),
                         borderMode=cv2.BORDER_REPLICATE)
    r = model.screen(rot)
    assert "head_tilted" in r.reasons and abs(r.face["roll_deg"]) > model.quality.max_roll_deg
    gh = cv2.resize(grace_hopper, (int(grace_hopper.shape[1] * h / grace_hopper.shape[0]), h))
    r = model.screen(np.concatenate([astronaut, gh], axis=1))
    assert r.face["n_faces"] >= 2 and len(r.faces) == r.face["n_faces"] and r.faces[0]["scored"]


def test_age_flags(model: ScreeningModel) -> None:
    assert model._age_flags(None) == []
    (flag, kw), = model._age_flags(200.0)
    assert flag == "outside_age_range" and "12–120" in FLAG_TEXT[flag].format(**kw)
    assert model._age_flags(60.0) == []


def test_unknown_age_range(pack_path: Path, astronaut: np.ndarray) -> None:
    m = load_model_pack(pack_path)
    m.info["age_range_months"] = None
    r = m.screen(astronaut, age_months=30, heatmap=False)
    assert r.flags == ["age_range_unknown"]
    assert r.flag_messages == ["age range of training cohort unknown"]
    assert m.screen(astronaut, heatmap=False).flags == []  # no age given: nothing to check
    with pytest.raises(ValueError, match="age_months"):
        m.screen(astronaut, age_months=-1)


def test_big_photo_reports_original_pixels(model: ScreeningModel, astronaut: np.ndarray) -> None:
    big = cv2.resize(astronaut, (4000, 3000), interpolation=cv2.INTER_CUBIC)  # 12 MP
    small = model.screen(astronaut, heatmap=False)
    r = model.screen_file(encode(big, "JPEG", quality=90), heatmap=False)
    assert r.ok
    # x-scale 7.8, y-scale 5.9: the eye line is nearly horizontal, so the IOD follows the x-scale
    assert r.face["iod_px"] == pytest.approx(small.face["iod_px"] * 4000 / 512, rel=0.1)


def test_no_face_and_unreadable_are_results(model: ScreeningModel, tmp_path: Path) -> None:
    r = model.screen(np.full((200, 200, 3), 128, np.uint8))
    assert not r.ok and r.flags == ["no_face"] and "no face found" in r.problem
    assert r.call == CALL_NONE and r.outcome == "inconclusive"
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    r = model.screen_file(bad)
    assert r.flags == ["unreadable"] and "not an image" in r.problem


def test_expand_inputs(tmp_path: Path, astronaut: np.ndarray) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for p in ("d/a.jpg", "d/sub/b.png", "c.jpg"):
        (tmp_path / p).write_bytes(encode(astronaut[:64, :64], "PNG"))
    files, problems = expand_inputs([str(tmp_path / "d"), str(tmp_path / "*.jpg"), str(tmp_path / "c.jpg"),
                                     str(tmp_path / "none*.png"), str(tmp_path / "missing.jpg")])
    names = [Path(f).name for f in files]
    assert names == ["a.jpg", "b.png", "c.jpg", "missing.jpg"]  # no duplicates; a missing file is kept as a row
    assert problems == [(str(tmp_path / "none*.png"), "no file matches this pattern")]


def test_screen_batch_survives_bad_photos(model: ScreeningModel, tmp_path: Path, astronaut: np.ndarray,
                                         grace_hopper: np.ndarray) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "astronaut.jpg").write_bytes(encode(astronaut))
    (photos / "grace.png").write_bytes(encode(grace_hopper, "PNG"))
    (photos / "broken.jpg").write_bytes(encode(astronaut)[:2000])
    (photos / "blank.png").write_bytes(encode(np.full((120, 120, 3), 200, np.uint8), "PNG"))
    out = tmp_path / "out"
    table = screen_batch(model, ScreenConfig(inputs=[str(photos), str(tmp_path / "gone.jpg")], out_dir=str(out),
                                             age_months=40), progress=False)
    by = {Path(f).name: r for f, r in zip(table["file"], table.to_dict("records"), strict=True)}
    assert set(by) == {"astronaut.jpg", "grace.png", "broken.jpg", "blank.png", "gone.jpg"}
    assert by["astronaut.jpg"]["p_gs"] >= 0 and by["grace.png"]["p_gs"] >= 0
    assert "truncated" in by["broken.jpg"]["problem"] and by["blank.png"]["flags"] == "no_face"
    assert "file not found" in by["gone.jpg"]["problem"]
    assert (out / by["astronaut.jpg"]["heatmap"]).is_file()
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == 5 and csv["p_gs"].notna().sum() == 2
    payload = json.loads((out / "results.json").read_text())
    assert payload["model"]["model_id"] == model.model_id and len(payload["results"]) == 5
    assert json.loads((out / "config.json").read_text())["age_months"] == 40


def test_cli_export_and_screen(pack_path: Path, tmp_path: Path, astronaut: np.ndarray) -> None:
    from typer.testing import CliRunner

    from gsscreen.cli import app

    run = fabricate_run(tmp_path / "run", folds=3)
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(run), "-o", str(tmp_path / "cli.gss"), "--age-range", "6-144"])
    assert r.exit_code == 0, r.output
    assert "3 fold model(s)" in r.output and (tmp_path / "cli.gss").is_file()
    photo = tmp_path / "a.jpg"
    photo.write_bytes(encode(astronaut))
    r = runner.invoke(app, ["screen", str(photo), "--model", str(tmp_path / "cli.gss"), "--age-months", "200",
                            "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "a.jpg" in r.output and "not a medical device" in r.output
    assert "outside the ages the model was trained on" in r.output and "outside_age_range" not in r.output
    assert (tmp_path / "out" / "results.csv").is_file()
    assert list((tmp_path / "out" / "heatmaps").glob("a_gradcam.png"))
    # the region bars (five more model passes a photo) only when asked for, and never without the heatmap
    assert not list((tmp_path / "out" / "heatmaps").glob("a_regions.png"))
    r = runner.invoke(app, ["screen", str(photo), "--model", str(tmp_path / "cli.gss"), "--regions",
                            "-o", str(tmp_path / "out_regions")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out_regions" / "heatmaps" / "a_regions.png").is_file()
    r = runner.invoke(app, ["screen", str(photo), "--model", str(tmp_path / "cli.gss"), "--regions", "--no-heatmap",
                            "-o", str(tmp_path / "out_none")])
    assert r.exit_code == 2 and "--regions needs the heatmap" in r.output


def test_cli_without_any_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import gsscreen.screening as scr
    from gsscreen.cli import app

    monkeypatch.setattr(scr, "demo_model_path", lambda: tmp_path / "absent.gss")
    r = CliRunner().invoke(app, ["screen", str(tmp_path / "x.jpg")])
    assert r.exit_code == 2 and NO_MODEL in r.output
