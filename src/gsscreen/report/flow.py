"""STARD-style participant flow: photos in the cohort table → excluded, with reasons → analysed, per class.

Counts come from the run folder: the cohort table (photos in), ``failures.csv`` (each photo left out, with its
stage and problem) and ``predictions.csv`` (photos analysed). A photo that cannot be placed (in the cohort but
neither analysed nor listed as a failure) is counted as "not accounted for" rather than hidden.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from gsscreen.report.figures import _RC, PALETTE, _new_figure
from gsscreen.report.run import RunData, match_photos, photo_key

CLASSES = ("GS", "control")
MAX_REASONS = 8


@dataclass
class FlowCount:
    """Photos per class: ``gs``, ``control`` and ``unknown`` (class not known, e.g. no cohort table)."""

    gs: int = 0
    control: int = 0
    unknown: int = 0

    @property
    def total(self) -> int:
        return self.gs + self.control + self.unknown

    def text(self) -> str:
        parts = [f"GS {self.gs}", f"control {self.control}"] + ([f"class unknown {self.unknown}"]
                                                               if self.unknown else [])
        return f"{self.total} ({', '.join(parts)})"


@dataclass
class Flow:
    photos_in: FlowCount
    excluded: list[tuple[str, FlowCount]]
    analysed: FlowCount
    unaccounted: FlowCount
    external_excluded: int = 0
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def n_excluded(self) -> FlowCount:
        out = FlowCount()
        for _r, c in self.excluded:
            out.gs, out.control, out.unknown = out.gs + c.gs, out.control + c.control, out.unknown + c.unknown
        return out


def reason_of(problem: str, stage: str) -> str:
    """A short reason shared by photos that failed the same way: ``[kind]`` of a cohort problem, else the
    problem text up to its first parenthesis, colon or number (which carry per-photo details)."""
    p = str(problem).strip()
    m = re.match(r"\[([^\]]+)\]", p)
    if m:
        return f"cohort check: {m.group(1).replace('_', ' ')}"
    p = re.split(r"[(:]|\d", p, maxsplit=1)[0].strip(" ,.;-") or "unknown problem"
    return f"{stage}: {p}" if stage and stage not in ("align",) else p


def _count(labels: pd.Series) -> FlowCount:
    v = labels.fillna("?").astype(str)
    return FlowCount(int((v == "GS").sum()), int((v == "control").sum()), int((~v.isin(CLASSES)).sum()))


def participant_flow(run: RunData) -> Flow:
    """The flow of photos through the study (see the module docstring)."""
    pred = run.predictions
    analysed = _count(pred["label"])
    fails = run.failures if run.failures is not None else pd.DataFrame(columns=["file", "problem", "stage"])
    fails = fails.copy()
    for col in ("file", "problem", "stage"):
        if col not in fails.columns:
            fails[col] = ""
    stage = fails["stage"].fillna("").astype(str)
    external = stage.str.contains("external")
    n_ext = int(external.sum())
    fails = fails[~external]
    notes: list[str] = []

    cohort = run.cohort
    label_of: dict[str, str] = {}
    if cohort is not None and {"image", "label"} <= set(cohort.columns):
        keys = [photo_key(v) for v in cohort["image"]]
        labels = cohort["label"].astype(str).str.strip()
        norm = labels.str.lower().map({"gs": "GS", "control": "control"}).fillna(labels)
        label_of = dict(zip(keys, norm, strict=True))
        photos_in = _count(pd.Series(list(norm)))
        source = f"cohort table {run.cohort_source.name}" if run.cohort_source else "cohort table"
    else:
        photos_in = None
        source = "predictions.csv and failures.csv (no cohort table)"

    fkeys = [photo_key(v) for v in fails["file"]]
    matched = match_photos(fkeys, list(label_of)) if label_of else {}
    fclass = pd.Series([label_of.get(matched.get(k, ""), "?") for k in fkeys], index=fails.index, dtype=object)
    reasons = pd.Series([reason_of(p, s) for p, s in zip(fails["problem"], fails["stage"].fillna(""), strict=True)],
                        index=fails.index, dtype=object)
    groups = sorted(((r, _count(fclass[reasons == r])) for r in reasons.unique()), key=lambda x: -x[1].total)
    if len(groups) > MAX_REASONS:
        rest = FlowCount()
        for _r, c in groups[MAX_REASONS - 1:]:
            rest.gs, rest.control, rest.unknown = rest.gs + c.gs, rest.control + c.control, rest.unknown + c.unknown
        groups = [*groups[:MAX_REASONS - 1], (f"other reasons ({len(groups) - MAX_REASONS + 1})", rest)]

    flow = Flow(photos_in or FlowCount(), groups, analysed, FlowCount(), n_ext, source, notes)
    if photos_in is None:
        ex = flow.n_excluded
        flow.photos_in = FlowCount(analysed.gs + ex.gs, analysed.control + ex.control, analysed.unknown + ex.unknown)
        notes.append("No cohort table: photos in = analysed + excluded.")
    else:
        ex = flow.n_excluded
        gap = FlowCount(photos_in.gs - ex.gs - analysed.gs, photos_in.control - ex.control - analysed.control,
                        photos_in.unknown - ex.unknown - analysed.unknown)
        if gap.gs or gap.control or gap.unknown:
            flow.unaccounted = gap
            notes.append(
                "Photos in − excluded ≠ analysed by class "
                f"(GS {gap.gs:+d}, control {gap.control:+d}, class unknown {gap.unknown:+d}): the cohort table "
                "may list photos the study did not use, or a failure could not be matched to its cohort row."
            )
    if n_ext:
        notes.append(f"{n_ext} external-control photo(s) could not be used (not part of this flow).")
    return flow


def flow_rows(flow: Flow) -> list[list[str]]:
    """The flow as table rows: step, GS, control, class unknown, total."""
    def row(name: str, c: FlowCount) -> list[str]:
        return [name, str(c.gs), str(c.control), str(c.unknown), str(c.total)]

    rows = [row("Photos in", flow.photos_in), row("Excluded", flow.n_excluded)]
    rows += [row(f"• {r}", c) for r, c in flow.excluded]
    if flow.unaccounted.total or flow.unaccounted.gs or flow.unaccounted.control:
        rows.append(row("Not accounted for", flow.unaccounted))
    rows.append(row("Analysed", flow.analysed))
    return rows


def flow_figure(flow: Flow) -> Figure:
    """The flow diagram: "photos in" → "analysed" down the left, "excluded, with reasons" to the right."""
    n_lines = max(2 * len(flow.excluded), 1)
    height = 2.4 + 0.2 * n_lines
    with matplotlib.rc_context(_RC):
        fig = _new_figure(5.6, height)
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        box = {"boxstyle": "round,pad=0.5", "facecolor": "#eef5fb", "edgecolor": PALETTE["blue"], "lw": 0.9}
        xbox = {"boxstyle": "round,pad=0.5", "facecolor": "#fdf0e6", "edgecolor": PALETTE["vermillion"], "lw": 0.9}
        top_y, bottom_y = 0.9, 0.1
        ax.text(0.2, top_y, f"Photos in\n{flow.photos_in.text()}", ha="center", va="center", bbox=box, fontsize=9)
        ax.text(0.2, bottom_y, f"Analysed\n{flow.analysed.text()}", ha="center", va="center", bbox=box, fontsize=9)
        ax.annotate("", xy=(0.2, bottom_y + 0.09), xytext=(0.2, top_y - 0.09),
                    arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 0.9})
        lines = textwrap.wrap(f"Excluded: {flow.n_excluded.text()}", 46, subsequent_indent="   ")
        for r, c in flow.excluded:
            # Wrapped so a long reason stays inside the figure (text beyond its edge would be cut off).
            item = f"• {r}: {c.total} (GS {c.gs}, control {c.control}" + (f", unknown {c.unknown})" if c.unknown
                                                                          else ")")
            lines += textwrap.wrap(item, 46, subsequent_indent="   ")
        if not flow.excluded:
            lines.append("• none")
        if flow.unaccounted.gs or flow.unaccounted.control or flow.unaccounted.unknown:
            u = flow.unaccounted
            lines += textwrap.wrap(f"Not accounted for: GS {u.gs:+d}, control {u.control:+d}"
                                   + (f", class unknown {u.unknown:+d}" if u.unknown else ""), 46,
                                   subsequent_indent="   ")
        mid = 0.5
        ax.annotate("", xy=(0.43, mid), xytext=(0.2, mid),
                    arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 0.9})
        ax.text(0.44, mid, "\n".join(lines), ha="left", va="center", bbox=xbox, fontsize=8, linespacing=1.35)
    return fig


__all__ = ["Flow", "FlowCount", "flow_figure", "flow_rows", "participant_flow", "reason_of"]
