"""MTCNN detection and 5-point alignment on the embedded public-domain portraits."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from gsscreen.config import load_config, save_config
from gsscreen.faces import (
    AlignConfig,
    NoFaceError,
    align_face,
    get_detector,
    load_image,
    similarity_transform,
    template,
    warp_face,
)
from gsscreen.faces.align import apply_affine

# Hand-annotated on scikit-image's astronaut (512×512): eye centres, nose tip, mouth corners, (x, y) px.
ASTRONAUT_POINTS = np.array([[207, 103], [249, 105], [227, 131], [205, 142], [247, 145]], dtype=float)


def _angle(m: np.ndarray) -> float:
    """Rotation of a (2, 3) similarity matrix, degrees."""
    return math.degrees(math.atan2(m[1, 0], m[0, 0]))


def _scale(m: np.ndarray) -> float:
    return math.sqrt(abs(np.linalg.det(m[:, :2])))


def _rotated(image: np.ndarray, deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate about the centre on a canvas padded so the face stays in frame. Returns (image, 2×3 map)."""
    pad = 128
    big = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    h, w = big.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    m[:, 2] += m[:, :2] @ np.array([pad, pad])  # original px -> padded px -> rotated px
    return cv2.warpAffine(big, cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0), (w, h),
                          borderMode=cv2.BORDER_REPLICATE), m


def test_detector_landmarks_land_on_the_features(astronaut: np.ndarray) -> None:
    dets = get_detector().detect(astronaut)
    assert len(dets) == 1 and dets[0].score > 0.99
    lm = dets[0].landmarks
    assert lm.shape == (5, 2)
    # Within 6 px of the hand annotation (the inter-ocular distance is ~42 px).
    assert np.abs(lm - ASTRONAUT_POINTS).max() < 6
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # index 0 = image-left
    x0, y0, x1, y1 = dets[0].box
    assert x0 < lm[:, 0].min() and lm[:, 0].max() < x1 and y0 < lm[:, 1].min() and lm[:, 1].max() < y1


def test_align_astronaut(astronaut: np.ndarray) -> None:
    cfg = AlignConfig()
    face = align_face(astronaut, cfg)
    assert face.image.shape == (224, 224, 3) and face.image.dtype == np.uint8
    assert face.landmarks.shape == (5, 2) and face.source_landmarks.shape == (5, 2)
    assert face.n_faces == 1 and face.flags == [] and face.score > 0.99
    # The crop's landmarks sit near the template, eyes level at ~40 % height, mouth at ~68 %.
    assert np.abs(face.landmarks - template(cfg)).max() < 0.05 * cfg.size
    assert face.landmarks[:2, 1].mean() == pytest.approx(0.40 * cfg.size, abs=4)
    assert face.landmarks[3:, 1].mean() == pytest.approx(0.68 * cfg.size, abs=6)
    # The matrix maps source landmarks to crop landmarks, and the crop is the warped photo.
    assert np.allclose(apply_affine(face.matrix, face.source_landmarks), face.landmarks, atol=1e-3)
    direct = cv2.warpAffine(astronaut, face.matrix, (224, 224), borderMode=cv2.BORDER_CONSTANT,
                            borderValue=(128, 128, 128))
    assert np.abs(direct.astype(int) - face.image).mean() < 1.0
    assert face.iod == pytest.approx(42, abs=4) and abs(face.tilt_deg) < 8


def test_crop_keeps_forehead_and_chin(grace_hopper: np.ndarray) -> None:
    cfg = AlignConfig()
    face = align_face(grace_hopper, cfg)
    # Chin is ~0.6× the eye-to-mouth height below the mouth; forehead ~1× above the eyes: both inside the crop.
    em = face.landmarks[3:, 1].mean() - face.landmarks[:2, 1].mean()
    assert face.landmarks[3:, 1].mean() + 0.6 * em < cfg.size
    assert face.landmarks[:2, 1].mean() - 1.0 * em > 0


@pytest.mark.parametrize("deg", [-30, -20, -10, 0, 10, 20, 30])
def test_rotated_face_comes_out_level(astronaut: np.ndarray, deg: int) -> None:
    cfg = AlignConfig()
    ref = align_face(astronaut, cfg)
    img, rot = _rotated(astronaut, deg)
    face = align_face(img, cfg)
    eye = face.landmarks[1] - face.landmarks[0]
    assert abs(math.degrees(math.atan2(eye[1], eye[0]))) < 2.0
    ref_iod = float(np.linalg.norm(ref.landmarks[1] - ref.landmarks[0]))
    assert float(np.linalg.norm(eye)) == pytest.approx(ref_iod, rel=0.03)
    # The landmarks followed the rotation: the alignment undoes exactly the applied turn, at the same scale.
    turned = _angle(face.matrix) - _angle(ref.matrix)
    applied = _angle(rot)
    assert abs((turned + applied + 180) % 360 - 180) < 2.0
    assert _scale(face.matrix) == pytest.approx(_scale(ref.matrix), rel=0.03)
    # Crop content matches the unrotated crop (same face, same framing).
    assert np.abs(face.image.astype(int) - ref.image).mean() < 20


def test_no_face_in_noise_or_flat_image() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError, match="no face found") as e:
        align_face(noise)
    assert "padded" in e.value.reason and "rotated_180" in e.value.reason  # the retries were tried
    with pytest.raises(NoFaceError):
        align_face(np.full((120, 160, 3), 127, np.uint8))


def test_three_people_keeps_the_largest(astronaut: np.ndarray, grace_hopper: np.ndarray) -> None:
    def head(img: np.ndarray, box: tuple[int, int, int, int], h: int) -> np.ndarray:
        x0, y0, x1, y1 = box
        c = img[y0:y1, x0:x1]
        return cv2.resize(c, (round(c.shape[1] * h / c.shape[0]), h), interpolation=cv2.INTER_AREA)

    tiles = [
        head(astronaut, (125, 20, 325, 240), 200),
        head(grace_hopper, (120, 60, 410, 400), 300),  # the largest face, in the middle
        head(np.ascontiguousarray(astronaut[:, ::-1]), (187, 20, 387, 240), 150),
    ]
    canvas = np.full((340, sum(t.shape[1] for t in tiles) + 80, 3), 200, np.uint8)
    x, spans = 20, []
    for t in tiles:
        canvas[20 : 20 + t.shape[0], x : x + t.shape[1]] = t
        spans.append((x, x + t.shape[1]))
        x += t.shape[1] + 20
    face = align_face(canvas)
    assert face.n_faces >= 3
    assert "several_faces" in face.flags
    cx = (face.box[0] + face.box[2]) / 2
    assert spans[1][0] < cx < spans[1][1]


def test_tiny_thumbnails(astronaut: np.ndarray) -> None:
    # A 40×40 thumbnail of the head (face fills it): aligned, and flagged as a small face.
    head = cv2.resize(astronaut[30:230, 125:325], (40, 40), interpolation=cv2.INTER_AREA)
    face = align_face(head)
    assert "small_face" in face.flags and face.iod < 24
    assert face.image.shape == (224, 224, 3)
    # The whole 512² portrait shrunk to 40×40 leaves a ~7-px face: even the upscaling retry cannot find it,
    # and the error says so.
    whole = cv2.resize(astronaut, (40, 40), interpolation=cv2.INTER_AREA)
    with pytest.raises(NoFaceError, match="upscaled"):
        align_face(whole)


def test_sideways_photo_found_by_rotation_retry(astronaut: np.ndarray) -> None:
    sideways = np.ascontiguousarray(np.rot90(astronaut, 1))
    face = align_face(sideways)
    assert "rotated" in face.flags and any(f.startswith("rotated_") for f in face.flags)
    eye = face.landmarks[1] - face.landmarks[0]
    assert abs(math.degrees(math.atan2(eye[1], eye[0]))) < 3
    upright = align_face(astronaut)
    assert np.abs(face.image.astype(int) - upright.image).mean() < 12


def test_retries_can_be_turned_off(astronaut: np.ndarray) -> None:
    sideways = np.ascontiguousarray(np.rot90(astronaut, 1))
    with pytest.raises(NoFaceError, match="tried: plain, small faces\\)"):
        align_face(sideways, AlignConfig(retry=False))


def test_exif_rotated_portrait_has_upright_landmarks(tmp_path: Path, astronaut: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90° counter-clockwise to display": the stored pixels are turned clockwise
    p = tmp_path / "portrait.jpg"
    Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, -1))).save(p, quality=95, exif=exif)
    face = align_face(load_image(p))
    ref = align_face(astronaut)
    assert "rotated" not in face.flags
    assert np.abs(face.source_landmarks - ref.source_landmarks).max() < 3


def test_large_photo_detected_small_warped_from_original(astronaut: np.ndarray) -> None:
    big = cv2.resize(astronaut, (4000, 3000), interpolation=cv2.INTER_CUBIC)  # 12 MP, non-uniform stretch
    face = align_face(big, AlignConfig(max_side=1280))
    expected = ASTRONAUT_POINTS * [4000 / 512, 3000 / 512]
    assert np.abs(face.source_landmarks - expected).max() < 6 * 4000 / 512
    assert face.image.shape == (224, 224, 3)
    # Area-averaged warp (scale << 0.5) matches a direct warp of a 4× smaller copy (no aliasing, same framing).
    m = face.matrix.copy()
    m[:, :2] *= 4
    small = cv2.resize(big, (1000, 750), interpolation=cv2.INTER_AREA)
    assert np.abs(warp_face(small, m, 224).astype(int) - face.image).mean() < 6


def test_similarity_transform_recovers_a_known_map() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    a, s, t = math.radians(23), 1.7, np.array([12.0, -5.0])
    r = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = src @ r.T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], r) and np.allclose(m[:, 2], t)
    # A mirrored target is not matched by a reflection: the fit stays a proper rotation (det > 0).
    m2 = similarity_transform(src, dst * [-1, 1])
    assert np.linalg.det(m2[:, :2]) > 0


def test_template_and_zoom() -> None:
    base = template(AlignConfig(size=200))
    assert base[0, 0] < base[1, 0] and base[0, 1] == pytest.approx(80) and base[3, 1] == pytest.approx(136)
    wide = template(AlignConfig(size=200, zoom=0.8))
    assert np.linalg.norm(wide[1] - wide[0]) == pytest.approx(0.8 * np.linalg.norm(base[1] - base[0]))


def test_outside_the_photo_is_flat_grey(astronaut: np.ndarray) -> None:
    """A tight face crop (like a UTKFace chip) leaves part of the template outside the photo: by default that
    part is flat grey (no smeared-edge texture for a classifier to learn); ``border="replicate"`` still smears."""
    face = align_face(astronaut)
    x0, y0 = (int(v) for v in face.source_landmarks.min(0) - 25)
    x1, y1 = (int(v) for v in face.source_landmarks.max(0) + 25)
    chip = np.ascontiguousarray(astronaut[max(y0, 0):y1, max(x0, 0):x1])
    h, w = chip.shape[:2]
    grey = align_face(chip)
    smeared = warp_face(chip, grey.matrix, 224, border="replicate")
    valid = cv2.warpAffine(np.full((h, w), 255, np.uint8), grey.matrix, (224, 224))
    inside = valid == 255
    outside = cv2.erode((valid == 0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # skip the seam
    assert outside.mean() > 0.2 and inside.mean() > 0.3
    assert grey.outside == pytest.approx((valid < 128).mean(), abs=0.01)
    assert face.outside == 0.0  # the whole astronaut photo is bigger than the face's crop
    assert (grey.image[outside] == 128).all()
    assert smeared[outside].std() > 10  # replicated edge pixels vary
    assert np.array_equal(grey.image[inside], smeared[inside])  # the photo's own pixels are untouched
    assert align_face(chip, AlignConfig(border="replicate")).image[outside].std() > 10


def test_config_validation_and_round_trip(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="eye_y"):
        AlignConfig(eye_y=0.7, mouth_y=0.6)
    with pytest.raises(ValueError, match="border"):
        AlignConfig(border="black")
    with pytest.raises(ValueError, match="rotations"):
        AlignConfig(rotations=(45,))
    cfg = AlignConfig(size=160, thresholds=(0.5, 0.6, 0.7), rotations=(180,))
    save_config(cfg, tmp_path / "config.json")
    assert load_config(AlignConfig, tmp_path / "config.json") == cfg


def test_bad_array_is_misuse() -> None:
    with pytest.raises(ValueError, match="uint8"):
        align_face(np.zeros((64, 64, 3), np.float32))


def _weighted_ls_similarity(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Independent oracle: minimise sum_i w_i |M src_i - dst_i|^2 over similarities M = [[a, -b], [b, a]] | t."""
    from scipy.optimize import least_squares

    def resid(q: np.ndarray) -> np.ndarray:
        a, b, tx, ty = q
        pred = src @ np.array([[a, -b], [b, a]]).T + [tx, ty]
        return (np.sqrt(w)[:, None] * (pred - dst)).ravel()

    q = least_squares(resid, x0=[1.0, 0.0, 0.0, 0.0], xtol=1e-14, ftol=1e-14, gtol=1e-14).x
    return np.array([[q[0], -q[1], q[2]], [q[1], q[0], q[3]]])


@pytest.mark.parametrize("seed", range(4))
def test_similarity_transform_is_the_weighted_least_squares_fit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 100, (5, 2))
    dst = src @ np.array([[0.9, -0.3], [0.3, 0.9]]).T + [5.0, 7.0] + rng.normal(0, 6.0, (5, 2))  # noisy points
    w = rng.uniform(0.2, 3.0, 5)
    np.testing.assert_allclose(similarity_transform(src, dst, w), _weighted_ls_similarity(src, dst, w), atol=1e-6)
    # Without weights: the ordinary (equal-weight) fit, which differs from the weighted one on noisy points.
    plain = similarity_transform(src, dst)
    np.testing.assert_allclose(plain, _weighted_ls_similarity(src, dst, np.ones(5)), atol=1e-6)
    assert not np.allclose(plain, similarity_transform(src, dst, w), atol=1e-3)


def test_align_keeps_the_eyes_level_when_a_smile_lifts_one_mouth_corner(astronaut: np.ndarray,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The eyes define "level" (they count double in the fit): level eyes over a lopsided smile give a crop whose
    eye line is closer to level than an equal-weight fit would make it, and the crop's matrix is the weighted fit."""
    import dataclasses

    import gsscreen.faces.align as align_mod
    import gsscreen.faces.orientation as orientation_mod

    real_find = orientation_mod.find_upright_face
    seen: dict[str, np.ndarray] = {}

    def lopsided_smile(image: np.ndarray, cfg: AlignConfig):  # the real face, eyes levelled, one corner lifted
        found = real_find(image, cfg)
        lm = np.asarray(found.lm, dtype=np.float32).copy()
        lm[:2, 1] = lm[:2, 1].mean()
        lm[4, 1] -= 0.25 * float(lm[1, 0] - lm[0, 0])
        seen["lm"] = lm
        return dataclasses.replace(found, lm=lm)

    monkeypatch.setattr(orientation_mod, "find_upright_face", lopsided_smile)
    cfg = AlignConfig(refine=False)
    face = align_face(astronaut, cfg)
    lm = seen["lm"].astype(float)
    np.testing.assert_allclose(face.matrix, _weighted_ls_similarity(lm, align_mod.template(cfg),
                                                                    align_mod.LANDMARK_WEIGHTS), atol=1e-5)
    eye_tilt = abs(math.degrees(math.atan2(*(face.landmarks[1] - face.landmarks[0])[::-1])))
    plain_lm = apply_affine(similarity_transform(lm, align_mod.template(cfg)), lm)
    plain_tilt = abs(math.degrees(math.atan2(*(plain_lm[1] - plain_lm[0])[::-1])))
    assert eye_tilt < plain_tilt - 0.5, (eye_tilt, plain_tilt)
