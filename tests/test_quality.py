"""The quality gate (gsscreen.faces.quality) and the outcomes it allows: no call on an unusable photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gsscreen.faces.quality import (
    NOTE_TEXT,
    OUTCOME_TEXT,
    OUTCOMES,
    REASON_TEXT,
    QualityLimits,
    crop_sharpness,
    judge,
    landmark_geometry,
    outcome_of,
    plausible_geometry,
)
from gsscreen.screening import ScreeningModel, demo_model_path

FRONTAL = np.array([[100, 100], [160, 100], [130, 135], [108, 165], [152, 165]], dtype=np.float64)
BOX = [60.0, 40.0, 200.0, 220.0]


def _measures(lm: np.ndarray = FRONTAL, **kw: object) -> dict:
    from gsscreen.faces.quality import measures_from_record

    rec = {"source_landmarks": lm.tolist(), "box": BOX, "score": 0.999, "n_faces": 1, "sharpness": 1.0}
    rec.update(kw)
    return measures_from_record(rec)


def test_vocabulary_is_plain_and_complete() -> None:
    assert set(OUTCOMES) == set(OUTCOME_TEXT) == {"refer", "no_signal", "inconclusive"}
    for text in (*REASON_TEXT.values(), *NOTE_TEXT.values()):
        assert text[0].isupper() and text.endswith(".") and "_" not in text and "{" not in text
    assert not set(REASON_TEXT) & set(NOTE_TEXT)


def test_limits_round_trip_and_validation() -> None:
    q = QualityLimits(min_iod_px=30)
    assert QualityLimits.from_dict(q.to_dict()) == q
    assert QualityLimits.from_dict({"min_iod_px": 30, "unknown_future_key": 1}) == q  # newer pack, older code
    assert QualityLimits.from_dict(None) == QualityLimits()  # older pack: defaults
    with pytest.raises(ValueError, match="min_sharpness"):
        QualityLimits(min_sharpness=-1)


def test_judge_frontal_face_is_usable() -> None:
    v = judge(_measures())
    assert v.usable and v.reasons == [] and v.measures["iod_px"] == pytest.approx(60.0)
    assert outcome_of(v.usable, 0.9, 0.5) == "refer" and outcome_of(v.usable, 0.1, 0.5) == "no_signal"


def test_judge_reasons() -> None:
    turned = FRONTAL + np.array([[0, 0], [0, 0], [18, 0], [0, 0], [0, 0]])
    assert judge(_measures(turned)).reasons == ["head_turned"]
    assert "face_too_small" in judge(_measures(FRONTAL * 0.2, box=[12, 8, 40, 44])).reasons
    assert judge(_measures(sharpness=0.05)).reasons == ["blurred"]
    assert judge(_measures(score=0.5)).reasons == ["unsure_face"]
    upside_down = FRONTAL * np.array([1, -1]) + np.array([0, 265])  # eyes below the mouth, as read upright
    g = landmark_geometry(FRONTAL)
    assert plausible_geometry(g) and g["nose_down"] > 0 and g["mouth_down"] > g["nose_down"]
    assert "implausible_landmarks" in judge(_measures(upside_down)).reasons
    turned_180 = FRONTAL[[1, 0, 2, 4, 3]] * np.array([1, -1]) + np.array([0, 265])  # a whole face upside down
    assert judge(_measures(turned_180)).reasons == ["head_tilted"]
    off_box = FRONTAL + np.array([0, -120])  # landmarks on the hair, above the face box
    assert "implausible_landmarks" in judge(_measures(off_box)).reasons
    v = judge(_measures(), QualityLimits(min_iod_px=100))
    assert not v.usable and outcome_of(v.usable, 0.99, 0.5) == "inconclusive"  # P(GS) known, yet no call


def test_judge_several_faces() -> None:
    twin = [{"box": [300.0, 40.0, 440.0, 220.0], "score": 0.999}]
    assert judge(_measures(other_faces=twin)).reasons == ["several_faces"]
    assert judge(_measures(other_faces=twin), single_face_chosen=True).usable  # --face all: each face alone
    small = [{"box": [300.0, 40.0, 340.0, 90.0], "score": 0.999}]
    v = judge(_measures(other_faces=small))
    assert v.usable and v.notes == ["other_faces"]
    assert judge(_measures(other_faces=[{**twin[0], "score": 0.5}])).usable  # an unsure detection does not count


def test_sharpness_falls_with_blur_and_size(grace_hopper: np.ndarray) -> None:
    from gsscreen.faces.align import align_face

    sharp = align_face(grace_hopper)
    blurred = align_face(cv2.GaussianBlur(grace_hopper, (0, 0), 6))
    tiny = align_face(cv2.resize(grace_hopper, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA))
    s0 = crop_sharpness(sharp.image, sharp.landmarks)
    assert s0 > 3 * crop_sharpness(blurred.image, blurred.landmarks)
    assert s0 > 2 * crop_sharpness(tiny.image, tiny.landmarks)
    assert crop_sharpness(np.full((224, 224, 3), 90, np.uint8)) == 0.0


# ------------------------------------------------------------------------------------------------ the demo model


@pytest.fixture(scope="module")
def demo() -> ScreeningModel:
    from gsscreen.modelpack import load_model_pack

    if not demo_model_path().is_file():
        pytest.skip("the demo model is not installed")
    return load_model_pack(demo_model_path())


def _face_crop(img: np.ndarray, model: ScreeningModel, margin: float = 0.15) -> np.ndarray:
    x0, y0, x1, y1 = model.screen(img, heatmap=False).face["box"]
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return img[max(0, round(y0 - my)):round(y1 + my), max(0, round(x0 - mx)):round(x1 + mx)]


def test_tiny_photo_is_inconclusive(demo: ScreeningModel, grace_hopper: np.ndarray) -> None:
    face = _face_crop(grace_hopper, demo)
    tiny = cv2.resize(face, (12, 12), interpolation=cv2.INTER_AREA)
    r = demo.screen(tiny, heatmap=False)
    assert r.outcome == "inconclusive" and r.suspected is None and r.call == OUTCOME_TEXT["inconclusive"]
    assert r.reasons and set(r.reasons) <= {"face_too_small", "no_face", "blurred", "unsure_face",
                                            "implausible_landmarks", "eyes_not_found"}
    if r.p_gs is not None:
        assert "face_too_small" in r.reasons and r.face["iod_px"] < 10


def test_blurred_face_is_inconclusive(demo: ScreeningModel, grace_hopper: np.ndarray) -> None:
    # eyes ~17 px apart, then blurred: the "0.998 refer" case
    s = 17.0 / demo.screen(grace_hopper, heatmap=False).face["iod_px"]
    small = cv2.resize(grace_hopper, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    r = demo.screen(cv2.GaussianBlur(small, (0, 0), 1.5), heatmap=False)
    assert r.outcome == "inconclusive" and r.suspected is None
    assert {"face_too_small", "blurred"} & set(r.reasons)
    sharp_big = demo.screen(grace_hopper, heatmap=False)
    # the sharp, large photo passes the quality gate (a P(GS) near the threshold may still leave it borderline)
    assert [c for c in sharp_big.reasons if c != "borderline"] == []
    assert sharp_big.outcome in ("refer", "no_signal") or sharp_big.reasons == ["borderline"]
