"""Every face found, boxed on the photo: which face was scored is never a guess (CLI overlay PNG; the web page
draws the same boxes from the result's ``faces``)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: the scored face's box colour (RGB) and the others'
SCORED_RGB = (255, 140, 0)
OTHER_RGB = (80, 160, 255)


def draw_faces(image: np.ndarray, faces: list[dict[str, Any]], scale: float = 1.0, max_side: int = 800) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB reduced to at most ``max_side`` px, with each face's box drawn: the scored one
    (``"scored": True``) thick in :data:`SCORED_RGB` and numbered 1, the others thin in :data:`OTHER_RGB`, numbered
    in the order of ``faces``. Boxes are ``[x0, y0, x1, y1]`` in original px; ``scale`` = original size / size of
    ``image``."""
    import cv2

    img = np.asarray(image)
    s = min(1.0, max_side / max(img.shape[:2]))
    out = img if s == 1.0 else cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                                          interpolation=cv2.INTER_AREA)
    out = np.ascontiguousarray(out).copy()
    k = s / max(scale, 1e-9)  # original px -> drawn px
    lw = max(2, round(max(out.shape[:2]) / 200))
    for i, f in enumerate(faces):
        x0, y0, x1, y1 = (round(float(v) * k) for v in f["box"])
        colour = SCORED_RGB if f.get("scored") else OTHER_RGB
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, lw + (1 if f.get("scored") else 0), lineType=cv2.LINE_AA)
        label = str(i + 1)
        fs = max(0.5, lw / 3)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, fs, lw)
        ty = y0 - 4 if y0 - th - 6 >= 0 else y0 + th + 4
        cv2.rectangle(out, (x0, ty - th - 3), (x0 + tw + 4, ty + 3), colour, -1)
        cv2.putText(out, label, (x0 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, fs, (0, 0, 0), lw, cv2.LINE_AA)
    return out


__all__ = ["OTHER_RGB", "SCORED_RGB", "draw_faces"]
