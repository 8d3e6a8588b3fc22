"""A synthetic demonstration cohort built from the public-domain portraits that ship in installed packages.

Nothing here is real clinical data. Every "child" is one of two adult portraits (scikit-image's astronaut,
matplotlib's Grace Hopper) with a random **identity jitter** (pose, scale, colour, light, a smooth global warp)
so that no two synthetic subjects look alike. Photos of the ``GS`` class additionally receive a
**landmark-driven morph** in the spirit of documented dysmorphic traits (a toy, not a model of any syndrome):

- wider-set eyes (hypertelorism): each eye moved outward;
- upslanting palpebral fissures: each eye region rotated so its outer side rises;
- a shorter nose: the nose tip moved up towards the eyes;
- a wider mouth: the mouth corners moved outward.

The morph strength varies per subject, and controls get landmark jitter of the same size in random directions,
so the classes overlap somewhat and the demo study is not trivially separable.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from gsscreen.examples import EXAMPLE_NAMES, example_image

SYNTHETIC_NOTE = (
    "SYNTHETIC COHORT: every photo is a morphed copy of one of two public-domain adult portraits. "
    "Ages and sexes are random labels. The numbers show that the pipeline works; they say nothing about real "
    "children or real syndromes."
)


@dataclasses.dataclass
class DemoCohortConfig:
    """How the synthetic cohort is built."""

    n_per_class: int = 40  # photos per class (GS, control)
    photos_per_subject: int = 1  # >1 exercises the subject-grouped splits
    morph_strength: float = 0.55  # scales every GS trait; 0 makes the classes identical
    morph_spread: float = 0.7  # per-subject strength varies uniformly in [1-spread, 1+spread]
    jitter: float = 1.0  # scales the identity jitter
    seed: int = 0


def _gaussian_displacement(
    shape: tuple[int, int], centers: np.ndarray, shifts: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """Smooth forward displacement field (H, W, 2): each center moves by its shift, fading with a Gaussian."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w, 2), np.float32)
    for (cx, cy), (dx, dy), s in zip(centers, shifts, sigmas, strict=True):
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * s * s))
        field[..., 0] += g * dx
        field[..., 1] += g * dy
    return field


def _rotation_displacement(shape: tuple[int, int], center: np.ndarray, angle_deg: float, sigma: float) -> np.ndarray:
    """Displacement (H, W, 2) of a local rotation about ``center``, fading with a Gaussian of width ``sigma``."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.deg2rad(angle_deg)
    rx, ry = xx - center[0], yy - center[1]
    # Image y points down: a positive angle here turns the +x side upwards on screen.
    nx = np.cos(a) * rx + np.sin(a) * ry
    ny = -np.sin(a) * rx + np.cos(a) * ry
    g = np.exp(-(rx**2 + ry**2) / (2.0 * sigma * sigma))
    return np.stack([(nx - rx) * g, (ny - ry) * g], axis=-1).astype(np.float32)


def _warp(image: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Apply a smooth forward displacement field by sampling the source at ``q - D(q)``.

    For small, smooth fields the inverse of ``p -> p + D(p)`` is well approximated by ``q -> q - D(q)``.
    """
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = xx - forward[..., 0]
    map_y = yy - forward[..., 1]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def dysmorphic_field(shape: tuple[int, int], landmarks: np.ndarray, strength: float) -> np.ndarray:
    """The GS-class morph as one displacement field, driven by the 5 landmarks (image-left eye first).

    ``strength`` 1.0 moves each eye outward by 9% of the inter-ocular distance (IOD), slants each eye by 9°,
    lifts the nose tip by 14% of the eye–nose height and widens the mouth by 10% of IOD per corner.
    """
    le, re, nose, lm, rm = (landmarks[i].astype(np.float32) for i in range(5))
    iod = float(np.linalg.norm(re - le))
    eye_mid = (le + re) / 2
    k = strength
    centers = np.array([le, re, nose, lm, rm])
    shifts = np.array(
        [
            [-0.09 * iod * k, 0.0],
            [0.09 * iod * k, 0.0],
            [0.0, -0.14 * k * float(nose[1] - eye_mid[1])],
            [-0.10 * iod * k, 0.0],
            [0.10 * iod * k, 0.0],
        ],
        np.float32,
    )
    sigmas = np.array([0.22, 0.22, 0.18, 0.16, 0.16], np.float32) * iod
    field = _gaussian_displacement(shape, centers, shifts, sigmas)
    # Upslant: the image-left eye's outer side is its left (-x): rotate it so -x rises (negative angle);
    # the image-right eye's outer side is +x: positive angle.
    field += _rotation_displacement(shape, le, -9.0 * k, 0.2 * iod)
    field += _rotation_displacement(shape, re, 9.0 * k, 0.2 * iod)
    return field


def identity_jitter(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """A new-looking synthetic person: random landmark jitter, global smooth warp, pose, colour and light."""
    h, w = image.shape[:2]
    iod = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    # Face-shape change: each landmark region moves a little in a random direction.
    shifts = rng.normal(0, 0.04 * iod * amount, size=(5, 2)).astype(np.float32)
    field = _gaussian_displacement((h, w), landmarks, shifts, np.full(5, 0.25 * iod, np.float32))
    # Global smooth warp from a coarse random grid.
    coarse = rng.normal(0, 0.025 * iod * amount, size=(4, 4, 2)).astype(np.float32)
    field += cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    out = _warp(image, field)
    # Pose: rotation, scale and translation about the face centre.
    c = landmarks.mean(axis=0)
    m = cv2.getRotationMatrix2D(
        (float(c[0]), float(c[1])), float(rng.uniform(-8, 8) * amount), float(1 + rng.uniform(-0.08, 0.08) * amount)
    )
    m[:, 2] += rng.uniform(-0.06, 0.06, size=2) * np.array([w, h]) * amount
    out = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    # Colour and light: channel gains, gamma, a linear light gradient, sensor noise.
    f = out.astype(np.float32) / 255.0
    f *= 1 + rng.uniform(-0.12, 0.12, size=3).astype(np.float32) * amount
    f = np.clip(f, 0, 1) ** float(np.exp(rng.normal(0, 0.15 * amount)))
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grad = (np.cos(ang) * (xx / w - 0.5) + np.sin(ang) * (yy / h - 0.5)) * rng.uniform(0, 0.35) * amount
    f *= (1 + grad)[..., None]
    f += rng.normal(0, 0.01 * amount, size=f.shape).astype(np.float32)
    return (np.clip(f, 0, 1) * 255).round().astype(np.uint8)


def portrait_landmarks() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each embedded portrait with its 5 landmarks, found by the real MTCNN step (``gsscreen.faces``)."""
    from gsscreen.faces import AlignConfig, align_face

    out = {}
    for name in EXAMPLE_NAMES:
        img = example_image(name)
        face = align_face(img, AlignConfig())
        out[name] = (img, np.asarray(face.source_landmarks, np.float32))
    return out


def build_demo_cohort(out_dir: str | Path, cfg: DemoCohortConfig | None = None) -> Path:
    """Write the synthetic photos and ``cohort.csv`` (image, label, syndrome, subject_id, age_months, sex).

    Returns the path of ``cohort.csv``. Deterministic for a given ``cfg.seed``.
    """
    cfg = cfg or DemoCohortConfig()
    out = Path(out_dir)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    bases = portrait_landmarks()
    names = sorted(bases)
    rows = []
    for label in ("GS", "control"):
        n_subjects = -(-cfg.n_per_class // cfg.photos_per_subject)
        made = 0
        for s in range(n_subjects):
            base = names[s % len(names)]
            img, lms = bases[base]
            subject_rng = np.random.default_rng(rng.integers(2**32))
            if label == "GS":
                k = cfg.morph_strength * subject_rng.uniform(1 - cfg.morph_spread, 1 + cfg.morph_spread)
                person = _warp(img, dysmorphic_field(img.shape[:2], lms, k))
            else:
                person = img
            # Ages and sexes are random labels (both portraits show adult women): they exercise Table 1 only.
            age = int(subject_rng.integers(24, 180))
            sex = "M" if subject_rng.random() < 0.5 else "F"
            for p in range(cfg.photos_per_subject):
                if made >= cfg.n_per_class:
                    break
                photo = identity_jitter(person, lms, np.random.default_rng(subject_rng.integers(2**32)), cfg.jitter)
                sid = f"{label.lower()}-{s:03d}"
                fname = f"{sid}-{p}.jpg"
                bgr = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
                cv2.imwrite(str(out / "photos" / fname), bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
                rows.append(
                    {
                        "image": f"photos/{fname}",
                        "label": label,
                        "syndrome": "synthetic-dysmorphic" if label == "GS" else "",
                        "subject_id": sid,
                        "age_months": age,
                        "sex": sex,
                        "source_portrait": base,
                    }
                )
                made += 1
    csv = out / "cohort.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    (out / "README.txt").write_text(SYNTHETIC_NOTE + "\n", encoding="utf-8")
    return csv


def simulate_readers(
    cohort_csv: str | Path,
    out_csv: str | Path,
    readers: tuple[tuple[str, str, float, float], ...] = (
        ("sim-junior-1", "junior", 0.62, 0.70),
        ("sim-junior-2", "junior", 0.58, 0.78),
        ("sim-senior-1", "senior", 0.74, 0.80),
        ("sim-senior-2", "senior", 0.70, 0.86),
        ("sim-senior-3", "senior", 0.80, 0.74),
    ),
    seed: int = 0,
) -> Path:
    """Write a reader-study answers CSV (the columns ``gsscreen readers export`` writes) for SIMULATED readers.

    Each reader is ``(name, role, sensitivity, specificity)``: they call a GS photo GS with probability
    ``sensitivity`` and a control photo GS with probability ``1 - specificity``, with a 1–5 confidence that is
    higher, on average, when the call is right. Only for the demo report: real reader studies use
    ``gsscreen readers serve``. ``photo`` is the image path as written in the cohort CSV.
    """
    rng = np.random.default_rng(seed)
    table = pd.read_csv(cohort_csv)
    is_gs = table["label"].astype(str).str.strip().str.lower().eq("gs").to_numpy()
    rows = []
    for name, role, sens, spec in readers:
        p_call_gs = np.where(is_gs, sens, 1 - spec)
        call_gs = rng.random(len(table)) < p_call_gs
        correct = call_gs == is_gs
        conf = np.clip(np.round(rng.normal(np.where(correct, 3.8, 2.6), 0.9)), 1, 5).astype(int)
        secs = rng.uniform(2.0, 8.0, size=len(table)).round(2)
        for img, gs, c, s in zip(table["image"], call_gs, conf, secs, strict=True):
            rows.append({"reader": name, "role": role, "photo": img, "answer": "GS" if gs else "control",
                         "confidence": int(c), "seconds": float(s)})
    out = Path(out_csv)
    pd.DataFrame(rows).to_csv(out, index=False)
    return out
