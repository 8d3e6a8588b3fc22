"""The synthetic demo cohort's morph moves facial landmarks the way it documents."""

from __future__ import annotations

import numpy as np

from gsscreen import demo

LMS = np.array([[100, 100], [160, 100], [130, 135], [108, 165], [152, 165]], np.float32)


def _dots(shape=(260, 260)) -> np.ndarray:
    img = np.full((*shape, 3), 255, np.uint8)
    for x, y in LMS.astype(int):
        img[y - 2 : y + 3, x - 2 : x + 3] = 0
    return img


def _centroids(img: np.ndarray) -> np.ndarray:
    dark = img.mean(axis=2) < 128
    out = []
    for x, y in LMS.astype(int):
        ys, xs = np.nonzero(dark[y - 15 : y + 16, x - 15 : x + 16])
        out.append([xs.mean() + x - 15, ys.mean() + y - 15])
    return np.array(out)


def test_dysmorphic_morph_widens_eyes_and_mouth_and_shortens_nose():
    img = _dots()
    morphed = demo._warp(img, demo.dysmorphic_field(img.shape[:2], LMS, strength=1.0))
    before, after = _centroids(img), _centroids(morphed)
    iod = 60.0
    eye_gain = (after[1, 0] - after[0, 0]) - (before[1, 0] - before[0, 0])
    mouth_gain = (after[4, 0] - after[3, 0]) - (before[4, 0] - before[3, 0])
    assert 0.12 * iod < eye_gain < 0.26 * iod  # documented: 9% of IOD per eye
    assert mouth_gain > 0.12 * iod  # documented: 10% of IOD per corner
    assert after[2, 1] < before[2, 1] - 2  # nose tip lifted
    # Zero strength changes nothing.
    same = demo._warp(img, demo.dysmorphic_field(img.shape[:2], LMS, strength=0.0))
    assert np.array_equal(same, img)


def test_identity_jitter_is_seeded_and_varies_between_subjects():
    rng_img = np.random.default_rng(1).integers(0, 255, size=(200, 200, 3), dtype=np.uint8)
    a = demo.identity_jitter(rng_img, LMS * 0.7, np.random.default_rng(5), 1.0)
    b = demo.identity_jitter(rng_img, LMS * 0.7, np.random.default_rng(5), 1.0)
    c = demo.identity_jitter(rng_img, LMS * 0.7, np.random.default_rng(6), 1.0)
    assert a.shape == rng_img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5
