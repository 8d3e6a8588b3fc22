"""`gsscreen demo`: the whole study on an embedded synthetic cohort, with no data from the user."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Output folder (re-run to resume)."),
    n_per_class: int = typer.Option(40, "--n-per-class", help="Synthetic photos per class."),
    backbone: str = typer.Option("facenet", "--backbone", help="Backbone (gsscreen weights list)."),
    epochs: int = typer.Option(12, "--epochs", help="Maximum epochs per fold."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the cohort, the split and training."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.html at the end."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Build a SYNTHETIC cohort from two public-domain portraits (identity jitter for everyone, a landmark-driven
    dysmorphic morph for the GS class), align it with the real MTCNN step, run a short five-fold study, simulate
    five readers, and write the report. Takes a few minutes on 2 CPU cores."""
    from gsscreen.cohort import load_cohort
    from gsscreen.demo import SYNTHETIC_NOTE, DemoCohortConfig, build_demo_cohort, simulate_readers
    from gsscreen.training.config import build_config
    from gsscreen.training.run_folder import RunFolderMismatch
    from gsscreen.training.study import run_study

    typer.secho(SYNTHETIC_NOTE, fg=typer.colors.YELLOW, bold=True)
    out.mkdir(parents=True, exist_ok=True)
    cohort_dir = out / "cohort"
    csv = cohort_dir / "cohort.csv"
    if not csv.is_file():
        typer.echo(f"building the synthetic cohort in {cohort_dir} ...")
        build_demo_cohort(cohort_dir, DemoCohortConfig(n_per_class=n_per_class, seed=seed))
    cfg = build_config(
        "default",
        None,
        {"backbone": backbone, "seed": seed,
         "train": {"epochs": epochs, "patience": 0, "n_views": 4}},
    )
    run_dir = out / "study"
    # Every synthetic photo derives from one of two portraits, so the perceptual-hash check would (rightly) call
    # most of them near-duplicates and merge them into two giant split groups; here each synthetic subject is a
    # person of its own, so the check is off.
    cohort = load_cohort(csv, near_duplicate_distance=None, progress=not quiet)
    try:
        result = run_study(cohort, run_dir, cfg, progress=not quiet)
    except RunFolderMismatch:
        if not _is_demo_study(run_dir, csv):
            raise
        # A demo study from other settings (an older gsscreen, other options): synthetic, cheap, ours to redo.
        typer.echo(f"{run_dir} holds a demo study with other settings; starting it afresh")
        shutil.rmtree(run_dir)
        result = run_study(cohort, run_dir, cfg, progress=not quiet)
    # Marks the run folder so the report (and anyone reading the folder) sees that the cohort is synthetic.
    (run_dir / "SYNTHETIC.txt").write_text(SYNTHETIC_NOTE + "\n", encoding="utf-8")
    typer.echo(result.summary_table().to_string())
    readers_csv = simulate_readers(csv, out / "readers_simulated.csv", seed=seed)
    typer.echo(f"simulated reader answers: {readers_csv}")
    if report:
        from gsscreen.report.html import build_report

        path = build_report(run_dir, out=out / "report.html", readers_csv=readers_csv, cohort_csv=csv)
        typer.echo(f"report: {path}")
    typer.secho("Reminder: " + SYNTHETIC_NOTE, fg=typer.colors.YELLOW)


def _is_demo_study(run_dir: Path, cohort_csv: Path) -> bool:
    """True when ``run_dir`` is a study of this demo's synthetic cohort (safe to delete and redo)."""
    import json

    try:
        src = json.loads((run_dir / "cohort_source.json").read_text(encoding="utf-8"))
        return Path(src["cohort_csv"]).resolve() == cohort_csv.resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def register(app: typer.Typer) -> None:
    """Attach `demo` to the root app."""
    app.command("demo")(demo)
