"""Public-domain portraits that already ship inside installed packages: the embedded default input.

- ``astronaut``: scikit-image's ``data.astronaut()`` (NASA portrait of Eileen Collins, public domain).
- ``grace_hopper``: matplotlib's ``sample_data/grace_hopper.jpg`` (US Navy portrait, public domain).

Nothing here is downloaded, and no photo of ``../shared/data`` is ever embedded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EXAMPLE_NAMES = ("astronaut", "grace_hopper")


def example_path(name: str) -> Path:
    """Path of the example's image file inside its installed package."""
    if name == "astronaut":
        import skimage

        candidates = list((Path(skimage.__file__).parent / "data").glob("astronaut.*"))
        if candidates:
            return candidates[0]
        raise FileNotFoundError("scikit-image's astronaut image is not installed")
    if name == "grace_hopper":
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if p.is_file():
            return p
        raise FileNotFoundError(f"matplotlib's grace_hopper.jpg is not installed (looked at {p})")
    raise KeyError(f"unknown example {name!r}; choose from {EXAMPLE_NAMES}")


def example_image(name: str) -> np.ndarray:
    """The example as an RGB uint8 array of shape (H, W, 3)."""
    from PIL import Image

    with Image.open(example_path(name)) as im:
        return np.asarray(im.convert("RGB")).copy()


def write_examples(folder: str | Path) -> list[Path]:
    """Copy the embedded examples to ``folder`` as PNG files (for a demo cohort); returns their paths."""
    from PIL import Image

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in EXAMPLE_NAMES:
        p = out / f"{name}.png"
        Image.fromarray(example_image(name)).save(p)
        paths.append(p)
    return paths
