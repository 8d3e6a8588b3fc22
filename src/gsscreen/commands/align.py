"""`gsscreen align`: detect and align faces (MTCNN, 5 landmarks) into fixed-size crops."""

from __future__ import annotations

import glob
from collections import Counter
from pathlib import Path

import typer

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".jfif"}


def collect_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Expand INPUT arguments into image paths: cohort CSVs (their ``image`` column), folders (recursively),
    image files and glob patterns. Returns (paths in order, without repeats; messages for inputs that matched
    nothing)."""
    paths: list[Path] = []
    notes: list[str] = []
    for arg in inputs:
        p = Path(arg)
        if p.is_file() and p.suffix.lower() == ".csv":
            paths.extend(_csv_images(p))
        elif p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file()
                           and not any(part.startswith(".") for part in q.relative_to(p).parts))
            if not found:
                notes.append(f"{p}: no image files in this folder")
            paths.extend(found)
        elif any(ch in arg for ch in "*?["):
            found = sorted(Path(g) for g in glob.glob(arg, recursive=True) if Path(g).is_file())
            if not found:
                notes.append(f"{arg}: the pattern matched no file")
            paths.extend(found)
        else:
            # A plain path, even a missing one: align_cohort reports it in failures.csv ("file not found").
            paths.append(p)
    seen: set[Path] = set()
    unique = []
    for q in paths:
        key = q.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(q)
    return unique, notes


def _csv_images(csv: Path) -> list[Path]:
    """The ``image`` column of a cohort CSV, relative paths resolved against the CSV's folder."""
    from gsscreen.cohort import CohortError, load_cohort

    try:
        table = load_cohort(csv, check_images=False, near_duplicate_distance=None).table
    except CohortError as exc:  # e.g. missing columns: a clear message naming the file, not a traceback
        raise typer.BadParameter(str(exc)) from exc
    out = []
    for v in table["image"].dropna().astype(str):
        q = Path(v)
        out.append(q if q.is_absolute() else (csv.parent / q))
    return out


def register(app: typer.Typer) -> None:
    """Attach ``gsscreen align``."""

    @app.command("align")
    def align(
        inputs: list[str] = typer.Argument(
            None,
            metavar="INPUT",
            help="Cohort CSV(s), folder(s), image files or glob patterns. None: the embedded example portraits.",
            show_default=False,
        ),
        out: Path = typer.Option(Path("aligned"), "-o", "--out", help="Output folder."),
        size: int = typer.Option(None, "--size", help="Crop side in px (default 224)."),
        workers: int = typer.Option(None, "--workers", help="Worker processes (default 2)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Align everything again, ignoring the cache."),
        config: Path = typer.Option(None, "--config", help="AlignConfig as TOML/JSON (flags override it)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Detect faces (MTCNN) and align them to SIZE×SIZE crops.

        Writes OUT/crops/*.png, landmarks.csv, failures.csv, qc_sheet.png and config.json. A photo that cannot be
        read or shows no face is listed in failures.csv; the batch goes on.
        """
        from gsscreen.config import load_config
        from gsscreen.faces import AlignConfig, align_cohort

        cfg = load_config(AlignConfig, config, size=size, workers=workers, cache=False if no_cache else None)
        if inputs:
            paths, notes = collect_inputs(list(inputs))
            for n in notes:
                typer.echo(f"note: {n}", err=True)
            if not paths:
                from gsscreen.errors import GsscreenError

                raise GsscreenError(f"no images to align in {', '.join(map(str, inputs))}")
        else:
            from gsscreen.examples import EXAMPLE_NAMES, example_path

            paths = [example_path(n) for n in EXAMPLE_NAMES]
            typer.echo(f"no input given: aligning the {len(paths)} embedded example portraits")
        res = align_cohort(paths, out, cfg, progress=not quiet)
        n = len(paths)
        typer.echo(f"aligned {len(res.aligned)} of {n} photos in {res.seconds:.1f} s "
                   f"({res.n_cached} from the cache) -> {res.crops_dir}")
        flags = Counter(f for s in res.aligned["flags"] for f in str(s).split(";") if f)
        if flags:
            typer.echo("flags: " + ", ".join(f"{k} {v}" for k, v in flags.most_common()))
        if len(res.failures):
            typer.echo(f"failed {len(res.failures)} (see {res.failures_csv}):")
            reasons = Counter(_reason_kind(p) for p in res.failures["problem"])
            for reason, count in reasons.most_common():
                typer.echo(f"  {count:5d}  {reason}")
        if res.qc_sheet:
            typer.echo(f"QC sheet: {res.qc_sheet}")


def _reason_kind(problem: str) -> str:
    """Group failure messages: drop the per-photo details after '(' so similar problems count together."""
    return str(problem).split(" (")[0].split(": ")[0]
