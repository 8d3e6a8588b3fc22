"""The report's templating: autoescaped Jinja2 partials, sections that others can add, no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

import jinja2
import pytest

import gsscreen.report as report_pkg
from gsscreen.report.format import fmt_ci, make_table
from gsscreen.report.html import TEMPLATES, Section, environment, render_report

EVIL = '<script>alert("x")</script>'


def test_every_template_compiles() -> None:
    names = environment().list_templates(filter_func=lambda n: n.endswith(".j2"))
    assert "report.html.j2" in names and "sections/cohort.html.j2" in names
    for name in names:
        environment().get_template(name)  # raises TemplateSyntaxError when broken


def test_user_text_is_escaped_everywhere(tmp_path: Path) -> None:
    t = make_table("evil", ["Name", EVIL], [[EVIL, 1.5]], caption=EVIL, notes=[EVIL])
    env = jinja2.Environment(loader=jinja2.ChoiceLoader([jinja2.DictLoader({"sections/x.html.j2": (
        '{% from "_macros.html.j2" import table %}{{ table(s.ctx.t) }}<p>{{ s.ctx.text }}</p>'
    )}), environment().loader]), autoescape=True, finalize=environment().finalize)
    page = env.from_string('{% for s in sections %}{% include s.template %}{% endfor %}').render(
        sections=[Section("x", "X", "sections/x.html.j2", {"t": t, "text": EVIL})]
    )
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") == 5  # header, cell, caption, note, text
    assert "<td>1.5</td>" in page


def test_render_report_numbers_sections_and_escapes_the_frame() -> None:
    page = render_report(
        [Section("software", "Configuration and software", "sections/config.html.j2",
                 {"figure_files": "roc.png / .svg", "table_files": "", "config": EVIL, "versions": "{}"})],
        run_name=EVIL, version="0", synthetic_note=EVIL, problems=[EVIL],
    )
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert '<section id="software">\n<h2>1. Configuration and software</h2>' in page
    assert "<script" not in page and page.count("&lt;script&gt;") == 5  # title, run name, note, problem, config
    assert 'class="synthetic"' in page
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    assert css.strip()[:40] in page  # CSS inline, not escaped


def test_an_undefined_template_is_a_clear_error() -> None:
    with pytest.raises(jinja2.TemplateNotFound):
        render_report([Section("nope", "Nope", "sections/does_not_exist.html.j2")])


def test_section_tables_are_found_for_the_exports() -> None:
    a, b = make_table("a", ["x"], [[1]]), make_table("b", ["x"], [[2]])

    class Holder:
        pass

    from dataclasses import dataclass

    @dataclass
    class Box:
        display: object

    s = Section("s", "S", "sections/config.html.j2", {"one": a, "more": [{"deep": Box(b)}], "skip": Holder()})
    assert [t.name for t in s.tables()] == ["a", "b"]


def test_fmt_ci() -> None:
    assert fmt_ci(0.81234, 0.7, 0.9) == "0.812 (0.700–0.900)"
    assert fmt_ci(0.5, float("nan"), 1) == "0.500"
    assert fmt_ci(None, 0, 1) == "–"


def test_no_import_circle_inside_report() -> None:
    """Module-level and function-level imports between report/ modules form no cycle."""
    pkg = Path(report_pkg.__file__).parent
    graph: dict[str, set[str]] = {}
    for f in pkg.glob("*.py"):
        name = f.stem
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = node.module
                if mod.startswith("gsscreen.report."):
                    deps.add(mod.split(".")[2])
                elif mod == "gsscreen.report":
                    deps.update(a.name for a in node.names if (pkg / f"{a.name}.py").exists())
        graph[name] = deps - {name}
    graph.pop("__init__", None)
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for d in graph.get(n, ()):
            assert state.get(d) != 1, f"import circle: {' -> '.join([*path, n, d])}"
            if d not in state:
                visit(d, [*path, n])
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n, [])
    assert "format" in graph["readers"] and "html" not in graph["readers"]
