"""No unresolved merge-conflict markers in the sources, tests, scripts or docs (one slipped into docs/design.md)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("src", "tests", "benchmarks", "scripts", "docs")
SUFFIXES = {".py", ".md", ".toml", ".html", ".j2", ".jinja", ".txt", ".cfg", ".yml", ".yaml", ".R", ".sh", ".css",
            ".js", ".json"}
MARKER = re.compile(r"^(<{7} |>{7} |\|{7} )")


def _files() -> list[Path]:
    out = [REPO / "README.md", REPO / "pyproject.toml"]
    for folder in FOLDERS:
        out += [p for p in (REPO / folder).rglob("*") if p.is_file() and p.suffix in SUFFIXES]
    return [p for p in out if p.is_file()]


def test_no_conflict_markers() -> None:
    files = _files()
    assert any(p.name == "design.md" for p in files)
    hits = [f"{p.relative_to(REPO)}:{i}" for p in files
            for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if MARKER.match(line)]
    assert not hits, "unresolved merge-conflict markers at " + ", ".join(hits)
