"""`gsscreen` sub-commands for the study area."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app (filled in as the area lands)."""
