"""Where gsscreen keeps converted weights and caches (never downloaded: always built from local files)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir(*parts: str, create: bool = True) -> Path:
    """Return ``$GSSCREEN_CACHE`` or ``$XDG_CACHE_HOME/gsscreen`` (default ``~/.cache/gsscreen``), joined with parts."""
    root = os.environ.get("GSSCREEN_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = Path(xdg) / "gsscreen"
    path = base.joinpath(*parts)
    if create:
        from gsscreen.fsperm import private_dir

        private_dir(path)  # owner-only: the face cache keeps children's face crops
    return path


def weights_dir() -> Path:
    """Folder of converted / imported weights (safetensors)."""
    return cache_dir("weights")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (so large weight files never sit in memory whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
