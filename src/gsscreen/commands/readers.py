"""`gsscreen readers ...`: the reader study (physicians calling GS / no GS on photos shown for a fixed time)."""

from __future__ import annotations

from pathlib import Path

import typer

readers_app = typer.Typer(
    help=(
        "Reader study: physicians see each photo for a fixed time and call 'genetic syndrome' or not.\n\n"
        "`gsscreen readers serve COHORT.csv` runs the study in the browser; "
        "`gsscreen readers export -o readers.csv` writes the answers for the evaluation."
    ),
    no_args_is_help=True,
)


@readers_app.command("serve")
def serve_cmd(
    cohort: Path = typer.Argument(..., metavar="COHORT",
        help="Cohort CSV with columns image (relative to the CSV or absolute), label."),
    db: Path = typer.Option(Path("readers.sqlite"), "--db", help="SQLite file the answers are written to."),
    seconds: float = typer.Option(10.0, "--seconds", min=0.1, help="Display time of each photo, in seconds."),
    confidence: bool = typer.Option(
        True, "--confidence/--no-confidence", help="Ask for a 1-5 confidence with every answer."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (default: this machine only)."),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="Port to listen on."),
    seed: int = typer.Option(0, "--seed", help="Seed of the readers' photo orders (with each name and role)."),
) -> None:
    """Run the reader-study web app; answers go to --db as they are given, readers resume where they stopped."""
    from gsscreen.web.readers_app import ReadersConfig, serve

    try:
        cfg = ReadersConfig(
            cohort=cohort, db=db, seconds=seconds, confidence=confidence, host=host, port=port, seed=seed
        )
        serve(cfg)
    except (FileNotFoundError, ValueError) as exc:
        from gsscreen.errors import GsscreenError

        raise GsscreenError(str(exc)) from exc


@readers_app.command("export")
def export_cmd(
    db: Path = typer.Option(Path("readers.sqlite"), "--db", help="The reader-study SQLite file (as given to serve)."),
    output: Path = typer.Option(..., "-o", "--output", help="CSV to write (reader, role, photo, answer, ...)."),
) -> None:
    """Write every answer as a CSV row: reader, role, photo, answer, confidence, seconds, answered_at, views."""
    from gsscreen.web.readers_app import export_answers

    try:
        n = export_answers(db, output)
    except (FileNotFoundError, ValueError) as exc:
        from gsscreen.errors import GsscreenError

        raise GsscreenError(str(exc)) from exc
    typer.echo(f"{n} answers written to {output}")


def register(app: typer.Typer) -> None:
    """Attach ``gsscreen readers serve`` and ``gsscreen readers export`` to the root app."""
    app.add_typer(readers_app, name="readers")
