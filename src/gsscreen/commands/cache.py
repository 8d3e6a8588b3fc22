"""`gsscreen cache info` / `gsscreen cache clear`: what gsscreen keeps in its cache folder, and removing it.

The face cache (``faces/``) keeps every aligned face crop (PNG) and its landmarks, keyed by the photo's SHA-256 and
the alignment settings, so a second study over the same photos skips detection. Those crops are children's faces:
they stay after a run folder is deleted, until ``gsscreen cache clear``. Screening (``screen``, ``serve``) never
writes to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

cache_app = typer.Typer(help="The cache folder: face crops of aligned photos and converted weights.",
                        no_args_is_help=True)

PARTS = {"faces": "aligned face crops + landmarks (children's faces: clear when a study is done)",
         "weights": "converted / imported network weights (rebuilt or re-imported when cleared)"}


def _usage(folder: Path) -> tuple[int, int]:
    n = size = 0
    if folder.is_dir():
        for p in folder.rglob("*"):
            if p.is_file():
                n += 1
                size += p.stat().st_size
    return n, size


@cache_app.command("info")
def info_cmd() -> None:
    """Where the cache is, and how many files and bytes each part holds."""
    from gsscreen.paths import cache_dir

    root = cache_dir(create=False)
    typer.echo(f"cache folder: {root} (set GSSCREEN_CACHE to move it)")
    for part, what in PARTS.items():
        n, size = _usage(root / part)
        crops = sum(1 for _ in (root / part).rglob("*.png")) if part == "faces" and (root / part).is_dir() else None
        extra = f", {crops} face crops" if crops is not None else ""
        typer.echo(f"  {part}/: {n} files, {size / 1e6:.1f} MB{extra}: {what}")


@cache_app.command("clear")
def clear_cmd(
    all_parts: bool = typer.Option(False, "--all", help="Also remove converted weights (not only face crops)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete the face cache (and with --all the converted weights too)."""
    from gsscreen.paths import cache_dir

    root = cache_dir(create=False)
    parts = list(PARTS) if all_parts else ["faces"]
    targets = [root / p for p in parts if (root / p).exists()]
    if not targets:
        typer.echo(f"nothing to clear in {root}")
        return
    if not yes:
        typer.confirm(f"delete {', '.join(str(t) for t in targets)}?", abort=True)
    for t in targets:
        n, size = _usage(t)
        shutil.rmtree(t)
        typer.echo(f"removed {t} ({n} files, {size / 1e6:.1f} MB)")


def register(app: typer.Typer) -> None:
    """Attach ``gsscreen cache info`` and ``gsscreen cache clear`` to the root app."""
    app.add_typer(cache_app, name="cache")
