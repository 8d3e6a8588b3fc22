"""Every face of a photo, each aligned on its own (``gsscreen screen --face all``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gsscreen.faces.align import (
    LANDMARK_WEIGHTS,
    AlignConfig,
    AlignedFace,
    _refine_landmarks,
    apply_affine,
    outside_share,
    similarity_transform,
    template,
    warp_face,
)


def align_each_face(image: np.ndarray, face: AlignedFace, cfg: AlignConfig) -> list[AlignedFace]:
    """``face`` (the kept face of ``image``, from :func:`~gsscreen.faces.align.align_face`) and then each of its
    ``other_faces`` aligned like it (landmarks refined, same template), in the detector's order. In each returned
    face ``other_faces`` lists all the others, so every face knows its neighbours' boxes."""
    everyone = [{"box": list(face.box), "score": float(face.score), "landmarks": face.source_landmarks.tolist()},
                *face.other_faces]
    out = [face]
    for i, o in enumerate(face.other_faces, start=1):
        if "landmarks" not in o:
            continue
        lm = np.asarray(o["landmarks"], dtype=np.float32)
        if cfg.refine:
            lm = _refine_landmarks(image, lm, cfg)
        m = similarity_transform(lm, template(cfg), LANDMARK_WEIGHTS)
        d = lm[1] - lm[0]
        out.append(replace(
            face, image=warp_face(image, m, cfg.size, cfg.border), landmarks=apply_affine(m, lm).astype(np.float32),
            source_landmarks=lm, box=tuple(float(v) for v in o["box"]), score=float(o["score"]), matrix=m,
            tilt_deg=float(np.degrees(np.arctan2(d[1], d[0]))), iod=float(np.hypot(d[0], d[1])),
            outside=outside_share(image.shape[:2], m, cfg.size),
            other_faces=[e for j, e in enumerate(everyone) if j != i]))
    return out


__all__ = ["align_each_face"]
