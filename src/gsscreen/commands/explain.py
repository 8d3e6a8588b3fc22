"""`gsscreen` sub-commands for the explain area.

Nothing is registered yet: a useful ``gsscreen explain`` needs a trained model (``gsscreen.models`` and the
training run folder), which have not landed. The library is ``gsscreen.explain``; ``scripts/make_gradcam_figure.py``
writes the documentation figure.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app (filled in as the area lands)."""
