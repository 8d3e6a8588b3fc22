"""Grad-CAM heatmaps and how much of them lies on the face.

What the paper does with it: a heatmap per photo of where the VGG-16 looked for evidence of a genetic syndrome
(GS, class 1), and a count of the maps that sit mainly on the face ("217 of 228 GS maps on the face, 11 on
hair/clothes"). This module holds the pieces:

- :func:`grad_cam` / :func:`compute_cams`: Grad-CAM (Selvaraju et al. 2017) with our own hooks.
- :func:`face_region_mask`: the face region of an aligned crop, from its 5 landmarks.
- :func:`on_face_share` / :func:`on_face`: share of a map's mass inside that region.
- :func:`overlay`, :func:`save_overlay`, :func:`cover_eyes`: pictures of the maps (eyes optionally covered by a
  grey bar, as in every figure the paper exported).
- :func:`explain_photos` and :func:`gallery`: the batch job and its summary figure.

Conventions (see ``docs/design.md``): images are ``(H, W, 3)`` uint8 RGB; model inputs are ``(B, 3, S, S)``
float32 RGB in 0–1; landmarks are ``(5, 2)`` ``(x, y)`` pixels ordered left eye, right eye, nose, left mouth
corner, right mouth corner (image-left first); class 1 = GS.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch, cv2, pandas and matplotlib are imported where they are used
    import pandas as pd
    import torch
    from torch import nn

__all__ = [
    "CHIN_EXTENT",
    "FOREHEAD_EXTENT",
    "SIDE_EXTENT",
    "CamResult",
    "GalleryResult",
    "compute_cams",
    "cover_eyes",
    "explain_photos",
    "face_region_mask",
    "gallery",
    "grad_cam",
    "normalise_cams",
    "on_face",
    "on_face_share",
    "overlay",
    "resolve_cam_layer",
    "save_overlay",
    "summary_line",
    "unique_stem",
]

# Face region around the 5 landmarks, in units of the face's own distances (so it scales and rotates with the
# face). Frontal faces: the hairline lies roughly one eye–mouth distance above the eye centres; the chin tip
# 0.6–0.85 of it below the mouth (0.83 measured on the astronaut photo, less in young children); the cheeks
# reach ~0.45–0.6 interocular distance beyond the pupils. We stay a little inside those (0.9 / 0.6 / 0.35), so
# that "on the face" means the face, not the hairline, the neck or the background at its edge. The chin was
# first 0.45, which left this adult's chin outside the region: a map on the chin (micrognathia is a sign of
# several syndromes) must count as on the face.
FOREHEAD_EXTENT = 0.9  # x eye–mouth distance, above the eye centres
CHIN_EXTENT = 0.6  # x eye–mouth distance, below the mouth corners
SIDE_EXTENT = 0.35  # x interocular distance, outward from the eyes and mouth corners

# A map whose max - min is below this fraction of its largest absolute value carries no spatial information
# (e.g. every channel weight is 0, or the ReLU removed everything): it is returned as zeros and flagged.
_FLAT_TOLERANCE = 1e-6


# --------------------------------------------------------------------------------------------------------------
# Grad-CAM
# --------------------------------------------------------------------------------------------------------------


@dataclass
class CamResult:
    """What one Grad-CAM pass gives.

    maps: ``(B, H, W)`` float32 in 0–1, at the input's resolution.
    probs: ``(B, C)`` float32 softmax of the logits (``probs[:, 1]`` is P(GS)).
    flat: ``(B,)`` bool, True where the map carried no information and was returned as zeros.
    layer: dotted name of the hooked module.
    """

    maps: np.ndarray
    probs: np.ndarray
    flat: np.ndarray
    layer: str


def resolve_cam_layer(model: nn.Module, layer: str | nn.Module | None = None) -> tuple[str, nn.Module]:
    """Find the module Grad-CAM hooks: ``(dotted name, module)``.

    ``layer`` may be a dotted name (``"body.12"``), a module inside ``model``, or None: then
    ``model.spec.cam_layer`` when the model has one (every :class:`gsscreen.models.GSNet` does), else the last
    ``nn.Conv2d`` in registration order (which is execution order for the usual sequential CNNs).
    """
    from torch import nn

    names = {id(m): n for n, m in model.named_modules()}
    if layer is None:
        spec_layer = getattr(getattr(model, "spec", None), "cam_layer", None)
        if spec_layer:
            layer = str(spec_layer)
        else:
            convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
            if not convs:
                raise ValueError(f"{type(model).__name__} has no spec.cam_layer and no Conv2d: pass layer=")
            layer = convs[-1]
    if isinstance(layer, nn.Module):
        if id(layer) not in names:
            raise ValueError(f"layer {type(layer).__name__} is not a module of {type(model).__name__}")
        return names[id(layer)], layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name, a module or None, not {type(layer).__name__}")
    try:
        return layer, model.get_submodule(layer)
    except AttributeError:
        import difflib

        close = difflib.get_close_matches(layer, [n for n in names.values() if n], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{type(model).__name__} has no module named {layer!r}{hint}") from None


def compute_cams(
    model: nn.Module,
    x: torch.Tensor,
    layer: str | nn.Module | None = None,
    class_idx: int | Sequence[int] = 1,
) -> CamResult:
    """Grad-CAM maps of ``class_idx`` for a batch, with the model's class probabilities from the same pass.

    x: ``(B, 3, H, W)`` float tensor (model input, RGB in 0–1 for a GSNet); moved to the model's device.
    class_idx: the class explained, one for all or one per image. Its *logit* is differentiated (as in the
    Grad-CAM paper: the softmax would mix in the other class).

    Per image: channel weights = the class logit's gradient w.r.t. the layer's output, averaged over space; map =
    ReLU(sum_k weight_k * activation_k), upsampled bilinearly to ``(H, W)``, then scaled to 0–1 by its own min and
    max. A map with no spread (see ``CamResult.flat``) is returned as zeros.

    The model runs in eval mode (dropout off, batch-norm statistics untouched) and every module's train/eval
    flag is restored afterwards. Only the gradient w.r.t. the hooked activation is computed
    (``torch.autograd.grad``), so no parameter's ``.grad`` is created or changed. The hook is removed even when
    the forward or backward pass raises.
    """
    import torch
    import torch.nn.functional as F

    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a (B, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch")
    if not x.is_floating_point():
        # A uint8 image tensor would reach the model as 0–255 instead of 0–1 and give a meaningless map.
        raise ValueError(f"x must be a float tensor scaled to 0–1, got {x.dtype}")
    name, module = resolve_cam_layer(model, layer)
    b, _, h, w = x.shape
    idx = [int(class_idx)] * b if isinstance(class_idx, (int, np.integer)) else [int(c) for c in class_idx]
    if len(idx) != b:
        raise ValueError(f"class_idx has {len(idx)} entries for a batch of {b}")

    param = next(model.parameters(), None)
    device = param.device if param is not None else x.device
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    # A leaf that needs a gradient, so the graph reaches the hooked layer even when every parameter is frozen.
    inp = x.detach().to(device=device, dtype=dtype).requires_grad_(True)

    captured: list[torch.Tensor] = []

    def hook(_mod: nn.Module, _args: Any, output: Any) -> Any:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise ValueError(
                f"Grad-CAM layer {name!r} must output a (B, C, h, w) tensor, got "
                f"{getattr(output, 'shape', type(output).__name__)}"
            )
        captured.append(output)
        # Hand the rest of the network a copy: an in-place op after this layer (ReLU(inplace=True) after a conv)
        # would otherwise overwrite the very activations we weight, and detach them from their gradient.
        return output.clone()

    modes = {m: m.training for m in model.modules()}
    handle = module.register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(inp)
            if isinstance(logits, (tuple, list)):  # e.g. forward_both-style (logits, embedding)
                logits = logits[0]
            if logits.ndim != 2 or logits.shape[0] != b:
                raise ValueError(f"model output must be (B, C) logits, got {tuple(logits.shape)}")
            if any(not 0 <= c < logits.shape[1] for c in idx):
                raise ValueError(f"class_idx {idx} out of range for {logits.shape[1]} classes")
            if len(captured) != 1:
                raise ValueError(
                    f"Grad-CAM layer {name!r} ran {len(captured)} times in one forward pass; it must run once"
                )
            act = captured[0]
            # Summing over the batch keeps the images independent: in eval mode no image's logit depends on
            # another image's activations.
            score = logits.gather(1, torch.tensor(idx, device=logits.device).view(-1, 1)).sum()
            if not act.requires_grad:
                raise ValueError(f"the output of layer {name!r} is not connected to the model's input")
            (grad,) = torch.autograd.grad(score, act, allow_unused=True)
        if grad is None:
            raise ValueError(f"the class-{idx[0]} logit does not depend on layer {name!r}")
        with torch.no_grad():
            weights = grad.float().mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
            cam = torch.relu((weights * act.detach().float()).sum(dim=1, keepdim=True))  # (B, 1, h, w)
            cam = F.interpolate(cam, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            probs = torch.softmax(logits.detach().float(), dim=1)
    finally:
        handle.remove()
        for m, was_training in modes.items():
            m.training = was_training

    maps, flat = normalise_cams(cam.cpu().numpy())
    return CamResult(maps=maps, probs=probs.cpu().numpy().astype(np.float32), flat=flat, layer=name)


def normalise_cams(cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale each of ``(N, H, W)`` non-negative Grad-CAM maps to 0–1 by its own min and max.

    Returns ``(maps, flat)``: ``maps`` ``(N, H, W)`` float32 (a new array); ``flat`` ``(N,)`` bool, True where a
    map had no spread (see ``_FLAT_TOLERANCE``) or a non-finite value and was returned as zeros. Shared by
    :func:`compute_cams` and the screening model's one-pass Grad-CAM, so both flag the same maps.
    """
    maps = np.array(cams, dtype=np.float32)
    flat = np.zeros(len(maps), dtype=bool)
    for i, m in enumerate(maps):
        lo, hi = (float(m.min()), float(m.max())) if np.isfinite(m).all() else (math.nan, math.nan)
        span = hi - lo
        if not math.isfinite(span) or span <= _FLAT_TOLERANCE * max(abs(hi), abs(lo), 1e-30):
            maps[i] = 0.0
            flat[i] = True
        else:
            maps[i] = np.clip((m - lo) / span, 0.0, 1.0)
    return maps, flat


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    layer: str | nn.Module | None = None,
    class_idx: int | Sequence[int] = 1,
) -> np.ndarray:
    """Grad-CAM heatmaps of ``class_idx`` (default 1 = GS): ``(B, H, W)`` float32 in 0–1.

    x: ``(B, 3, H, W)`` float tensor (``(3, H, W)`` is taken as one image and gives ``(H, W)``).
    layer: module name, module or None (``model.spec.cam_layer``, else the last Conv2d).

    Maps without spatial information come back as zeros with a ``RuntimeWarning``; use :func:`compute_cams` to
    get those flags (and the class probabilities) as values. See :func:`compute_cams` for the details.
    """
    single = getattr(x, "ndim", None) == 3
    res = compute_cams(model, x[None] if single else x, layer=layer, class_idx=class_idx)
    if res.flat.any():
        warnings.warn(
            f"Grad-CAM at {res.layer!r}: {int(res.flat.sum())} of {len(res.flat)} map(s) are empty "
            "(no positive evidence for the class at that layer); returned as zeros",
            RuntimeWarning,
            stacklevel=2,
        )
    return res.maps[0] if single else res.maps


# --------------------------------------------------------------------------------------------------------------
# Face region and on-face share
# --------------------------------------------------------------------------------------------------------------


def _check_landmarks(landmarks: Any) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks must be a finite (5, 2) array of (x, y) pixels, got shape {lm.shape}")
    return lm


def _face_axes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Unit vectors (sideways: image-left eye -> image-right eye; up: mouth -> eyes), interocular distance and
    eye–mouth distance of a face. Built from the face itself so that tilted faces work."""
    eye_c, mouth_c = lm[:2].mean(axis=0), lm[3:].mean(axis=0)
    iod = float(np.linalg.norm(lm[1] - lm[0]))
    emd = float(np.linalg.norm(eye_c - mouth_c))
    if iod < 1e-6 or emd < 1e-6:
        raise ValueError("degenerate landmarks: the eyes (or the eyes and the mouth) coincide")
    up = (eye_c - mouth_c) / emd
    side = (lm[1] - lm[0]) / iod
    # Keep `side` perpendicular to `up`, so "sideways" and "up" don't mix on a sheared set of points.
    side = side - up * float(side @ up)
    side /= max(float(np.linalg.norm(side)), 1e-12)
    return side, up, iod, emd


def face_region_mask(
    landmarks: np.ndarray,
    shape: tuple[int, int],
    forehead: float = FOREHEAD_EXTENT,
    chin: float = CHIN_EXTENT,
    side: float = SIDE_EXTENT,
) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the face: the convex hull of the 5 landmarks, widened to forehead and chin.

    Hull points besides the landmarks (``d`` = eye–mouth distance, ``i`` = interocular distance):
    temples = eyes pushed outward by ``side`` x ``i``; forehead corners = the temples pushed up by
    ``forehead`` x ``d``; jaw = mouth corners pushed outward by ``side`` x ``i``; chin = mouth corners pushed down
    by ``chin`` x ``d`` (not outward: the chin is about as wide as the mouth). Directions follow the face
    (up = mouth centre -> eye centre), so a tilted face gets a tilted region. Points may lie outside the image;
    the region is clipped to it. See ``FOREHEAD_EXTENT``, ``CHIN_EXTENT`` and ``SIDE_EXTENT`` for the defaults.
    """
    import cv2

    lm = _check_landmarks(landmarks)
    h, w = int(shape[0]), int(shape[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"shape must be positive (H, W), got {shape}")
    ax, up, iod, emd = _face_axes(lm)
    out = ax * side * iod
    le, re, _nose, lmo, rmo = lm
    pts = [
        *lm,
        le - out,
        re + out,  # temples
        le - out + up * forehead * emd,
        re + out + up * forehead * emd,  # forehead corners
        lmo - out,
        rmo + out,  # jaw, at mouth height
        lmo - up * chin * emd,
        rmo - up * chin * emd,  # chin
    ]
    # fillConvexPoly wants integer vertices; shift=4 keeps 1/16 px precision.
    scale = 16
    hull = cv2.convexHull(np.round(np.asarray(pts) * scale).astype(np.int32))
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _check_map(heatmap: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    hm = np.asarray(heatmap, dtype=np.float64)
    mk = np.asarray(mask, dtype=bool)
    if hm.ndim != 2 or hm.shape != mk.shape:
        raise ValueError(f"heatmap {hm.shape} and mask {mk.shape} must be 2-D arrays of the same shape")
    if not np.isfinite(hm).all() or (hm < 0).any():
        raise ValueError("heatmap must be finite and non-negative")
    return hm, mk


def on_face_share(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share (0–1) of the heatmap's mass that lies inside ``mask``; NaN for an all-zero map (no mass to share)."""
    hm, mk = _check_map(heatmap, mask)
    total = float(hm.sum())
    if total <= 0.0:
        return math.nan
    return float(hm[mk].sum()) / total


def on_face(heatmap: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> bool:
    """True when the map is mainly on the face: more than ``threshold`` of its mass inside ``mask``.

    An all-zero map is not on the face. Note that a spatially uniform map scores the mask's area fraction, which
    for an aligned crop is large (~0.5): the share is only meaningful for maps that have a peak.
    """
    share = on_face_share(heatmap, mask)
    return bool(share > threshold) if math.isfinite(share) else False


def _peak_in(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    hm = np.asarray(heatmap)
    if not hm.any():
        return False
    return bool(mask.flat[int(np.argmax(hm))])


# --------------------------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------------------------


def _check_image(image: Any, what: str = "image") -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 RGB array, got {img.dtype} {img.shape}")
    return img


def _resize_map(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.shape == tuple(shape):
        return hm
    return cv2.resize(hm, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """Blend a heatmap, coloured with a matplotlib colormap, over an image: ``(H, W, 3)`` uint8 RGB.

    heatmap: 2-D, values in 0–1 (clipped); resized bilinearly to the image when its size differs.
    alpha: weight of the colours (0 = the image unchanged, 1 = colours only).
    """
    import matplotlib

    img = _check_image(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim != 2 or not np.isfinite(hm).all():
        raise ValueError(f"heatmap must be a finite 2-D array, got shape {hm.shape}")
    hm = np.clip(_resize_map(hm, img.shape[:2]), 0.0, 1.0)
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise ValueError(f"unknown matplotlib colormap {colormap!r}") from None
    colours = cmap(hm)[..., :3] * 255.0  # RGB, like the image (cv2.applyColorMap would give BGR)
    blended = (1.0 - alpha) * img.astype(np.float32) + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def cover_eyes(
    image: np.ndarray,
    landmarks: np.ndarray,
    margin: float = 0.45,
    height: float = 0.25,
    color: tuple[int, int, int] = (128, 128, 128),
) -> np.ndarray:
    """A copy of ``image`` with a grey bar over both eyes (privacy, as in the paper's exported figures).

    The bar follows the eye line; it runs from ``margin`` x interocular distance beyond one eye centre to the
    same beyond the other (the outer eye corner is ~0.25 x that distance from the pupil), and is ``height`` x
    the interocular distance tall. Apply it *after* :func:`overlay`, so the bar stays grey.
    """
    import cv2

    img = _check_image(image).copy()
    lm = _check_landmarks(landmarks)
    le, re = lm[0], lm[1]
    iod = float(np.linalg.norm(re - le))
    if iod < 1e-6:
        raise ValueError("degenerate landmarks: the two eyes coincide")
    along = (re - le) / iod
    across = np.array([-along[1], along[0]])
    half_len = along * iod * (0.5 + margin)
    half_h = across * iod * height / 2.0
    centre = (le + re) / 2.0
    corners = np.array(
        [centre - half_len - half_h, centre + half_len - half_h, centre + half_len + half_h, centre - half_len + half_h]
    )
    cv2.fillConvexPoly(img, np.round(corners * 16).astype(np.int32), tuple(int(c) for c in color), shift=4)
    return img


# cover_eyes under a second name, for functions whose `cover_eyes` flag shadows it (gallery).
_eye_bar = cover_eyes


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.45,
    colormap: str = "jet",
    landmarks: np.ndarray | None = None,
    eyes_covered: bool = False,
) -> Path:
    """Write :func:`overlay` of ``image`` and ``heatmap`` as a PNG at ``path`` (folders created); returns it.

    With ``eyes_covered`` the eyes (from ``landmarks``) are covered by a grey bar after blending.
    """
    from PIL import Image

    pic = overlay(image, heatmap, alpha=alpha, colormap=colormap)
    if eyes_covered:
        if landmarks is None:
            raise ValueError(f"{path}: covering the eyes needs the landmarks")
        pic = cover_eyes(pic, landmarks)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pic).save(p, format="PNG")
    return p


# --------------------------------------------------------------------------------------------------------------
# Batch job and gallery
# --------------------------------------------------------------------------------------------------------------

EXPLAIN_COLUMNS = (
    "file",
    "p_gs",
    "on_face_share",
    "on_face",
    "peak_on_face",
    "overlay",
    "eyes_covered",
    "landmarks",
    "problem",
)


def _model_input_size(model: nn.Module) -> int | None:
    size = getattr(getattr(model, "spec", None), "input_size", None)
    return int(size) if size else None


def explain_photos(
    model: nn.Module,
    crops: Sequence[np.ndarray],
    landmarks: Sequence[np.ndarray],
    out_dir: str | Path,
    cover_eyes: bool = False,
    batch_size: int = 16,
    names: Sequence[str] | None = None,
    layer: str | nn.Module | None = None,
    class_idx: int = 1,
    threshold: float = 0.5,
    alpha: float = 0.45,
    cam: Any = None,
    regions: bool = False,
) -> pd.DataFrame:
    """Grad-CAM of every aligned crop, its on-face share, and an overlay PNG per photo in ``out_dir``.

    crops: aligned faces, ``(S, S, 3)`` uint8 RGB; resized to ``model.spec.input_size`` when that differs.
    landmarks: ``(5, 2)`` per crop, in crop pixels (as ``AlignedFace.landmarks``).
    names: one per crop, used for the ``file`` column and the PNG name (default ``photo_0000`` ...).

    Returns one row per crop with the columns of ``EXPLAIN_COLUMNS``: ``p_gs`` (softmax probability of class 1),
    ``on_face_share``, ``on_face`` (share > ``threshold``), ``peak_on_face`` (the map's maximum inside the face
    region), ``overlay`` (PNG path), ``eyes_covered``, ``landmarks`` (list of [x, y]) and ``problem`` (empty when
    fine). A bad crop or an empty map is a ``problem`` on its row, never an exception.

    cam: a :class:`gsscreen.explain_cam.CamSpec` (method and layers) instead of Grad-CAM at ``layer``.
    regions: also the facial-region occlusion attributions (:mod:`gsscreen.explain_regions`): columns
    ``delta_<region>`` and ``share_<region>``.
    """
    import cv2
    import pandas as pd
    import torch

    if len(crops) != len(landmarks):
        raise ValueError(f"{len(crops)} crops but {len(landmarks)} landmark sets")
    if names is None:
        names = [f"photo_{i:04d}" for i in range(len(crops))]
    if len(names) != len(crops):
        raise ValueError(f"{len(crops)} crops but {len(names)} names")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = _model_input_size(model)

    rows: list[dict[str, Any]] = []
    ok: list[int] = []
    for i, (crop, lm, name) in enumerate(zip(crops, landmarks, names, strict=True)):
        row: dict[str, Any] = dict.fromkeys(EXPLAIN_COLUMNS)
        row.update(file=str(name), problem="", eyes_covered=bool(cover_eyes), on_face=False, peak_on_face=False)
        try:
            img = _check_image(crop, f"crop of {name}")
            row["landmarks"] = _check_landmarks(lm).round(2).tolist()
            if size is None and ok and np.asarray(crops[ok[0]]).shape != img.shape:
                raise ValueError(f"crop of {name} is {img.shape}, unlike the batch's {np.asarray(crops[ok[0]]).shape}")
            ok.append(i)
        except ValueError as exc:
            row["problem"] = str(exc)
        rows.append(row)

    used_stems: set[str] = set()
    for start in range(0, len(ok), batch_size):
        chunk = ok[start : start + batch_size]
        imgs = [np.asarray(crops[i]) for i in chunk]
        if size is not None:
            imgs = [
                im if im.shape[:2] == (size, size) else cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
                for im in imgs
            ]
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255.0)
        if cam is not None:
            from gsscreen.explain_cam import ensemble_cams

            p1, cmaps, cflat = ensemble_cams([model], x, cam, class_idx=class_idx)
            res = CamResult(maps=cmaps[0], probs=np.stack([1.0 - p1[:, 0], p1[:, 0]], axis=1), flat=cflat[0],
                            layer=cam.label())
        else:
            res = compute_cams(model, x, layer=layer, class_idx=class_idx)
        for j, i in enumerate(chunk):
            row, crop = rows[i], np.asarray(crops[i])
            lm = np.asarray(landmarks[i], dtype=np.float64)
            row["p_gs"] = float(res.probs[j, 1]) if res.probs.shape[1] > 1 else math.nan
            hm = _resize_map(res.maps[j], crop.shape[:2])
            if res.flat[j]:
                row["problem"] = f"{row['file']}: empty Grad-CAM map (no evidence for class {class_idx})"
                row["on_face_share"] = math.nan
            else:
                mask = face_region_mask(lm, crop.shape[:2])
                row["on_face_share"] = on_face_share(hm, mask)
                row["on_face"] = on_face(hm, mask, threshold)
                row["peak_on_face"] = _peak_in(hm, mask)
            stem = unique_stem(Path(row["file"]).stem or f"photo_{i:04d}", used_stems)
            row["overlay"] = str(
                save_overlay(out / f"{stem}_gradcam.png", crop, hm, alpha=alpha, landmarks=lm, eyes_covered=cover_eyes)
            )
    df = pd.DataFrame(rows, columns=list(EXPLAIN_COLUMNS))
    if regions and ok:
        from gsscreen.explain_regions import region_attributions

        def predict(views: np.ndarray) -> np.ndarray:
            v = [im if size is None or im.shape[:2] == (size, size) else
                 cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in views]
            xv = torch.from_numpy(np.stack(v)).permute(0, 3, 1, 2).float().div_(255.0)
            with torch.no_grad():
                was = model.training
                model.eval()
                try:
                    out = model(xv.to(next(model.parameters()).device))
                finally:
                    model.train(was)
                out = out[0] if isinstance(out, (tuple, list)) else out
                return torch.softmax(out.float(), dim=1)[:, class_idx].cpu().numpy()

        reg = region_attributions(predict, [crops[i] for i in ok], [landmarks[i] for i in ok])
        reg.index = ok
        for c in reg.columns:
            if c.startswith(("delta_", "share_")):
                df[c] = reg[c]
    return df


def unique_stem(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``, ... if taken: the first name not in ``used``, which is added to it.

    Two photos named ``a/001.jpg`` and ``b/001.jpg`` must not overwrite each other's picture.
    """
    cand, k = stem, 1
    while cand in used:
        k += 1
        cand = f"{stem}_{k}"
    used.add(cand)
    return cand


def summary_line(rows: Any, threshold: float | None = None) -> str:
    """``"N of M maps mainly on the face"`` over the rows with a map (``on_face_share`` not NaN).

    With ``threshold`` the share is compared again; otherwise the ``on_face`` column is used.
    """
    import pandas as pd

    df = pd.DataFrame(rows)
    valid = df[df["on_face_share"].notna()] if len(df) else df
    if threshold is None:
        n = int(valid["on_face"].astype(bool).sum()) if len(valid) else 0
    else:
        n = int((valid["on_face_share"].astype(float) > threshold).sum()) if len(valid) else 0
    return f"{n} of {len(valid)} maps mainly on the face"


@dataclass
class GalleryResult:
    """Files written by :func:`gallery` and its summary line."""

    png: Path
    svg: Path
    summary: str
    n_on_face: int
    n_maps: int
    skipped: list[str] = field(default_factory=list)


def gallery(
    rows: Any,
    out_path: str | Path,
    ncols: int = 6,
    cover_eyes: bool | None = None,
    title: str | None = None,
) -> GalleryResult:
    """A grid figure of overlay PNGs with the on-face share under each; written as PNG and SVG.

    rows: the DataFrame of :func:`explain_photos` (or records with ``overlay``, ``on_face_share``, ``on_face``,
    ``file`` and, for covering eyes, ``landmarks``/``eyes_covered``). Rows without a map are left out (listed in
    ``skipped``). ``cover_eyes=True`` covers the eyes of any overlay not written that way (and raises when its
    landmarks are missing: a privacy request is never dropped silently); None/False shows the files as written.
    The figure's title is the summary line, "N of M maps mainly on the face".
    """
    import pandas as pd
    from matplotlib.figure import Figure  # a bare Figure, not pyplot: no GUI backend, no global state
    from PIL import Image

    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    df = pd.DataFrame(rows)
    for col in ("overlay", "on_face_share", "on_face"):
        if col not in df.columns and len(df):
            raise ValueError(f"gallery rows lack the {col!r} column")
    shown, skipped = [], []
    for rec in df.to_dict("records"):
        path, share = rec.get("overlay"), rec.get("on_face_share")
        if not path or share is None or not math.isfinite(float(share)) or not Path(str(path)).is_file():
            skipped.append(str(rec.get("file", path)))
            continue
        shown.append(rec)
    n_on = sum(bool(r["on_face"]) for r in shown)
    summary = f"{n_on} of {len(shown)} maps mainly on the face"

    n = max(len(shown), 1)
    cols = min(ncols, n)
    nrows = math.ceil(n / cols)
    fig = Figure(figsize=(2.0 * cols, 2.35 * nrows + 0.5), dpi=110)
    axes = fig.subplots(nrows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(shown):
            continue
        rec = shown[k]
        with Image.open(rec["overlay"]) as im:
            pic = np.asarray(im.convert("RGB"))
        if cover_eyes and not rec.get("eyes_covered", False):
            lm = rec.get("landmarks")
            if isinstance(lm, str):  # the table went through a CSV file: lists come back as their text
                lm = json.loads(lm)
            if lm is None or (isinstance(lm, float) and math.isnan(lm)):
                raise ValueError(f"{rec['overlay']}: cannot cover the eyes, the row has no landmarks")
            pic = _eye_bar(pic, np.asarray(lm, dtype=np.float64))
        ax.imshow(pic)
        label = f"{Path(str(rec.get('file', ''))).name}\non face {float(rec['on_face_share']):.0%}"
        if rec.get("p_gs") is not None and math.isfinite(float(rec["p_gs"])):
            label += f", P(GS) {float(rec['p_gs']):.2f}"
        # Maps mainly off the face are labelled in red, so they stand out in a large gallery.
        colour = "black" if rec["on_face"] else "firebrick"
        ax.text(0.5, -0.03, label, transform=ax.transAxes, ha="center", va="top", fontsize=7, color=colour)
    fig.suptitle(f"{title}\n{summary}" if title else summary, fontsize=10)
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    png, svg = out.with_suffix(".png"), out.with_suffix(".svg")
    fig.savefig(png)
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):  # labels stay editable text, like the report's figures
        fig.savefig(svg)
    return GalleryResult(png=png, svg=svg, summary=summary, n_on_face=n_on, n_maps=len(shown), skipped=skipped)
