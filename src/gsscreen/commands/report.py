"""`gsscreen report`: one self-contained HTML report of a study's run folder."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Attach ``gsscreen report`` to the root app."""

    @app.command("report")
    def report(
        run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="Run folder written by `gsscreen study`."),
        out: Path | None = typer.Option(
            None, "-o", "--out", help="HTML file to write (default: RUN_DIR/report/report.html)."
        ),
        readers: Path | None = typer.Option(
            None, "--readers", help="Physicians' answers CSV (reader, role, photo, answer[, confidence])."
        ),
        cohort: Path | None = typer.Option(
            None, "--cohort", help="Cohort CSV for Table 1 (default: found from the run's config / folder)."
        ),
        cover_eyes: bool = typer.Option(
            True, "--cover-eyes/--no-cover-eyes",
            help="Cover the eyes with a grey bar in every face picture of the report (default: on).",
        ),
        gallery: str = typer.Option("gs", "--gallery", help="Grad-CAM gallery of: gs | all | none."),
        max_gallery: int = typer.Option(48, "--max-gallery", help="At most this many Grad-CAM maps (0 = all)."),
        include_incomplete: bool = typer.Option(
            False, "--include-incomplete-readers",
            help="Also use physicians who answered under 90% of the photos in κ, group means and MRMC.",
        ),
        reader_group: str | None = typer.Option(
            None, "--reader-group", help="Readers-CSV column that groups physicians (default: group/.../role)."
        ),
        subgroup: list[str] = typer.Option(
            [], "--subgroup", metavar="COLUMN",
            help="Cohort column to report results by (repeatable), e.g. --subgroup ethnicity."
        ),
        prevalence: float | None = typer.Option(
            None, "--prevalence", min=0.0, max=1.0, help="GS prevalence where the model would be used: PPV/NPV there."
        ),
    ) -> None:
        """Write the study report (tables, ROC with CI band, physicians, Grad-CAM) as one HTML file."""
        from gsscreen.report import build_report
        from gsscreen.report.run import RunFolderError

        if gallery not in ("gs", "all", "none"):
            raise typer.BadParameter(f"choose gs, all or none (got {gallery!r})", param_hint="--gallery")
        try:
            path = build_report(
                run_dir,
                out=out,
                readers_csv=readers,
                cover_eyes=cover_eyes,
                gallery=gallery,
                max_gallery=max_gallery if max_gallery > 0 else None,
                cohort_csv=cohort,
                include_incomplete_readers=include_incomplete,
                reader_group_column=reader_group,
                subgroups=tuple(subgroup),
                prevalence=prevalence,
            )
        except (RunFolderError, FileNotFoundError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        typer.echo(str(path))
