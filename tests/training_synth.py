"""Synthetic, learnable photo cohorts for the training tests (no real photos).

Crops of the embedded public-domain portraits at random positions, tinted by class (GS reddish, controls bluish),
so even the random-init ``tiny`` backbone separates the classes within an epoch or two.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from gsscreen.examples import example_image

_TINT = {"GS": np.array([1.3, 0.85, 0.85]), "control": np.array([0.85, 0.85, 1.3])}


def make_cohort(folder: Path, n_subjects: int = 24, seed: int = 0, size: int = 80) -> pd.DataFrame:
    """Write ``n_subjects`` subjects (every 5th has two photos) as PNGs; return the cohort table.

    Columns: ``image`` (absolute path), ``label`` (GS / control, alternating by subject), ``subject_id``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [example_image("astronaut"), example_image("grace_hopper")]
    rows = []
    for s in range(n_subjects):
        label = "GS" if s % 2 == 0 else "control"
        for j in range(1 + (s % 5 == 0)):
            src = sources[(s + j) % 2]
            h, w = src.shape[:2]
            side = min(h, w) // 2
            y0, x0 = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
            crop = np.clip(src[y0 : y0 + side, x0 : x0 + side] * _TINT[label], 0, 255).astype(np.uint8)
            path = folder / f"s{s:02d}_{j}.png"
            Image.fromarray(crop).resize((size, size)).save(path)
            rows.append({"image": str(path.resolve()), "label": label, "subject_id": f"subj{s:02d}"})
    return pd.DataFrame(rows)


def make_controls(folder: Path, n: int = 6, seed: int = 1, size: int = 80) -> Path:
    """A folder of ``n`` control-tinted photos (an external control set)."""
    t = make_cohort(Path(folder), n_subjects=2 * n, seed=seed, size=size)
    for p in t.loc[t["label"] == "GS", "image"]:
        Path(p).unlink()
    return Path(folder)
