"""Faces stage: photo loading, MTCNN detection, 5-point alignment, crop cache and QC sheet.

Public API (see docs/design.md, "faces")::

    load_image(path_or_bytes) -> (H, W, 3) uint8 RGB           # raises ImageError(file, reason)
    align_face(image, cfg) -> AlignedFace                       # raises NoFaceError(reason)
    align_cohort(items, out_dir, cfg) -> AlignmentResult        # crops + landmarks.csv + failures.csv + QC sheet
"""

from gsscreen.faces.align import (
    AlignConfig,
    AlignedFace,
    NoFaceError,
    align_face,
    similarity_transform,
    template,
    warp_face,
)
from gsscreen.faces.io import ImageError, load_image, load_image_scaled
from gsscreen.faces.mtcnn import MTCNN, Detection, get_detector
from gsscreen.faces.pipeline import AlignmentResult, FaceCache, align_cohort, align_file, qc_sheet

__all__ = [
    "MTCNN",
    "AlignConfig",
    "AlignedFace",
    "AlignmentResult",
    "Detection",
    "FaceCache",
    "ImageError",
    "NoFaceError",
    "align_cohort",
    "align_face",
    "align_file",
    "get_detector",
    "load_image",
    "load_image_scaled",
    "qc_sheet",
    "similarity_transform",
    "template",
    "warp_face",
]
