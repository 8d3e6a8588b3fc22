"""The ``gsscreen`` command. Thin: each area's sub-commands live in ``gsscreen.commands.<area>`` and import
their heavy dependencies (torch, OpenCV) only when they run, so ``gsscreen --help`` stays fast."""

from __future__ import annotations

import importlib

import typer
from typer.core import TyperGroup

from gsscreen import __version__

# One module per pipeline area; each exposes ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = (
    "demo", "cohort", "align", "weights", "study", "explain", "report", "readers", "screening", "evaluate", "cache",
)

class _Root(TyperGroup):
    """The root command: every sub-command runs inside the one user-error handler (also under click's test runner)."""

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        from gsscreen.errors import cli_errors

        with cli_errors():
            return super().invoke(ctx)


app = typer.Typer(
    cls=_Root,
    name="gsscreen",
    help=(
        "Screen children's frontal face photos for genetic syndromes (GS).\n\n"
        "Typical study: `gsscreen cohort from-folders` -> `gsscreen align` -> `gsscreen study` -> "
        "`gsscreen report`. For one photo: `gsscreen screen PHOTO`. Try `gsscreen demo` first: it runs the "
        "whole study on a small synthetic cohort built from public-domain portraits.\n\n"
        "A research tool, not a medical device. Everything runs offline, on this machine."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain click help: it wraps whole words at the terminal's width and shows flags without a <bool> placeholder
    # (the rich panels cut option names at 80 columns and broke sentences mid-line).
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gsscreen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """gsscreen: genetic-syndrome screening from face photos."""
    from gsscreen.errors import console_warnings

    console_warnings()  # every command's warnings reach the console, not only its log files


for _name in COMMAND_MODULES:
    importlib.import_module(f"gsscreen.commands.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    """The ``gsscreen`` entry point (``argv``: the arguments, default ``sys.argv[1:]``); user errors exit 2 with
    one line, see :func:`gsscreen.errors.cli_errors`."""
    from gsscreen.errors import cli_errors

    with cli_errors():
        app(args=argv, prog_name="gsscreen")


if __name__ == "__main__":
    main()
