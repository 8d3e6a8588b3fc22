"""`gsscreen evaluate`: external validation of a model pack (or a study's fold models) on a labelled cohort."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Attach ``gsscreen evaluate`` to the root app."""

    @app.command("evaluate")
    def evaluate_cmd(
        model: Path = typer.Argument(..., help="Model pack (.gss file or folder) or a `gsscreen study` run folder."),
        cohort: Path = typer.Argument(..., help="Labelled cohort CSV (image, label[, subject_id, syndrome, ...])."),
        out: Path = typer.Option(..., "-o", "--out", help="Output folder (predictions, metrics, report)."),
        subgroup: list[str] = typer.Option([], "--subgroup", metavar="COLUMN",
                                           help="Cohort column to report results by (repeatable), e.g. --subgroup "
                                                "ethnicity."),
        prevalence: float | None = typer.Option(None, "--prevalence", min=0.0, max=1.0,
                                                help="GS prevalence where the model would be used: PPV/NPV there."),
        same_child: bool = typer.Option(False, "--same-child", help="Cluster likely-same-child photos (FaceNet) so "
                                        "the bootstrap resamples children, not photos (when subject ids are missing)."),
        n_boot: int = typer.Option(1000, "--n-boot", min=100, help="Bootstrap replicates for the CIs."),
        workers: int = typer.Option(2, "--workers", min=0, help="Processes that decode and align photos."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Screen every photo of COHORT with MODEL and report accuracy with 95% CIs, calibration, net benefit and
        subgroups, as the study report does (without folds). Photos the quality gate refuses are left out and
        counted in the flow diagram."""
        from gsscreen.external import EvaluateConfig, evaluate

        cfg = EvaluateConfig(model=str(model), cohort=str(cohort), out_dir=str(out), same_child=same_child,
                             subgroups=list(subgroup), prevalence=prevalence, n_boot=n_boot, workers=workers)
        folder = evaluate(cfg, progress=not quiet)
        typer.echo(f"predictions: {folder / 'predictions.csv'}")
        typer.echo(f"report: {folder / 'report' / 'report.html'}")
