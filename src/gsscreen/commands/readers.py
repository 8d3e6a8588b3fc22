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
    answer_seconds: float = typer.Option(10.0, "--answer-seconds", min=0.0,
        help="Time to answer after a photo is hidden; later answers are kept but marked late."),
    allow_host: list[str] = typer.Option([], "--allow-host", metavar="HOST",
        help="A host name the study may be reached under (besides localhost and IP addresses)."),
) -> None:
    """Run the reader-study web app; answers go to --db as they are given, readers resume where they stopped.

    Readers sign in with the invitation code from `gsscreen readers invite`. Off this machine (--host other than
    127.0.0.1) the app refuses to start until invitations exist."""
    from gsscreen.web.readers_app import ReadersConfig, serve

    try:
        cfg = ReadersConfig(
            cohort=cohort, db=db, seconds=seconds, confidence=confidence, host=host, port=port, seed=seed,
            answer_seconds=answer_seconds, allowed_hosts=tuple(allow_host),
        )
        serve(cfg)
    except (FileNotFoundError, ValueError) as exc:
        from gsscreen.errors import GsscreenError

        raise GsscreenError(str(exc)) from exc


@readers_app.command("invite")
def invite_cmd(
    name: str = typer.Argument(..., metavar="NAME", help="The reader's name, as they will type it."),
    role: str = typer.Option(..., "--role", help="junior or senior."),
    db: Path = typer.Option(Path("readers.sqlite"), "--db", help="The reader-study SQLite file (as given to serve)."),
    url: str = typer.Option("http://localhost:8765", "--url", help="Where readers open the study (for the link)."),
) -> None:
    """Make a reader's invitation: prints the code and a link to give them (inviting again replaces the code)."""
    from gsscreen.web.readers_app import create_invitation

    try:
        code = create_invitation(db, name, role)
    except ValueError as exc:
        from gsscreen.errors import GsscreenError

        raise GsscreenError(str(exc)) from exc
    typer.echo(f"invitation for {' '.join(name.split())} ({role}): {code}")
    typer.echo(f"link: {url.rstrip('/')}/#invite={code}")


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
    from gsscreen.web.readers_app import read_answers

    late = sum(int(r.get("late") or 0) for r in read_answers(db))
    typer.echo(f"{n} answers written to {output} ({late} late: given more than the answer time after the photo "
               "was hidden; column `late`)")


def register(app: typer.Typer) -> None:
    """Attach ``gsscreen readers serve`` and ``gsscreen readers export`` to the root app."""
    app.add_typer(readers_app, name="readers")
