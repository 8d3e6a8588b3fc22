"""Which files are photos, and in what order: shared by cohorts (:mod:`gsscreen.cohort`) and screening.

Kept apart from :mod:`gsscreen.cohort` so that ``gsscreen screen`` finds its photos without importing pandas (about
0.3 s that would otherwise come before its worker processes start)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".heic", ".heif"})


def natural_key(path: Path) -> list[Any]:
    """Sort key that puts "img_2" before "img_10" (digit runs compared as numbers, the rest case-insensitively)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.as_posix())]


def find_images(folder: str | Path) -> list[Path]:
    """All image files under ``folder``, recursively (extensions in :data:`IMAGE_EXTENSIONS`, any case),
    in natural order; hidden files and folders (starting with ".") are skipped."""
    root = Path(folder)
    found = [
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(found, key=natural_key)


__all__ = ["IMAGE_EXTENSIONS", "find_images", "natural_key"]
