"""Formatting shared by every part of the report: numbers as journals print them, and the :class:`Table` and
:class:`Figure` records the templates render.

It sits below :mod:`gsscreen.report.html` and :mod:`gsscreen.report.readers` (both import it; it imports neither),
so the two no longer import each other. A :class:`Table` holds already-formatted text cells: the HTML template
escapes them, and the publication exports (CSV, LaTeX, DOCX) write the same cells, so every copy of a table shows
the same numbers.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gsscreen.report.run import finite

METRICS = ("accuracy", "recall", "specificity", "precision", "f1", "auc")
METRIC_HEADERS = {
    "accuracy": "Accuracy",
    "recall": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision",
    "f1": "F1",
    "auc": "AUC",
}
RESEARCH_LINE = (
    "Research use only. gsscreen is not a medical device: its output is not a diagnosis and must not be used to "
    "make clinical decisions."
)


def esc(x: Any) -> str:
    """``html.escape`` of ``str(x)`` (quotes too)."""
    return html.escape(str(x), quote=True)


def fmt(x: Any, nd: int = 3) -> str:
    """A number with ``nd`` decimals; an en dash for missing/NaN."""
    return f"{float(x):.{nd}f}" if finite(x) else "–"


def fmt_p(p: Any) -> str:
    """A p-value as journals print it: 3 decimals, ``<0.001`` below that."""
    if not finite(p):
        return "–"
    p = float(p)
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_is(p: Any) -> str:
    """``"p = 0.042"`` / ``"p < 0.001"`` / ``"p –"`` for running text."""
    t = fmt_p(p)
    return f"p {t[0]} {t[1:]}" if t.startswith("<") else f"p = {t}"


def mean_sd(mean: Any, sd: Any, nd: int = 3) -> str:
    """``"0.886 ± 0.021"`` (the SD left out when undefined, e.g. one fold)."""
    if not finite(mean):
        return "–"
    return f"{float(mean):.{nd}f} ± {float(sd):.{nd}f}" if finite(sd) else f"{float(mean):.{nd}f}"


def fmt_ci(est: Any, lo: Any, hi: Any, nd: int = 3) -> str:
    """``"0.812 (0.701–0.893)"``; the interval left out when undefined."""
    if not finite(est):
        return "–"
    if finite(lo) and finite(hi):
        return f"{float(est):.{nd}f} ({float(lo):.{nd}f}–{float(hi):.{nd}f})"
    return f"{float(est):.{nd}f}"


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass
class Table:
    """One table of the report: text cells, already formatted.

    ``name`` is the file stem of its exports (``report/tables/NAME.csv|.tex|.docx``), unique within a report;
    ``notes`` are footnotes printed under it. ``header`` may be all empty strings (a key–value table without a
    head row).
    """

    name: str
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    cls: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def has_header(self) -> bool:
        return any(str(h) for h in self.header)

    def to_frame(self) -> pd.DataFrame:
        width = max(len(self.header), max((len(r) for r in self.rows), default=0))
        head = [*self.header, *[""] * (width - len(self.header))]
        cols = [h if str(h) else f"column {i + 1}" for i, h in enumerate(head)]
        return pd.DataFrame([[*r, *[""] * (width - len(r))] for r in self.rows], columns=cols)


def make_table(
    name: str, header: Sequence[Any], rows: Iterable[Sequence[Any]], caption: str = "", cls: str = "",
    notes: Sequence[str] = (),
) -> Table:
    """A :class:`Table` with every cell turned into text (None → empty)."""
    return Table(
        name=name, header=[str(h) for h in header],
        rows=[["" if v is None else str(v) for v in r] for r in rows], caption=caption, cls=cls, notes=list(notes),
    )


def frame_table(name: str, df: pd.DataFrame, caption: str = "", cls: str = "", index: bool = False) -> Table:
    """A DataFrame as a :class:`Table` (floats with 3 decimals)."""
    d = df.reset_index() if index else df

    def show(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return fmt(v)
        return "" if v is None else str(v)

    return make_table(name, [str(c) for c in d.columns], ([show(v) for v in r] for r in d.itertuples(index=False)),
                 caption=caption, cls=cls)


@dataclass
class Figure:
    """A figure embedded in the report: the saved SVG as a data URI, its alt text, caption and display width."""

    uri: str
    alt: str
    caption: str
    width: str = "100%"
    files: tuple[str, ...] = ()

    @classmethod
    def from_svg(cls, svg: Path, alt: str, caption: str, width: str = "100%") -> Figure:
        return cls(data_uri(svg.read_bytes(), "image/svg+xml"), alt, caption, width, (svg.name,))
