"""Grad-CAM for the report: each fold's model explains its own test photos (never a photo it trained on).

:func:`load_fold_model` rebuilds a fold's network from the run folder (the backbone named in ``config.json``,
random init, then the fold's ``checkpoint.safetensors``); :func:`fold_gradcams` runs
:func:`gsscreen.explain.explain_photos` fold by fold on the aligned crops listed in ``landmarks.csv``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gsscreen.report.run import RunData, match_photos

if TYPE_CHECKING:
    from gsscreen.models import GSNet

CHECKPOINT_NAMES = ("checkpoint.safetensors", "model.safetensors", "best.safetensors")


def _config_value(config: dict[str, Any], key: str) -> Any:
    """``config[key]``, else the first value under that key in a nested dict (e.g. ``{"study": {...}}``)."""
    if key in config:
        return config[key]
    for v in config.values():
        if isinstance(v, dict):
            hit = _config_value(v, key)
            if hit is not None:
                return hit
    return None


def fold_dir(run_dir: Path, fold: int) -> Path:
    """``folds/fold_<fold>`` of a run (the folder of that fold's checkpoint and logs)."""
    return Path(run_dir) / "folds" / f"fold_{int(fold)}"


def _checkpoint_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_fold_model(run_dir: str | Path, fold: int, config: dict[str, Any] | None = None) -> GSNet:
    """The trained network of one fold (``folds/fold_<fold>/``), in eval mode on the CPU.

    A checkpoint written by the study (its safetensors metadata names the backbone) is loaded with
    :func:`gsscreen.training.run_folder.load_fold_model`, which restores the frozen part of the body from the
    backbone's own weights or seeded init. A checkpoint without that metadata must hold the whole network: it is
    loaded into ``create_model(config backbone, pretrained=False)`` with every key checked.

    Raises:
        FileNotFoundError: no checkpoint for that fold. ValueError: the config names no backbone, or the
        checkpoint does not fit the backbone (names the file and the mismatched keys).
    """
    import json

    from safetensors.torch import load_file

    from gsscreen.models import create_model

    run = Path(run_dir)
    folder = fold_dir(run, fold)
    ckpt = next((folder / n for n in CHECKPOINT_NAMES if (folder / n).is_file()), None)
    if ckpt is None:
        raise FileNotFoundError(f"{folder}: no model checkpoint ({' / '.join(CHECKPOINT_NAMES)})")
    if ckpt.name == "checkpoint.safetensors" and "backbone" in _checkpoint_metadata(ckpt):
        try:
            from gsscreen.training.run_folder import load_fold_model as study_loader
        except ImportError:  # the training package is optional for reading a finished run
            study_loader = None
        if study_loader is not None:
            return study_loader(folder, device="cpu")

    if config is None:
        cfg_path = run / "config.json"
        config = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    backbone = _config_value(config, "backbone")
    if not isinstance(backbone, str) or not backbone:
        raise ValueError(f"{run / 'config.json'}: no 'backbone' entry, cannot rebuild the fold models")
    model = create_model(backbone, num_classes=2, pretrained=False)
    state = load_file(str(ckpt), device="cpu")
    # Checkpoints saved from a wrapped or compiled module carry a prefix; strip the common ones.
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{ckpt}: does not fit backbone {backbone!r}: missing {list(result.missing_keys)[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}"
        )
    return model.eval()


@dataclass
class GradcamResult:
    """Grad-CAM maps of the report's gallery.

    ``rows``: one row per explained photo (columns of :func:`gsscreen.explain.explain_photos` plus ``fold`` and
    ``label``). ``eligible``: photos the gallery selection asked for; ``problems``: photos or folds that could
    not be explained, each naming the photo/fold and the reason.
    """

    rows: pd.DataFrame
    eligible: int
    problems: list[str] = field(default_factory=list)

    @property
    def maps(self) -> pd.DataFrame:
        """Rows with a usable map (finite on-face share)."""
        if self.rows.empty:
            return self.rows
        ok = self.rows["on_face_share"].map(lambda v: v is not None and math.isfinite(float(v)))
        return self.rows[ok]

    @property
    def n_on_face(self) -> int:
        m = self.maps
        return int(m["on_face"].astype(bool).sum()) if len(m) else 0


def _read_crop(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def _detect_landmarks(photos: list[str], problems: list[str]) -> dict[str, tuple[Path, np.ndarray]]:
    """Landmarks of photos that already are face crops (a study run with ``align = false``), by MTCNN.

    ``source_landmarks`` are in the photo's own pixels, which here are the crop's. A photo without a face is a
    problem, not an error.
    """
    from gsscreen.faces.align import AlignConfig, align_face

    out: dict[str, tuple[Path, np.ndarray]] = {}
    cfg = AlignConfig()
    for photo in photos:
        try:
            face = align_face(_read_crop(Path(photo)), cfg)
        except Exception as exc:  # no face, unreadable file: one photo's problem, never the report's
            problems.append(f"{Path(photo).name}: no landmarks ({exc})")
            continue
        out[photo] = (Path(photo), np.asarray(face.source_landmarks, dtype=np.float64))
    return out


def fold_gradcams(
    run: RunData,
    out_dir: str | Path,
    which: str = "gs",
    max_maps: int | None = 48,
    cover_eyes: bool = False,
    cam: Any = None,
    regions: bool = True,
) -> GradcamResult:
    """Grad-CAM of the test photos of every fold with that fold's own model.

    which: ``"gs"`` (the GS photos, as the paper's gallery) or ``"all"``.
    max_maps: at most this many maps, taken round-robin over the folds (in photo order within a fold); None = all.
    Photos without a crop/landmarks, folds without a checkpoint and unreadable crops become ``problems``.
    cam: the :class:`gsscreen.explain_cam.CamSpec` to use (default: the run's backbone default, see
    :func:`gsscreen.explain_cam.default_cam`); regions: add the facial-region attributions per photo.
    """
    from gsscreen.explain import explain_photos

    if which not in ("gs", "all"):
        raise ValueError(f"gallery selection must be 'gs' or 'all', got {which!r}")
    pred = run.predictions
    sel = pred[pred["y"] == 1] if which == "gs" else pred
    # Round-robin over folds (first photo of each fold, then the second, ...), so a capped gallery shows every
    # fold's model rather than only the first fold's.
    sel = sel.sort_values(["fold", "photo"], kind="stable")
    sel = sel.assign(_rank=sel.groupby("fold").cumcount()).sort_values(["_rank", "fold"], kind="stable")
    eligible = len(sel)
    if max_maps is not None:
        sel = sel.head(max(int(max_maps), 0))
    problems: list[str] = []
    landmarks = run.landmarks
    if not landmarks:
        if _config_value(run.config, "align") is False:
            # The study used the photos as they are (already aligned crops): find their landmarks now.
            landmarks = _detect_landmarks(sel["photo"].tolist(), problems)
        else:
            problems.append("no landmarks.csv with aligned crops found: the Grad-CAM gallery needs the aligned crops")
            return GradcamResult(pd.DataFrame(), eligible, problems)
    matched = match_photos(sel["photo"].tolist(), list(landmarks))
    out = Path(out_dir)
    frames: list[pd.DataFrame] = []
    for fold, part in sel.groupby("fold", sort=True):
        crops, lms, names, labels = [], [], [], []
        for photo, label in zip(part["photo"], part["label"], strict=True):
            key = matched.get(photo)
            if key is None:
                problems.append(f"{Path(photo).name}: no aligned crop in landmarks.csv")
                continue
            crop_path, lm = landmarks[key]
            try:
                crops.append(_read_crop(crop_path))
            except (OSError, ValueError) as exc:
                problems.append(f"{Path(photo).name}: cannot read its crop {crop_path.name} ({exc})")
                continue
            lms.append(lm)
            names.append(photo)
            labels.append(label)
        if not crops:
            continue
        try:
            model = load_fold_model(run.run_dir, int(fold), run.config)
        except (FileNotFoundError, ValueError, KeyError, RuntimeError, ImportError) as exc:
            problems.append(f"fold {fold}: cannot load its model ({exc})")
            continue
        if cam is None:
            from gsscreen.explain_cam import default_cam

            cam = default_cam(str(model.spec.name))
        df = explain_photos(model, crops, lms, out / f"fold_{int(fold)}", cover_eyes=cover_eyes, names=names,
                            cam=cam, regions=regions)
        df.insert(0, "fold", int(fold))
        df.insert(1, "label", labels)
        for r in df.to_dict("records"):
            if r["problem"]:
                # A supplement should not carry the photos' folders: name the file only.
                msg, name = str(r["problem"]), str(r["file"])
                msg = msg[len(name) :].lstrip(": ") if msg.startswith(name) else msg
                problems.append(f"{Path(name).name}: {msg}")
        frames.append(df)
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return GradcamResult(rows, eligible, problems)
