"""Which way up is the photo? Find the face upright over the four 90° turns (photos without an EXIF tag).

A photo saved sideways or upside down without an EXIF orientation tag reaches the detector turned. MTCNN then
either misses the face or, worse, reads one with landmarks that do not make a face (eyes below the mouth, points on
the hair) — and the similarity transform happily warps that into a "crop". :func:`find_upright_face` reads the
landmarks *in the frame the detector saw* and accepts a face only when they read as an upright face there: eye line
within ±:data:`MAX_FRAME_ROLL_DEG` of horizontal, nose below the eyes and mouth below the nose, mouth corners in the
eyes' order, points inside the face box (:func:`gsscreen.faces.quality.plausible_geometry`).

Cost stays bounded: the plain pass (and its padding retries) runs as before, and the other three turns are tried only
when it finds no face, or a face only in the small-faces pass, or a face that does not read upright, or whose eyes
are squeezed in its box (:data:`MIN_EYE_SHARE`), or one the detector is unsure of (score below
:data:`SEARCH_BELOW_SCORE`; ~5 % of the development photos). Among the turns the upright, plausible reading with
the highest detector score wins (a face read into a turned photo scores lower: an upside-down portrait read upright
scored 0.87 against 1.00 the right way up). When another turn reads as a face about as confidently
(:data:`RIVAL_MARGIN`), or no turn reads upright at all, the orientation is ``"ambiguous"`` and the quality gate
makes no call (``photo_rotated``).

MTCNN's landmarks alone are not enough: it reads an upside-down baby as an upright face with score 0.98 and
plausible points (``down_161`` turned 180°). So every reading is also checked by a second detector that shares none
of MTCNN's training or design: dlib's HOG frontal-face detector, trained on upright faces only, scores the face
levelled by the reading's landmarks and the same view turned 90°, 180° and 270° (:func:`hog_turn_scores`). When a
turn of the view looks clearly more like an upright face than the view itself (:data:`HOG_MARGIN`, above
:data:`HOG_MIN`), the reading is not upright (:func:`hog_rejects`): the other turns of the photo are searched, and
if none gives a reading both detectors accept, the orientation is ambiguous. The limits come from 1,500 aligned
development crops (``benchmarks/bench_orientation_check.py``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gsscreen.faces.align import (
    LANDMARK_WEIGHTS,
    AlignConfig,
    NoFaceError,
    _refine_landmarks,
    _variants,
    apply_affine,
    detect_in_variant,
    similarity_transform,
    template,
    warp_face,
)
from gsscreen.faces.mtcnn import Detection
from gsscreen.faces.quality import landmark_geometry, landmarks_in_box, plausible_geometry
from gsscreen.paths import cache_dir

#: a face whose eye line is further than this from the detector frame's horizontal is not "upright" there, degrees
MAX_FRAME_ROLL_DEG = 45.0
#: the other turns are also tried when the plain pass's face scores below this (unsure finds are where MTCNN reads
#: faces into turned photos)
SEARCH_BELOW_SCORE = 0.95
#: ... or whose eyes are closer than this share of its box width apart (0.44 ± 0.04 on the development photos; a
#: face read into a sideways photo's ear, hair or clothes has them squeezed)
MIN_EYE_SHARE = 0.3
#: two turns whose upright readings score within this of each other leave the orientation ambiguous
RIVAL_MARGIN = 0.05
#: a reading is rejected when a 90°/180°/270° turn of its levelled view scores this much higher on dlib's HOG
#: frontal-face detector than the view itself ...
HOG_MARGIN = 0.5
#: ... and that turn's score is at least this (a face HOG finds in no turn at all tells nothing)
HOG_MIN = 0.0
#: the levelled view HOG scores: the default crop geometry (224 px; a face ~120 px wide, above HOG's 80 px window)
_HOG_VIEW = AlignConfig()
#: HOG scans the view from this level of its own image pyramid (each level 5/6 of the one before), not from level 0.
#: At levels 0 and 1 its 80-px window spans less than 100 px of the 224-px view, smaller than the levelled face
#: (whose best box is 105–180 px wide in 99.7 % of 1,500 development crops), so they only find face-like patterns
#: inside it or around it, and they cost half the detector's time. From level 2 on, the levels and so the scores
#: are dlib's own: the upright view's score was unchanged in 99.7 % of those crops, the same single upright crop was
#: rejected, and turned views were caught as often or more (``benchmarks/bench_orientation_check.py``).
HOG_FIRST_LEVEL = 2


@dataclass
class FoundFace:
    """The face kept: ``det`` in the detector frame; ``lm`` (5, 2) refined landmarks and ``box`` in original px;
    ``rotation`` (degrees counter-clockwise the photo was turned for the detector); ``orientation``: ``"upright"``
    (found upright as the photo is), ``"turned"`` (upright after turning the photo) or ``"ambiguous"``;
    ``upright_reading``: whether its landmarks read as an upright face in the detector frame."""

    det: Detection
    lm: np.ndarray
    box: tuple[float, float, float, float]
    n_faces: int
    flags: list[str]
    others: list[dict]
    rotation: int = 0
    orientation: str = "upright"
    upright_reading: bool = True
    frame_lm: np.ndarray = field(default_factory=lambda: np.zeros((5, 2)), repr=False)
    hog: np.ndarray | None = field(default=None, repr=False)  # hog_turn_scores of the reading (4,), when computed


_hog_lock = threading.Lock()
_hog_detector: Any = None


def hog_turn_scores(image: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """dlib HOG frontal-face scores ``(4,)`` of the face levelled by landmarks ``lm`` ``(5, 2)`` (px of ``image``
    ``(H, W, 3)`` uint8), as read and turned 90°, 180°, 270°: the best detection's score in each view, -9 where HOG
    finds none (at its lowered threshold -1.5), scanning from pyramid level :data:`HOG_FIRST_LEVEL`. Upright
    development crops: median 0.84 as read, 0.28 or less in every turn for 99 % of them."""
    global _hog_detector
    m = similarity_transform(np.asarray(lm, np.float64).reshape(5, 2), template(_HOG_VIEW), LANDMARK_WEIGHTS)
    view = warp_face(np.ascontiguousarray(image[..., :3]), m, _HOG_VIEW.size, "grey")
    out = np.full(4, -9.0)
    with _hog_lock:  # one detector object, not shared between threads at once
        if _hog_detector is None:
            import dlib

            _hog_detector = (frontal_face_detector(), dlib.pyramid_down(6))
        detector, down = _hog_detector
        for k in range(4):
            turned = np.ascontiguousarray(np.rot90(view, k))
            for _ in range(HOG_FIRST_LEVEL):  # the detector's own pyramid step (see HOG_FIRST_LEVEL)
                turned = down(turned)
            _, scores, _ = detector.run(turned, 0, -1.5)
            if len(scores):
                out[k] = float(max(scores))
    return out


def frontal_face_detector() -> Any:
    """dlib's HOG frontal-face detector, from the cache.

    ``dlib.get_frontal_face_detector()`` decodes the copy compiled into dlib, a text serialisation: ~0.35 s of CPU,
    paid by every worker process that checks a face. Its binary serialisation, saved once per dlib version into
    ``cache_dir("dlib")``, loads in ~2 ms and detects the same (tested). A cache file that cannot be read is
    written again; where the cache cannot be written, the compiled-in copy is used."""
    import dlib

    try:
        path = cache_dir("dlib") / f"frontal_face_detector-{dlib.__version__}.svm"
    except OSError:
        return dlib.get_frontal_face_detector()
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except Exception:  # dlib raises its own error for a damaged file: it is written again below
            pass
    detector = dlib.get_frontal_face_detector()
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        detector.save(str(tmp))
        os.replace(tmp, path)  # atomic: a worker starting meanwhile reads the old file or the new one, never half
    except (OSError, RuntimeError):
        tmp.unlink(missing_ok=True)
    return detector


def hog_rejects(scores: np.ndarray) -> bool:
    """Whether HOG scores ``(4,)`` (:func:`hog_turn_scores`) say the levelled face is not upright: a turn of it
    scores at least :data:`HOG_MIN` and :data:`HOG_MARGIN` above the view as read."""
    other = float(np.max(scores[1:]))
    return other >= HOG_MIN and other - float(scores[0]) >= HOG_MARGIN


def reads_upright(frame_lm: np.ndarray, frame_box: tuple[float, float, float, float] | list[float]) -> bool:
    """Whether landmarks ``(5, 2)`` (in the detector's frame) read as an upright, plausible face in ``frame_box``."""
    g = landmark_geometry(frame_lm)
    return bool(abs(g["roll_deg"]) <= MAX_FRAME_ROLL_DEG and plausible_geometry(g)
                and landmarks_in_box(frame_lm, frame_box))


def inside_photo(lm: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether the eyes and nose ``lm[:3]`` (original px) lie inside the photo and the mouth corners nearly so.

    The padding retries extend a photo with mirrored or smeared edges; mirrored, an upside-down face grows an
    upright copy of itself in the border, which must never be taken for the face."""
    h, w = shape[:2]
    lm = np.asarray(lm, dtype=np.float64).reshape(5, 2)
    m = 0.1 * min(h, w)
    core = (lm[:3, 0] >= 0) & (lm[:3, 0] <= w - 1) & (lm[:3, 1] >= 0) & (lm[:3, 1] <= h - 1)
    mouth = (lm[3:, 0] >= -m) & (lm[3:, 0] <= w - 1 + m) & (lm[3:, 1] >= -m) & (lm[3:, 1] <= h - 1 + m)
    return bool(core.all() and mouth.all())


def _candidate(image: np.ndarray, cfg: AlignConfig, desc: str, build, short: int) -> FoundFace | None:  # type: ignore[no-untyped-def]
    v = build()
    hit = detect_in_variant(v, desc, cfg, short)
    if hit is None:
        return None
    det, lm, box, n, flags, others = hit
    # A face in a padding retry's mirrored border is a copy of the real one, not another child.
    others = [o for o in others if inside_photo(np.asarray(o["landmarks"]), image.shape)]
    n = 1 + len(others)
    if cfg.refine:
        lm = _refine_landmarks(image, lm, cfg)
    frame_lm = apply_affine(v.to_variant, lm)
    rot = next((int(f.split("_", 1)[1]) for f in flags if f.startswith("rotated_")), 0)
    upright = reads_upright(frame_lm, det.box) and inside_photo(lm, image.shape)
    hog = None
    if upright:  # MTCNN's points read as an upright face: does a detector that shares nothing with it agree?
        hog = hog_turn_scores(image, lm)
        upright = not hog_rejects(hog)
    return FoundFace(det, np.asarray(lm, np.float32), box, n, flags, others, rotation=rot,
                     upright_reading=upright, frame_lm=frame_lm, hog=hog)


def _eye_share(c: FoundFace) -> float:
    return float(np.hypot(*(c.frame_lm[1] - c.frame_lm[0])) / max(c.det.box[2] - c.det.box[0], 1e-9))


def find_upright_face(image: np.ndarray, cfg: AlignConfig) -> FoundFace:
    """The face of ``image`` (H, W, 3) uint8, the right way up (see the module docstring).

    Raises :class:`~gsscreen.faces.align.NoFaceError` when no attempt finds a face.
    """
    short = min(image.shape[:2])
    variants = _variants(image, cfg)
    normal = [(d, b) for d, b in variants if not d.startswith("rotated") and "low_threshold" not in d]
    turned = [(d, b) for d, b in variants if d.startswith("rotated")]
    low = [(d, b) for d, b in variants if "low_threshold" in d]
    tried: list[str] = []
    first: FoundFace | None = None
    for desc, build in normal:
        tried.append(desc)
        first = _candidate(image, cfg, desc, build, short)
        if first is not None:
            break
    if (first is not None and first.upright_reading and first.det.score >= SEARCH_BELOW_SCORE
            and tried[-1] != "small faces" and _eye_share(first) >= MIN_EYE_SHARE):
        return first  # the common case: one pass, as before
    cands = [first] if first is not None else []
    for desc, build in turned:
        tried.append(desc)
        c = _candidate(image, cfg, desc, build, short)
        if c is not None:
            cands.append(c)
    if not any(c.upright_reading for c in cands):
        # Nothing reads upright at the normal thresholds: the lower-threshold retries, as the photo is.
        for desc, build in low:
            tried.append(desc)
            c = _candidate(image, cfg, desc, build, short)
            if c is not None:
                cands.append(c)
                break
    if not cands:
        h, w = image.shape[:2]
        raise NoFaceError(f"no face found ({w}×{h} photo; tried: {', '.join(tried)})")
    upright = sorted((c for c in cands if c.upright_reading), key=lambda c: -c.det.score)
    if not upright:
        best = max(cands, key=lambda c: c.det.score)
        best.orientation = "ambiguous"  # a face, but no turn of the photo makes it read as one
        return best
    best = upright[0]
    # Another turn reading as a comparable face (as confident, not much smaller) leaves the orientation unknown.
    side = float(best.det.box[2] - best.det.box[0])
    rivals = [c for c in upright[1:] if c.rotation != best.rotation and c.det.score >= best.det.score - RIVAL_MARGIN
              and float(c.det.box[2] - c.det.box[0]) >= 0.5 * side]
    if first is not None and first.upright_reading and best is not first and best.det.score < first.det.score + 0.05:
        rivals.append(first)  # the photo as it is reads upright too: a turn must be clearly better to overrule it
    if rivals:
        best.orientation = "ambiguous"
    else:
        best.orientation = "upright" if best.rotation == 0 else "turned"
    return best


__all__ = ["HOG_MARGIN", "HOG_MIN", "MAX_FRAME_ROLL_DEG", "SEARCH_BELOW_SCORE", "FoundFace", "find_upright_face",
           "hog_rejects", "hog_turn_scores", "inside_photo", "reads_upright"]
