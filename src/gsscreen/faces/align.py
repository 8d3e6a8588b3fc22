"""Face alignment: MTCNN's 5 landmarks → similarity transform → a fixed-size, upright, centred face crop.

:func:`align_face` is the in-memory entry point (used by batch alignment and by screening). It detects on a copy
reduced to ``AlignConfig.max_side``, maps the landmarks back to the original pixels and warps the crop from the
original (through an area-averaged region when the face is much larger than the crop, so no aliasing). When no
face is found it retries — border padding, upscaling, lower thresholds, rotations — and records which retry worked
in ``AlignedFace.flags``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import cv2
import numpy as np

from gsscreen.errors import GsscreenError
from gsscreen.faces.mtcnn import Detection, get_detector

_PAD_MODES = {"replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}
#: Fill modes of a crop's outside-the-photo area (AlignConfig.border) → OpenCV border modes.
BORDER_MODES = {"grey": cv2.BORDER_CONSTANT, **_PAD_MODES}
#: The flat fill of ``border="grey"``, 0–255 (0.5 after scaling to 0–1, the middle of every channel).
GREY = 128


class NoFaceError(GsscreenError):
    """No face was found in a photo (after all retries). ``reason`` says what was tried."""

    def __init__(self, reason: str, file: str | None = None) -> None:
        super().__init__(f"{file}: {reason}" if file else reason)
        self.reason = reason
        self.file = file


class UnsuitablePhotoError(NoFaceError):
    """A photo whose shape cannot hold a face worth screening (a sliver, a strip); refused before any detection."""


# Bounded work for any photo (issue #11: a 1600×40 strip took 82 s and 3.5 GB, a 10000×1 one asked OpenCV for
# 77 GB). Every detection attempt gets an image of at most DETECT_BUDGET × max_side² pixels, whatever the photo.
#: shorter side below this (px, as given to align_face) → refused: MTCNN's smallest window is 12 px and a face
#: needs room around it; a thumbnail this small carries no facial detail to screen.
MIN_PHOTO_SIDE = 24
#: long side / short side above this → refused: no portrait (nor phone panorama of one child) is this elongated,
#: and retrying such a strip upscaled and padded is what made the work unbounded.
MAX_ASPECT = 6.0
#: the upscaling retry enlarges at most this much (160 px is reached from 40 px; smaller photos stay smaller).
MAX_UPSCALE = 4.0
#: pixels of any detection attempt ≤ this × max_side² (2.56 = a square photo at max_side padded by 0.3 each side,
#: the largest ordinary retry, so normal photos are searched exactly as before).
DETECT_BUDGET = 2.6


def check_photo_shape(h: int, w: int) -> None:
    """Raise :class:`UnsuitablePhotoError` (with the reason in words) for a photo of ``h``×``w`` px that is too
    small or too elongated for face detection to mean anything (see :data:`MIN_PHOTO_SIDE`, :data:`MAX_ASPECT`)."""
    short, long_ = min(h, w), max(h, w)
    if short < MIN_PHOTO_SIDE:
        raise UnsuitablePhotoError(
            f"the photo is {w}×{h} px: its shorter side is too small to hold a face "
            f"(at least {MIN_PHOTO_SIDE} px needed); send the original photo")
    if long_ > MAX_ASPECT * short:
        raise UnsuitablePhotoError(
            f"the photo is {w}×{h} px: {long_ / short:.0f} times as long as it is wide, not a portrait "
            f"(at most {MAX_ASPECT:g}:1); crop it around the child's face")


@dataclass
class AlignConfig:
    """Settings of face alignment (saved as ``config.json`` with every alignment run).

    Template: the two eyes sit at height ``eye_y`` and the mouth corners at ``mouth_y`` (fractions of the crop),
    which keeps the whole face from hairline to chin in frame; ``zoom`` > 1 enlarges the face (less margin).
    """

    size: int = 224  # output crop side, px
    eye_y: float = 0.40  # eye line height, fraction of the crop
    mouth_y: float = 0.68  # mouth-corner line height, fraction of the crop
    zoom: float = 1.0  # face scale about the crop centre; < 1 adds margin, > 1 crops tighter
    # How the crop is filled where it reaches outside the photo: "grey" (flat mid-grey, 128), "replicate" (edge
    # pixels smeared outwards) or "reflect". Grey by default: how much of the template a photo covers depends on
    # how tightly its source cropped it, so smeared edges are a *source* signature a classifier can learn (on
    # ds-kaggle 11 % of a Down-syndrome crop lies outside the photo vs 23 % of a control's and 52 % of a UTKFace
    # chip's); a flat fill carries no texture. Measured: benchmarks/bench_border.py.
    border: str = "grey"
    max_side: int = 1280  # detection runs on a copy whose longer side is at most this, px
    min_face: int = 20  # smallest face side searched for, px at detection resolution
    # First pass looks only for faces of at least this fraction of the shorter side (portraits: ~2× faster);
    # when it finds none, a second pass searches down to ``min_face`` px before any other retry.
    min_face_frac: float = 0.1
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # P-, R-, O-Net score thresholds
    retry: bool = True  # try padding / upscaling / lower thresholds / rotations before giving up
    pad_fracs: tuple[float, ...] = (0.15, 0.3)  # padding retries: border on each side, fraction of long side
    pad_modes: tuple[str, ...] = ("replicate", "reflect")  # padding retries: how the border is filled
    upscale_below: int = 160  # upscaling retry for photos whose shorter side is below this, px
    low_thresholds: tuple[float, float, float] = (0.3, 0.4, 0.5)  # thresholds of the lower-threshold retry
    rotations: tuple[int, ...] = (90, 270, 180)  # rotation retries, degrees counter-clockwise
    retry_min_face_frac: float = 0.1  # a retry's face must span at least this fraction of the shorter side
    refine: bool = True  # re-read the landmarks with O-Net on a levelled copy of the face
    small_face_iod: float = 24.0  # flag "small_face" below this inter-ocular distance, original px
    max_pixels: int = 100_000_000  # refuse larger photos (decompression-bomb guard)
    load_max_side: int = 1600  # batch: photos are decoded at most this large (crops come from this copy)
    # Batch-only settings (they do not change a crop, so they are not part of the cache key).
    workers: int = 2
    cache: bool = True
    qc_count: int = 48  # crops shown on the QC sheet

    #: fields that do not change the crop (left out of the cache key)
    _NOT_IN_KEY = ("workers", "cache", "qc_count")

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"AlignConfig.size must be >= 16 px, got {self.size}")
        if not 0 < self.eye_y < self.mouth_y < 1:
            raise ValueError(f"AlignConfig needs 0 < eye_y < mouth_y < 1, got {self.eye_y=} {self.mouth_y=}")
        if self.zoom <= 0:
            raise ValueError(f"AlignConfig.zoom must be > 0, got {self.zoom}")
        if self.border not in BORDER_MODES:
            raise ValueError(f"AlignConfig.border must be one of {list(BORDER_MODES)}, got {self.border!r}")
        self.thresholds = tuple(float(t) for t in self.thresholds)  # type: ignore[assignment]
        self.low_thresholds = tuple(float(t) for t in self.low_thresholds)  # type: ignore[assignment]
        self.rotations = tuple(int(r) % 360 for r in self.rotations)
        self.pad_fracs = tuple(float(f) for f in self.pad_fracs)
        self.pad_modes = tuple(self.pad_modes)
        bad_modes = [m for m in self.pad_modes if m not in _PAD_MODES]
        if bad_modes:
            raise ValueError(f"AlignConfig.pad_modes must be among {sorted(_PAD_MODES)}, got {bad_modes}")
        bad = [r for r in self.rotations if r not in (90, 180, 270)]
        if bad:
            raise ValueError(f"AlignConfig.rotations must be among 90, 180, 270; got {bad}")

    def key_fields(self) -> dict[str, object]:
        """The settings that determine a crop (for the cache key)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._NOT_IN_KEY}


@dataclass
class AlignedFace:
    """One aligned face."""

    image: np.ndarray  # (size, size, 3) uint8 RGB, the aligned crop
    landmarks: np.ndarray  # (5, 2) float32, in crop pixels
    source_landmarks: np.ndarray  # (5, 2) float32, in original-image pixels
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in original-image pixels
    score: float  # detector confidence, 0–1
    n_faces: int  # faces found in the photo (the kept one is the largest, most confident)
    flags: list[str] = field(default_factory=list)  # e.g. "several_faces", "small_face", "padded", "rotated_90"
    matrix: np.ndarray = field(default_factory=lambda: np.eye(2, 3, dtype=np.float64))  # (2, 3) original -> crop
    tilt_deg: float = 0.0  # eye-line angle in the original photo, degrees (positive: right eye lower)
    iod: float = 0.0  # inter-ocular distance in the original photo, px
    outside: float = 0.0  # share of the crop's area that lies outside the photo (filled per AlignConfig.border)
    # every other face the detector found: {"box": [x0, y0, x1, y1], "score": 0–1, "landmarks": (5, 2)} original px
    other_faces: list[dict] = field(default_factory=list)
    rotation: int = 0  # degrees counter-clockwise the photo was turned to find the face upright (0, 90, 180, 270)
    orientation: str = "upright"  # "upright", "turned" (found upright after turning) or "ambiguous"


# ------------------------------------------------------------------------------------------------------------------
# Template and transforms

#: Fit weights of the 5 landmarks: the eyes are MTCNN's steadiest points and their line defines "level", while
#: the mouth corners move with expression (a smile lifts them), so the eyes count double.
LANDMARK_WEIGHTS = np.array([2.0, 2.0, 1.0, 1.0, 1.0])


def template(cfg: AlignConfig) -> np.ndarray:
    """The 5 target points in crop pixels, (5, 2) float64, for ``cfg.size``, ``eye_y``, ``mouth_y``, ``zoom``.

    Proportions follow MTCNN's landmarks on frontal faces (children's lower faces are short, so the eye-to-mouth
    height about equals the inter-ocular distance): the mouth is 0.83× as wide as the eyes are apart and the nose
    tip sits 55 % of the way from eyes to mouth.
    """
    em = cfg.mouth_y - cfg.eye_y
    iod = em
    pts = np.array(
        [
            [0.5 - iod / 2, cfg.eye_y],
            [0.5 + iod / 2, cfg.eye_y],
            [0.5, cfg.eye_y + 0.55 * em],
            [0.5 - 0.83 * iod / 2, cfg.mouth_y],
            [0.5 + 0.83 * iod / 2, cfg.mouth_y],
        ]
    )
    pts = 0.5 + (pts - 0.5) * cfg.zoom
    return pts * cfg.size


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``
    (Umeyama 1991).

    src, dst: (N, 2) points, N >= 2; weights: (N,) non-negative, default equal. Returns the (2, 3) float64 matrix
    M with ``dst ≈ M @ [x, y, 1]``; reflections are excluded (a face is never mirrored).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s0, d0 = src - mu_s, dst - mu_d
    var_s = float(w @ (s0**2).sum(1))
    if var_s <= 1e-12:
        raise ValueError("similarity_transform: source points coincide")
    cov = (d0 * w[:, None]).T @ s0
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / var_s)
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (N, 2) points with a (2, 3) affine matrix."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def _invert(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


def warp_face(image: np.ndarray, m: np.ndarray, size: int, border: str = "grey") -> np.ndarray:
    """Warp ``image`` (H, W, 3) with the (2, 3) matrix ``m`` (image px → crop px) into a size×size crop.

    ``border`` fills what lies outside the photo: ``"grey"`` (value :data:`GREY` in every channel),
    ``"replicate"`` or ``"reflect"`` (see :class:`AlignConfig`).

    When the face is much larger than the crop (scale < 0.5), the needed region is first reduced with area
    averaging, so the crop is not aliased; the result equals a direct warp otherwise.
    """
    if border not in BORDER_MODES:
        raise ValueError(f"warp_face: border must be one of {list(BORDER_MODES)}, got {border!r}")
    bmode = BORDER_MODES[border]
    fill = (GREY,) * image.shape[2] if image.ndim == 3 else GREY
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    h, w = image.shape[:2]
    if scale < 0.5:
        corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
        src = apply_affine(_invert(m), corners)
        x0 = max(math.floor(src[:, 0].min()) - 2, 0)
        y0 = max(math.floor(src[:, 1].min()) - 2, 0)
        x1 = min(math.ceil(src[:, 0].max()) + 3, w)
        y1 = min(math.ceil(src[:, 1].max()) + 3, h)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            region = image[y0:y1, x0:x1]
            k = 2.0 * scale
            nw, nh = max(2, round((x1 - x0) * k)), max(2, round((y1 - y0) * k))
            small = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
            kx, ky = nw / (x1 - x0), nh / (y1 - y0)
            # small px u ↔ image px x: x = x0 + (u + 0.5) / kx - 0.5 (cv2.resize's pixel-centre convention)
            to_img = np.array([[1 / kx, 0, x0 + 0.5 / kx - 0.5], [0, 1 / ky, y0 + 0.5 / ky - 0.5]])
            m2 = np.zeros((2, 3))
            m2[:, :2] = m[:, :2] @ to_img[:, :2]
            m2[:, 2] = m[:, :2] @ to_img[:, 2] + m[:, 2]
            return cv2.warpAffine(small, m2, (size, size), flags=cv2.INTER_LINEAR, borderMode=bmode,
                                  borderValue=fill)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=bmode, borderValue=fill)


def outside_share(shape: tuple[int, int], m: np.ndarray, size: int) -> float:
    """Share (0–1) of a ``size``² crop, warped with ``m`` from a photo of ``shape`` (H, W), that lies outside
    the photo. Computed on a 4× coarser grid of pixel centres (exact to about 1 %)."""
    h, w = shape
    step = 4
    c = np.arange(step / 2, size, step) - 0.5
    gx, gy = np.meshgrid(c, c)
    src = apply_affine(_invert(m), np.stack([gx.ravel(), gy.ravel()], 1))
    inside = (src[:, 0] >= -0.5) & (src[:, 0] <= w - 0.5) & (src[:, 1] >= -0.5) & (src[:, 1] <= h - 0.5)
    return float(1.0 - inside.mean())


# ------------------------------------------------------------------------------------------------------------------
# Detection with retries


@dataclass
class _Variant:
    """An image handed to the detector, with the affine map from the original photo into it."""

    name: str  # flags this variant adds ("" for the plain one)
    image: np.ndarray
    to_variant: np.ndarray  # (2, 3) original px -> variant px
    thresholds: tuple[float, float, float]


def _resize_variant(image: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    out = cv2.resize(image, (nw, nh), interpolation=interp)
    sx, sy = nw / w, nh / h
    return out, np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])


def _pad_px(h: int, w: int, frac: float) -> int:
    # The border is meant for a face that fills the frame, whose size is about the *shorter* side; a fraction of
    # the long side (as up to 2:1) would grow without bound with the aspect ratio.
    return max(1, round(frac * min(max(h, w), 2 * min(h, w))))


def _pad_variant(image: np.ndarray, frac: float, mode: str = "replicate") -> tuple[np.ndarray, np.ndarray]:
    p = _pad_px(*image.shape[:2], frac)
    # Replicated or mirrored edges extend hair/skin/background naturally, so a face that fills the frame gets
    # the context P-Net's 12-px window and O-Net's box regression expect; a constant frame would add hard edges.
    out = cv2.copyMakeBorder(image, p, p, p, p, _PAD_MODES[mode])
    return out, np.array([[1.0, 0, p], [0, 1.0, p]])


def _rotate_variant(image: np.ndarray, deg: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape[:2]
    if deg == 90:  # counter-clockwise: (x, y) -> (y, w-1-x)
        return np.ascontiguousarray(np.rot90(image, 1)), np.array([[0, 1.0, 0], [-1.0, 0, w - 1]])
    if deg == 180:
        return np.ascontiguousarray(np.rot90(image, 2)), np.array([[-1.0, 0, w - 1], [0, -1.0, h - 1]])
    if deg == 270:  # clockwise: (x, y) -> (h-1-y, x)
        return np.ascontiguousarray(np.rot90(image, 3)), np.array([[0, -1.0, h - 1], [1.0, 0, 0]])
    raise ValueError(f"rotation must be 90, 180 or 270 degrees, got {deg}")


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine ``b ∘ a`` (first a, then b), both (2, 3)."""
    out = np.zeros((2, 3))
    out[:, :2] = b[:, :2] @ a[:, :2]
    out[:, 2] = b[:, :2] @ a[:, 2] + b[:, 2]
    return out


def _variants(image: np.ndarray, cfg: AlignConfig) -> list[tuple[str, Callable[[], _Variant]]]:
    """Detection attempts in order (built lazily: most photos succeed on the first)."""
    h, w = image.shape[:2]
    long_side = max(h, w)
    base_s = min(1.0, cfg.max_side / long_side)
    # Small photos are also tried enlarged: P-Net cannot see faces under ~12 px, O-Net likes > 48 px.
    up_s = min(cfg.upscale_below / min(h, w), MAX_UPSCALE) if min(h, w) * base_s < cfg.upscale_below else 0.0
    budget = DETECT_BUDGET * cfg.max_side**2

    def bounded(s: float, frac: float) -> float:
        """``s`` reduced so the photo scaled by ``s`` and padded by ``frac`` has at most ``budget`` pixels."""
        hs, ws = h * s, w * s
        p = frac * min(max(hs, ws), 2 * min(hs, ws))
        n = (hs + 2 * p) * (ws + 2 * p)
        return s * min(1.0, math.sqrt(budget / n)) if n > 0 else s

    def base() -> tuple[np.ndarray, np.ndarray]:
        if base_s < 1.0:
            return _resize_variant(image, base_s)
        return image, np.array([[1.0, 0, 0], [0, 1.0, 0]])

    def padded(scale_first: float | None = None, frac: float = 0.3, mode: str = "replicate"):
        s = bounded(scale_first or base_s, frac)
        if s != 1.0:
            img, a = _resize_variant(image, s)
        else:
            img, a = image, np.array([[1.0, 0, 0], [0, 1.0, 0]])
        img2, b = _pad_variant(img, frac, mode)
        return img2, _compose(a, b)

    def make(name: str, fn: Callable[[], tuple[np.ndarray, np.ndarray]], thr: tuple[float, float, float],
             desc: str = "") -> tuple[str, Callable[[], _Variant]]:
        def build() -> _Variant:
            img, a = fn()
            return _Variant(name, img, a, thr)

        return desc or name or "plain", build

    out = [make("", base, cfg.thresholds, "plain")]
    if cfg.min_face_frac > 0 and cfg.min_face_frac * min(h, w) * base_s > cfg.min_face:
        out.append(make("", base, cfg.thresholds, "small faces"))
    if not cfg.retry:
        return out
    # Tightly cropped faces that fill the frame are MTCNN's classic miss: give them a border, at a few widths
    # and fillings (which one works varies from photo to photo), then with lower thresholds.
    pads = [(f, m) for m in cfg.pad_modes for f in cfg.pad_fracs]
    first = pads[0] if pads else (0.3, "replicate")
    up_tag = "upscaled," if up_s else ""

    def add_pads(thr: tuple[float, float, float], tag: str) -> None:
        for f, m in pads:
            name = up_tag + ("padded" if m == "replicate" else "padded_reflect") + tag
            out.append(make(name, lambda f=f, m=m, up=up_s: padded(up or None, f, m), thr, f"{name} {f:g}"))

    add_pads(cfg.thresholds, "")
    # Sideways / upside-down photos come before lower thresholds: at low thresholds a turned face can yield a
    # confident-looking false detection (an ear and hair), while upright it is found at the normal ones.
    for deg in cfg.rotations:

        def rot(deg: int = deg) -> tuple[np.ndarray, np.ndarray]:
            img, a = padded(up_s or None, *first)
            img2, b = _rotate_variant(img, deg)
            return img2, _compose(a, b)

        out.append(make(f"rotated,rotated_{deg},{up_tag}padded", rot, cfg.thresholds))
    add_pads(cfg.low_thresholds, ",low_threshold")
    return out


def _map_back(det: Detection, to_variant: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    back = _invert(to_variant)
    lm = apply_affine(back, det.landmarks)
    b = det.box
    corners = apply_affine(back, np.array([[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]]))
    box = (
        float(corners[:, 0].min()),
        float(corners[:, 1].min()),
        float(corners[:, 0].max()),
        float(corners[:, 1].max()),
    )
    return lm.astype(np.float32), box


def detect_best(image: np.ndarray, cfg: AlignConfig) -> tuple[Detection, np.ndarray, tuple, int, list[str],
                                                               list[dict]]:
    """Find the face to keep: largest × most confident, trying the retries in order.

    Returns (detection in variant px, landmarks (5, 2) in original px, box in original px, n_faces, flags,
    the other faces as ``{"box", "score"}`` in original px).
    Raises :class:`NoFaceError` listing the attempts.
    """
    tried = []
    short = min(image.shape[:2])
    for desc, build in _variants(image, cfg):
        tried.append(desc)
        found = detect_in_variant(build(), desc, cfg, short)
        if found is not None:
            return found
    h, w = image.shape[:2]
    raise NoFaceError(f"no face found ({w}×{h} photo; tried: {', '.join(tried)})")


def detect_in_variant(v: _Variant, desc: str, cfg: AlignConfig, short: int) -> tuple | None:
    """The kept face of one detection attempt (see :func:`detect_best` for the tuple), or None when none."""
    scale = math.sqrt(abs(np.linalg.det(v.to_variant[:, :2])))
    min_face = cfg.min_face if desc == "small faces" else max(cfg.min_face, cfg.min_face_frac * short * scale)
    dets = get_detector().detect(v.image, min_face=min_face, thresholds=v.thresholds)
    if v.name:
        # Retries exist for portraits whose face fills the frame or is turned; a small find there is far
        # more likely a false detection than a real face the plain pass missed.
        min_side = cfg.retry_min_face_frac * short * scale
        dets = [d for d in dets if min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= min_side]
    if not dets:
        return None
    best = max(dets, key=lambda d: d.score * d.area)
    lm, box = _map_back(best, v.to_variant)
    flags = [f for f in v.name.split(",") if f]
    others = []
    for d in dets:
        if d is not best:
            o_lm, o_box = _map_back(d, v.to_variant)
            others.append({"box": list(o_box), "score": float(d.score), "landmarks": o_lm.tolist()})
    return best, lm, box, len(dets), flags, others


def _refine_landmarks(image: np.ndarray, lm: np.ndarray, cfg: AlignConfig) -> np.ndarray:
    """Re-read the landmarks with O-Net on a levelled copy of the face and map them back to ``image`` px.

    O-Net's landmarks drift on tilted faces (it was trained mostly on upright ones) and with the box the cascade
    happened to hand it. Levelled, in a box placed from the landmarks themselves, the same face gives the same
    points whatever its tilt or the pyramid, so a tilted face gets the same crop as an upright one (about 1 ms).
    Falls back to ``lm`` when O-Net is not confident there.
    """
    side = 192
    view = AlignConfig(size=side, eye_y=cfg.eye_y, mouth_y=cfg.mouth_y, zoom=0.6)
    m = similarity_transform(lm, template(view), LANDMARK_WEIGHTS)
    canvas = warp_face(image, m, side, cfg.border)
    # A face box like the cascade's: 2.4× the eye distance wide, centred 40 % of the way from eyes to mouth.
    t = template(view)
    iod = float(t[1, 0] - t[0, 0])
    centre = np.array([side / 2, t[0, 1] + 0.4 * (t[3, 1] - t[0, 1])])
    half = 1.2 * iod
    scores, pts = get_detector().landmarks(canvas, np.array([[*(centre - half), *(centre + half)]]))
    if len(scores) == 0 or scores[0] < 0.5:
        return lm  # not a confident face once levelled: keep the first reading
    expected = apply_affine(m, lm)
    if float(np.abs(pts[0] - expected).mean()) > 0.25 * np.linalg.norm(expected[1] - expected[0]):
        return lm
    return apply_affine(_invert(m), pts[0]).astype(np.float32)


def align_face(image: np.ndarray, cfg: AlignConfig | None = None) -> AlignedFace:
    """Detect the main face of an (H, W, 3) uint8 RGB photo and return it aligned to ``cfg.size``².

    Raises :class:`NoFaceError` (with the reason) when no face is found, ``ValueError`` for a malformed array.
    """
    cfg = cfg or AlignConfig()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise ValueError(f"align_face needs an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    if image.shape[2] == 4:
        image = image[..., :3]
    check_photo_shape(*image.shape[:2])
    image = np.ascontiguousarray(image)
    from gsscreen.faces.orientation import find_upright_face

    # The face the right way up: the plain pass when its landmarks read as an upright face, else the best reading
    # over the photo's four 90° turns (gsscreen.faces.orientation); landmarks refined.
    found = find_upright_face(image, cfg)
    det, lm, box, n, flags, others = found.det, found.lm, found.box, found.n_faces, found.flags, found.others
    m = similarity_transform(lm, template(cfg), LANDMARK_WEIGHTS)
    crop = warp_face(image, m, cfg.size, cfg.border)
    outside = outside_share(image.shape[:2], m, cfg.size)
    crop_lm = apply_affine(m, lm).astype(np.float32)
    d = lm[1] - lm[0]
    iod = float(np.hypot(d[0], d[1]))
    tilt = float(np.degrees(np.arctan2(d[1], d[0])))
    if n > 1:
        flags.append("several_faces")
    if iod < cfg.small_face_iod:
        flags.append("small_face")
    return AlignedFace(
        image=crop,
        landmarks=crop_lm,
        source_landmarks=lm,
        box=box,
        score=det.score,
        n_faces=n,
        flags=flags,
        matrix=m,
        tilt_deg=tilt,
        iod=iod,
        outside=outside,
        other_faces=others,
        rotation=found.rotation,
        orientation=found.orientation,
    )
