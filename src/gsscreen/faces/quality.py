"""The quality gate: is this face usable for a call? One function every path calls (study alignment, ``screen``,
``serve``).

Vocabulary (shared by the CLI, the web app and the report; the web app translates the codes, never the logic):

- :data:`OUTCOMES`: every screening result is one of ``"refer"`` (GS suspected — refer), ``"no_signal"`` (no GS
  signal) or ``"inconclusive"`` (retake the photo). A call (refer / no_signal) is made only on a usable face.
- :data:`REASON_TEXT`: reason codes → one plain English sentence. *Reasons* make a face unusable (the outcome is
  inconclusive); :data:`NOTE_TEXT` codes are worth telling the user but do not stop a call (the photo was turned
  upright, other smaller faces were present).

:func:`assess_quality` measures a detected, aligned face (:func:`measure_face`) and judges the measures against
:class:`QualityLimits` (:func:`judge`); a study that only has a face record (landmarks, box, score, sharpness) calls
:func:`judge` on :func:`measures_from_record`. The limits are saved in every model pack (``model.json``
``quality``), so a pack screens with the limits it was validated with; they come from
``benchmarks/bench_quality.py`` (downscaled and blurred photos: where the model's AUC and its agreement with the
full-quality call break down).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gsscreen.faces.align import AlignedFace

# ------------------------------------------------------------------------------------------------------------------
# Outcomes

REFER = "refer"
NO_SIGNAL = "no_signal"
INCONCLUSIVE = "inconclusive"
OUTCOMES = (REFER, NO_SIGNAL, INCONCLUSIVE)
#: outcome code → what a clinician reads (the web app translates these by code)
OUTCOME_TEXT = {
    REFER: "GS suspected — refer for genetic evaluation",
    NO_SIGNAL: "no GS signal",
    INCONCLUSIVE: "inconclusive — retake the photo",
}

# ------------------------------------------------------------------------------------------------------------------
# Reasons (each makes the outcome inconclusive) and notes (told, but a call is still made)

#: reason code → one plain sentence (no numbers: the measures carry those)
REASON_TEXT = {
    "unreadable": "The photo could not be read.",
    "no_face": "No face was found in the photo.",
    "face_too_small": "The face is too small in the photo: take it closer, so the face fills most of the frame.",
    "blurred": "The face is blurred or out of focus: retake the photo sharp and in good light.",
    "several_faces": "There are several faces of similar size in the photo: photograph one child alone.",
    "head_turned": "The head is turned to one side: the child should look straight at the camera.",
    "head_tilted": "The head is tilted strongly: hold the camera level with the child's face.",
    "photo_rotated": "The photo is sideways or upside down and its upright position could not be told: "
                     "turn it upright and try again.",
    "eyes_not_found": "The eyes could not be located reliably.",
    "implausible_landmarks": "The face's landmarks are implausible (for example eyes below the mouth, or points "
                             "off the face): retake the photo face-on.",
    "unsure_face": "The face detector is not sure this is a face: retake the photo face-on, in good light.",
    "borderline": "The result lies too close to the decision threshold for a reliable call: small differences in "
                  "how the face is found could put it on the other side. Retake the photo face-on, sharp and in good "
                  "light; if it stays borderline, ask a clinical geneticist.",
}
#: note code → one plain sentence (a call is still made)
NOTE_TEXT = {
    "turned_upright": "The photo was sideways or upside down; it was turned upright before screening.",
    "other_faces": "There are other, smaller faces in the photo: the largest face (boxed) was screened.",
}


@dataclass
class QualityLimits:
    """Limits of a usable face (saved in the model pack: ``model.json`` → ``quality``).

    ``min_iod_px`` and ``min_sharpness`` come from ``benchmarks/bench_quality.py`` on the shipped model (60 held-out
    ds-kaggle photos, 780 degraded views): from 16 px between the eyes and sharpness 0.4 upwards every bin keeps
    >= 95 % of the full-quality calls (12–16 px: 94.8 %; sharpness 0.3–0.4: 93.5 %) and the AUC within 0.005 of
    the same photos at full quality; none of the full-quality photos falls below them. The pose and detector limits
    are conservative settings, not measured there: 6.7 % of the development photos have ``|yaw| > 0.25`` and 2.5 %
    a detector score below 0.9.

    Attributes:
        min_iod_px: smallest inter-ocular distance in the original photo, px.
        min_sharpness: smallest :func:`crop_sharpness` of the aligned crop (detail per eye distance, 0–~1).
        max_yaw: largest nose offset from the eye midpoint along the eye line, fraction of the eye distance
            (≈ 0 frontal; 0.2 ≈ 15–20° of head turn).
        max_roll_deg: largest eye-line angle from horizontal in the upright photo, degrees (alignment levels the
            eyes, but a strong tilt goes with unreliable landmarks).
        min_detector_score: smallest MTCNN confidence of the scored face.
        several_faces_ratio: the scored face's box must be this many times as wide as any other confident face,
            else the photo is ambiguous ("several_faces"; screen each face with ``--face all``).
        other_face_min_score: detector confidence from which another face counts.
    """

    min_iod_px: float = 16.0
    min_sharpness: float = 0.40
    max_yaw: float = 0.25
    max_roll_deg: float = 30.0
    min_detector_score: float = 0.90
    several_faces_ratio: float = 1.5
    other_face_min_score: float = 0.90

    def __post_init__(self) -> None:
        for f in fields(self):
            v = float(getattr(self, f.name))
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"QualityLimits.{f.name} must be a number >= 0, got {getattr(self, f.name)!r}")
            setattr(self, f.name, v)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> QualityLimits:
        """Limits from a pack's ``quality`` dict (unknown keys ignored, missing ones default: older packs)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in known})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class QualityVerdict:
    """The gate's answer for one face: ``usable`` (a call may be made), ``reasons`` (codes of :data:`REASON_TEXT`;
    empty when usable), ``notes`` (codes of :data:`NOTE_TEXT`) and ``measures`` (the numbers judged)."""

    usable: bool
    reasons: list[str] = field(default_factory=list)
    measures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        """Reasons then notes, in plain English."""
        return [REASON_TEXT[r] for r in self.reasons] + [NOTE_TEXT[n] for n in self.notes]


def unusable(reason: str, **measures: Any) -> QualityVerdict:
    """The verdict for a photo that never reached a face (``unreadable``, ``no_face``, ``photo_rotated``)."""
    return QualityVerdict(False, [reason], dict(measures))


def outcome_of(usable: bool, p_gs: float | None, threshold: float) -> str:
    """The outcome code: inconclusive unless the face is ``usable`` (:attr:`QualityVerdict.usable`) and P(GS) is
    known; then refer when ``p_gs >= threshold``."""
    if not usable or p_gs is None or not math.isfinite(p_gs):
        return INCONCLUSIVE
    return REFER if p_gs >= threshold else NO_SIGNAL


# ------------------------------------------------------------------------------------------------------------------
# Measures


def landmark_geometry(lm: np.ndarray) -> dict[str, float]:
    """Pose and plausibility numbers of MTCNN's 5 points ``(5, 2)`` (left eye, right eye, nose, mouth corners)
    in any pixel frame; distances in eye distances (IOD).

    ``roll_deg``: eye-line angle from the frame's horizontal; ``yaw``: nose offset from the eye midpoint along the
    eye line; ``nose_down`` / ``mouth_down``: nose and mouth-midpoint distance below the eye line, measured along
    the face's own "down" (perpendicular to the eye line); ``mouth_width``: mouth corners apart; ``mouth_order``:
    the mouth corners' order along the eye line (+1 same as the eyes, −1 mirrored).
    """
    lm = np.asarray(lm, dtype=np.float64).reshape(5, 2)
    d = lm[1] - lm[0]
    iod = float(np.hypot(*d))
    if iod < 1e-9:
        return {"iod": 0.0, "roll_deg": 0.0, "yaw": 0.0, "nose_down": 0.0, "mouth_down": 0.0, "mouth_width": 0.0,
                "mouth_order": 0.0}
    u = d / iod
    v = np.array([-u[1], u[0]])  # the face's "down" in image coordinates (y grows downwards)
    mid = (lm[0] + lm[1]) / 2.0
    mouth = (lm[3] + lm[4]) / 2.0
    mw = lm[4] - lm[3]
    return {
        "iod": iod,
        "roll_deg": float(np.degrees(np.arctan2(d[1], d[0]))),
        "yaw": float(np.dot(lm[2] - mid, u) / iod),
        "nose_down": float(np.dot(lm[2] - mid, v) / iod),
        "mouth_down": float(np.dot(mouth - mid, v) / iod),
        "mouth_width": float(np.hypot(*mw) / iod),
        "mouth_order": float(np.sign(np.dot(mw, u))),
    }


def upright_roll(roll_deg: float, rotation: int) -> float:
    """The eye line's angle in the photo turned ``rotation``° counter-clockwise (as the face was found), degrees in
    (−180, 180]: a sideways photo's face is judged for tilt the right way up."""
    r = (roll_deg - rotation) % 360.0
    return r - 360.0 if r > 180.0 else r


def plausible_geometry(g: dict[str, float]) -> bool:
    """Whether :func:`landmark_geometry` describes a face: nose below the eyes, mouth below the nose, mouth corners
    in the eyes' order and of a face's proportions (children and adults, up to a strong smile or head turn)."""
    return (0.15 <= g["nose_down"] <= 1.6 and g["nose_down"] + 0.05 <= g["mouth_down"] <= 2.2
            and 0.3 <= g["mouth_width"] <= 1.8 and g["mouth_order"] > 0 and abs(g["yaw"]) <= 0.9)


def landmarks_in_box(lm: np.ndarray, box: tuple[float, float, float, float] | list[float], margin: float = 0.1) -> bool:
    """Whether all 5 points lie in the face box grown by ``margin`` of its size on each side."""
    lm = np.asarray(lm, dtype=np.float64).reshape(5, 2)
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    return bool(((lm[:, 0] >= x0 - mx) & (lm[:, 0] <= x1 + mx) & (lm[:, 1] >= y0 - my) & (lm[:, 1] <= y1 + my)).all())


def crop_sharpness(crop: np.ndarray, landmarks: np.ndarray | None = None) -> float:
    """Detail of an aligned face crop ``(C, C, 3)`` uint8: std of the Laplacian over std of the intensity, in the
    face's central region (eyes to mouth), computed with the crop reduced to 64 px (eyes ~18 px apart).

    The crop is scaled to the eyes, so this is detail *per eye distance*: a face that was small in the photo (then
    enlarged into the crop) scores as low as a blurred one. Dividing by the intensity's spread keeps it independent
    of contrast and exposure. Sharp portraits score ~1–1.7; a face blurred to a smear or enlarged from a few
    pixels ~0.1–0.3 (``benchmarks/bench_quality.py``).
    """
    import cv2

    img = np.asarray(crop)
    if img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    c = img.shape[0]
    side = 64
    g = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    s = side / c
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2) * s
        iod = max(float(np.hypot(*(lm[1] - lm[0]))), 4.0)
        x0, x1 = lm[0, 0] - 0.35 * iod, lm[1, 0] + 0.35 * iod
        y0, y1 = min(lm[0, 1], lm[1, 1]) - 0.35 * iod, max(lm[3, 1], lm[4, 1]) + 0.15 * iod
    else:
        x0, x1, y0, y1 = 0.25 * side, 0.75 * side, 0.3 * side, 0.75 * side
    x0, y0 = max(0, round(x0)), max(0, round(y0))
    x1, y1 = min(side, round(x1)), min(side, round(y1))
    if x1 - x0 < 8 or y1 - y0 < 8:
        x0, x1, y0, y1 = side // 4, 3 * side // 4, side // 4, 3 * side // 4
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=1)[y0:y1, x0:x1]
    spread = float(g[y0:y1, x0:x1].std())
    if spread < 1.0:  # a flat patch: no detail to speak of
        return 0.0
    return float(lap.std() / spread)


def measure_face(face: AlignedFace, scale: float = 1.0) -> dict[str, Any]:
    """The numbers the gate judges, for an aligned face found in a photo reduced by ``scale`` (original size /
    analysed size; sizes are reported in original px)."""
    lm = np.asarray(face.source_landmarks, dtype=np.float64)
    g = landmark_geometry(lm)
    g["roll_deg"] = upright_roll(g["roll_deg"], int(getattr(face, "rotation", 0)))
    w = float(face.box[2] - face.box[0])
    others = list(getattr(face, "other_faces", []))
    return {
        "box": [round(float(v) * scale, 1) for v in face.box],
        "iod_px": round(g["iod"] * scale, 2),
        "sharpness": round(crop_sharpness(face.image, face.landmarks), 4),
        "yaw": round(g["yaw"], 3),
        "roll_deg": round(g["roll_deg"], 1),
        "detector_score": round(float(face.score), 4),
        "plausible": bool(plausible_geometry(g)),
        "in_box": landmarks_in_box(lm, face.box),
        "iod_box_ratio": round(g["iod"] / max(w, 1e-9), 3),
        "n_faces": int(face.n_faces),
        "other_faces": [{"box": [round(float(v) * scale, 1) for v in o["box"]], "score": round(float(o["score"]), 4)}
                        for o in others],
        "rotation_deg": int(getattr(face, "rotation", 0)),
        "orientation": str(getattr(face, "orientation", "upright")),
    }


def measures_from_record(rec: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure_face`'s numbers from an alignment record (``gsscreen.faces.pipeline``; sharpness may be
    missing in records cached before it was measured: it is then not judged)."""
    lm = np.asarray(rec["source_landmarks"], dtype=np.float64)
    g = landmark_geometry(lm)
    g["roll_deg"] = upright_roll(g["roll_deg"], int(rec.get("rotation", 0)))
    box = rec["box"]
    w = float(box[2] - box[0])
    return {
        "box": [float(v) for v in box],
        "iod_px": round(g["iod"], 2),
        "sharpness": rec.get("sharpness"),
        "yaw": round(g["yaw"], 3),
        "roll_deg": round(g["roll_deg"], 1),
        "detector_score": float(rec["score"]),
        "plausible": bool(plausible_geometry(g)),
        "in_box": landmarks_in_box(lm, box),
        "iod_box_ratio": round(g["iod"] / max(w, 1e-9), 3),
        "n_faces": int(rec.get("n_faces", 1)),
        "other_faces": rec.get("other_faces") or [],
        "rotation_deg": int(rec.get("rotation", 0)),
        "orientation": str(rec.get("orientation", "upright")),
    }


def judge(m: dict[str, Any], limits: QualityLimits | None = None, single_face_chosen: bool = False) -> QualityVerdict:
    """Judge :func:`measure_face`'s numbers. ``single_face_chosen``: the user picked this face (``--face all``),
    so other faces do not make the photo ambiguous."""
    q = limits or QualityLimits()
    reasons: list[str] = []
    notes: list[str] = []
    if m.get("orientation") == "ambiguous":
        reasons.append("photo_rotated")
    if not m["plausible"] or not m["in_box"]:
        reasons.append("implausible_landmarks")
    elif m["iod_box_ratio"] < 0.15:
        reasons.append("eyes_not_found")
    if m["detector_score"] < q.min_detector_score:
        reasons.append("unsure_face")
    if m["iod_px"] < q.min_iod_px:
        reasons.append("face_too_small")
    sharp = m.get("sharpness")
    if sharp is not None and sharp < q.min_sharpness and "face_too_small" not in reasons:
        reasons.append("blurred")
    if abs(m["yaw"]) > q.max_yaw:
        reasons.append("head_turned")
    if abs(m["roll_deg"]) > q.max_roll_deg and "photo_rotated" not in reasons:
        reasons.append("head_tilted")
    others = [o for o in m.get("other_faces") or [] if float(o["score"]) >= q.other_face_min_score]
    if others and not single_face_chosen:
        w = max(float(o["box"][2] - o["box"][0]) for o in others)
        if float(m["box"][2] - m["box"][0]) < q.several_faces_ratio * w:
            reasons.append("several_faces")
        else:
            notes.append("other_faces")
    if m.get("orientation") == "turned" and "photo_rotated" not in reasons:
        notes.append("turned_upright")
    return QualityVerdict(not reasons, reasons, dict(m), notes)


def assess_quality(image: np.ndarray | None, face: AlignedFace, limits: QualityLimits | None = None,
                   scale: float = 1.0, single_face_chosen: bool = False) -> QualityVerdict:
    """The gate: may a call be made on ``face`` (an :class:`~gsscreen.faces.align.AlignedFace` of ``image``)?

    ``image``: the analysed ``(H, W, 3)`` photo (only its size is used, for the face's share of the frame; may be
    None); ``scale``: original size / analysed size. Returns a :class:`QualityVerdict`.
    """
    m = measure_face(face, scale)
    if image is not None:
        h, w = np.asarray(image).shape[:2]
        m["face_frac"] = round(float(face.box[2] - face.box[0]) / max(min(h, w), 1), 3)
    return judge(m, limits, single_face_chosen)


__all__ = [
    "INCONCLUSIVE",
    "NOTE_TEXT",
    "NO_SIGNAL",
    "OUTCOMES",
    "OUTCOME_TEXT",
    "REASON_TEXT",
    "REFER",
    "QualityLimits",
    "QualityVerdict",
    "assess_quality",
    "crop_sharpness",
    "judge",
    "landmark_geometry",
    "landmarks_in_box",
    "measure_face",
    "measures_from_record",
    "outcome_of",
    "plausible_geometry",
    "unusable",
]
