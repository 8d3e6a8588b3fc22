"""`gsscreen study`: run (or resume) a cross-validated study into a run folder."""

from __future__ import annotations

from pathlib import Path

import typer


def study(
    cohort: Path = typer.Argument(..., metavar="COHORT",
        help="Cohort CSV (image, label, subject_id, ...) or a folder with class "
             "sub-folders (name them with --gs / --control)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (re-run the same command to resume)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Study config file (TOML or JSON) applied "
                                                                    "over the preset."),
    preset: str = typer.Option("default", "--preset", help="default (FaceNet, cached features, CPU friendly), "
                                                           "quick (tiny backbone, demo/tests) or paper (VGG-16 "
                                                           "full fine-tune, GPU)."),
    backbone: str | None = typer.Option(None, "--backbone", help="Backbone name (gsscreen weights list)."),
    folds: int | None = typer.Option(None, "--folds", help="Cross-validation folds (paper: 5)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (same seed -> same results)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Maximum epochs per fold."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    external_controls: list[Path] = typer.Option(
        [], "--external-controls", metavar="PATH",
        help="Folder or cohort CSV of photos that are all controls (repeatable); each fold reports the share it "
             "calls GS."),
    gs: list[str] = typer.Option([], "--gs", metavar="FOLDER",
        help="GS sub-folder name(s) when COHORT is a folder. Needed unless "
             "it has two sub-folders and one is named like healthy or control."),
    control: list[str] = typer.Option([], "--control", metavar="FOLDER",
        help="Control sub-folder name(s) when COHORT is a folder."),
    allow_random_init: bool = typer.Option(
        False, "--allow-random-init", help="Go on from random weights when the backbone's pretrained weights are "
                                           "missing (otherwise the study stops with an error)."),
    no_align: bool = typer.Option(False, "--no-align", help="Photos already are aligned face crops: skip MTCNN."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Five-fold cross-validated study: align, split (subject-grouped, class-balanced), train per fold, choose
    thresholds on validation, test, and compare with a logistic-regression baseline. Prints mean ± SD."""
    import pandas as pd

    from gsscreen.cohort import cohort_from_folders, folder_groups, load_cohort
    from gsscreen.training.config import build_config
    from gsscreen.training.study import run_study

    overrides: dict = {"backbone": backbone, "folds": folds, "seed": seed, "device": device}
    if external_controls:
        overrides["external_controls"] = [str(p) for p in external_controls]
    if no_align:
        overrides["align"] = False
    if epochs is not None:
        overrides["train"] = {"epochs": epochs}
    if allow_random_init:
        overrides["allow_random_init"] = True
    try:
        cfg = build_config(preset, config, overrides)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    if cohort.is_dir():
        gs_dirs, control_dirs, note = folder_groups(cohort, gs, control)
        if note:
            typer.echo(note)
        c = load_cohort(cohort_from_folders(cohort, gs=gs_dirs, control=control_dirs), base_dir=cohort,
                        progress=not quiet)
    else:
        c = load_cohort(cohort, progress=not quiet)
    result = run_study(c, out, cfg, progress=not quiet)
    with pd.option_context("display.width", 120):
        typer.echo(result.summary_table().to_string())
    typer.echo(f"\n{len(result.predictions)} photos tested, {len(result.failures)} left out "
               f"(failures.csv); run folder: {out}")


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.command("study")(study)
