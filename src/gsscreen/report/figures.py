"""The report's figures: pooled ROC with its bootstrap band and the physicians' points (the paper's Fig. 4),
per-fold ROC curves, the confusion matrix, and per-fold metrics.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no GUI backend, no global
state, safe in threads and on headless servers); :func:`save_figure` writes it as a 300 dpi PNG (print
resolution) and an SVG whose text stays editable text (``svg.fonttype = 'none'``).

Colours follow the Okabe–Ito palette, which stays distinguishable under the common colour-vision deficiencies;
roles are told apart by marker shape as well as colour, so the figures also survive greyscale printing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np

# A bare Figure renders through the Agg canvas (PNG) and the SVG canvas without selecting a pyplot backend, so
# building a report never changes the backend of the process that calls it.
from matplotlib.figure import Figure

# Okabe & Ito (2008), "Color Universal Design".
PALETTE: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#999999",
}
MODEL_COLOUR = PALETTE["blue"]
BAND_COLOUR = PALETTE["sky"]
# Per fold: a fixed cycle, so fold k has the same colour in every figure of a report.
FOLD_COLOURS = (
    PALETTE["blue"], PALETTE["orange"], PALETTE["green"], PALETTE["vermillion"], PALETTE["purple"],
    PALETTE["sky"], PALETTE["yellow"], PALETTE["black"],
)
ROLE_STYLE: dict[str, tuple[str, str]] = {  # role -> (marker, colour)
    "junior": ("o", PALETTE["orange"]),
    "senior": ("s", PALETTE["vermillion"]),
}
OTHER_ROLE_STYLE = ("D", PALETTE["purple"])

METRIC_LABELS: dict[str, str] = {
    "accuracy": "Accuracy",
    "recall": "Sensitivity (recall)",
    "specificity": "Specificity",
    "precision": "Precision",
    "f1": "F1",
    "auc": "AUC",
}

# Small, consistent type: the figures are read at column width in a manuscript.
_RC = {
    "font.size": 8.5,
    "axes.titlesize": 9.5,
    "axes.labelsize": 8.5,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    # Text stays text in the SVG (editable in Illustrator/Inkscape, as journals ask); the PNG is unaffected.
    "svg.fonttype": "none",
    "svg.hashsalt": "gsscreen-report",  # stable SVG ids: the same run gives byte-identical figures
}


@dataclass(frozen=True)
class ReaderPoint:
    """One physician's operating point: ``fpr`` = 1 − specificity and ``tpr`` = sensitivity, both in 0–1."""

    name: str
    role: str
    fpr: float
    tpr: float


@dataclass(frozen=True)
class FoldCurve:
    """One fold's ROC curve: ``fpr``/``tpr`` arrays of the same length, increasing, from (0, 0) to (1, 1)."""

    fold: int
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float


@dataclass(frozen=True)
class SavedFigure:
    """Where :func:`save_figure` wrote one figure."""

    name: str
    png: Path
    svg: Path


def _new_figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _style_roc_axes(ax: matplotlib.axes.Axes) -> None:
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color=PALETTE["grey"], label="Chance", zorder=1)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 − specificity (false-positive rate)")
    ax.set_ylabel("Sensitivity (true-positive rate)")
    ax.grid(True, lw=0.4, color="#e5e5e5", zorder=0)


def roc_figure(
    fpr: np.ndarray,
    tpr: np.ndarray,
    auc: float,
    auc_ci: tuple[float, float] | None = None,
    band: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    readers: Sequence[ReaderPoint] = (),
    band_label: str = "95% CI (bootstrap)",
    title: str | None = "Pooled ROC over the test folds",
) -> Figure:
    """The pooled ROC curve, its CI band, the chance diagonal and each physician's point.

    fpr, tpr: the pooled curve (arrays of one length, in 0–1).
    auc, auc_ci: the pooled AUC and its 95% CI ``(lo, hi)``, shown in the legend.
    band: ``(fpr_grid, tpr_lo, tpr_hi)`` arrays of one length: the band drawn as a shaded area. A band computed
        at fixed specificities is passed with ``fpr_grid = 1 - specificities``.
    readers: physicians' points, one marker per role (junior: circle, senior: square, other: diamond), each
        labelled with its name.
    """
    with matplotlib.rc_context(_RC):
        fig = _new_figure(4.6, 4.4)
        draw_roc(fig.add_subplot(), fpr, tpr, auc, auc_ci, band, readers, band_label, title)
    return fig


def draw_roc(
    ax: matplotlib.axes.Axes,
    fpr: np.ndarray,
    tpr: np.ndarray,
    auc: float,
    auc_ci: tuple[float, float] | None = None,
    band: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    readers: Sequence[ReaderPoint] = (),
    band_label: str = "95% CI (bootstrap)",
    title: str | None = None,
) -> None:
    """:func:`roc_figure` drawn on ``ax`` (for multi-panel figures)."""
    with matplotlib.rc_context(_RC):
        _style_roc_axes(ax)
        if band is not None:
            gx, lo, hi = (np.asarray(a, dtype=float) for a in band)
            order = np.argsort(gx, kind="stable")
            ax.fill_between(gx[order], lo[order], hi[order], color=BAND_COLOUR, alpha=0.35, lw=0, label=band_label,
                            zorder=2)
        label = f"Model, AUC {auc:.3f}" if np.isfinite(auc) else "Model"
        if auc_ci is not None and all(np.isfinite(auc_ci)):
            label += f" (95% CI {auc_ci[0]:.3f}–{auc_ci[1]:.3f})"
        ax.plot(np.asarray(fpr, float), np.asarray(tpr, float), color=MODEL_COLOUR, lw=1.8, label=label, zorder=3)
        seen_roles: set[str] = set()
        for r in readers:
            marker, colour = ROLE_STYLE.get(r.role.lower(), OTHER_ROLE_STYLE)
            role_label = r.role.lower() if r.role else "physician"
            legend = f"{role_label.capitalize()} physician" if role_label not in seen_roles else None
            seen_roles.add(role_label)
            ax.scatter([r.fpr], [r.tpr], marker=marker, s=34, color=colour, edgecolor="black", lw=0.6, zorder=5,
                       label=legend)
            # Labels sit to the right of the point, pulled left near the right edge so they stay inside the axes.
            right = r.fpr > 0.75
            ax.annotate(r.name, (r.fpr, r.tpr), xytext=(-5 if right else 5, -3), textcoords="offset points",
                        fontsize=6.5, ha="right" if right else "left", va="top", zorder=6)
        ax.legend(loc="lower right", frameon=True, framealpha=0.9, edgecolor="#cccccc")
        if title:
            ax.set_title(title)


def fold_roc_figure(curves: Sequence[FoldCurve], title: str | None = "ROC per test fold") -> Figure:
    """One ROC curve per fold, each with its AUC in the legend."""
    with matplotlib.rc_context(_RC):
        fig = _new_figure(4.6, 4.4)
        draw_fold_roc(fig.add_subplot(), curves, title)
    return fig


def draw_fold_roc(ax: matplotlib.axes.Axes, curves: Sequence[FoldCurve], title: str | None = None) -> None:
    """:func:`fold_roc_figure` drawn on ``ax``."""
    with matplotlib.rc_context(_RC):
        _style_roc_axes(ax)
        for k, c in enumerate(curves):
            colour = FOLD_COLOURS[k % len(FOLD_COLOURS)]
            lab = f"Fold {c.fold}, AUC {c.auc:.3f}" if np.isfinite(c.auc) else f"Fold {c.fold}"
            ax.plot(np.asarray(c.fpr, float), np.asarray(c.tpr, float), color=colour, lw=1.3, label=lab, zorder=3)
        ax.legend(loc="lower right", frameon=True, framealpha=0.9, edgecolor="#cccccc")
        if title:
            ax.set_title(title)


def confusion_figure(
    counts: np.ndarray,
    labels: Sequence[str] = ("control", "GS"),
    title: str | None = "Confusion matrix (pooled test folds)",
) -> Figure:
    """A 2×2 confusion matrix: rows = true class, columns = predicted class, in ``labels`` order.

    counts: ``(2, 2)`` integers, ``counts[i, j]`` = photos of true class i called class j. Each cell shows the
    count and its share of the row (so the diagonal reads as specificity and sensitivity).
    """
    with matplotlib.rc_context(_RC):
        fig = _new_figure(3.6, 3.2)
        draw_confusion(fig.add_subplot(), counts, labels, title)
    return fig


def draw_confusion(
    ax: matplotlib.axes.Axes, counts: np.ndarray, labels: Sequence[str] = ("control", "GS"), title: str | None = None
) -> None:
    """:func:`confusion_figure` drawn on ``ax``."""
    m = np.asarray(counts, dtype=float)
    if m.shape != (2, 2):
        raise ValueError(f"confusion counts must be 2×2, got shape {m.shape}")
    row_sum = m.sum(axis=1, keepdims=True)
    share = np.divide(m, row_sum, out=np.zeros_like(m), where=row_sum > 0)
    with matplotlib.rc_context(_RC):
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                dark = share[i, j] > 0.55
                ax.text(j, i, f"{int(m[i, j])}\n{share[i, j]:.1%}", ha="center", va="center", fontsize=9,
                        color="white" if dark else "black")
        ax.set_xticks([0, 1], [f"Called {x}" for x in labels])
        ax.set_yticks([0, 1], [f"True {x}" for x in labels])
        ax.tick_params(length=0)
        for s in ax.spines.values():
            s.set_visible(False)
        if title:
            ax.set_title(title)


def fold_metrics_figure(
    per_fold: Sequence[Mapping[str, float]],
    metrics: Sequence[str] = ("accuracy", "recall", "specificity", "precision", "f1", "auc"),
    folds: Sequence[int] | None = None,
    title: str | None = "Metrics per test fold",
) -> Figure:
    """Each metric's per-fold values as points (one colour per fold) with the mean ± SD as a bar and error bar.

    per_fold: one mapping per fold, metric name -> value in 0–1 (missing or NaN values are left out).
    """
    with matplotlib.rc_context(_RC):
        fig = _new_figure(6.4, 3.2)
        draw_fold_metrics(fig.add_subplot(), per_fold, metrics, folds, title)
    return fig


def draw_fold_metrics(
    ax: matplotlib.axes.Axes,
    per_fold: Sequence[Mapping[str, float]],
    metrics: Sequence[str] = ("accuracy", "recall", "specificity", "precision", "f1", "auc"),
    folds: Sequence[int] | None = None,
    title: str | None = None,
    legend_outside: bool = True,
) -> None:
    """:func:`fold_metrics_figure` drawn on ``ax``."""
    folds = list(folds) if folds is not None else list(range(1, len(per_fold) + 1))
    with matplotlib.rc_context(_RC):
        x = np.arange(len(metrics))
        for j, name in enumerate(metrics):
            vals = np.array([float(f.get(name, np.nan)) for f in per_fold], dtype=float)
            ok = vals[np.isfinite(vals)]
            if len(ok):
                sd = float(ok.std(ddof=1)) if len(ok) > 1 else 0.0
                ax.bar(j, ok.mean(), width=0.62, color=PALETTE["sky"], alpha=0.45, edgecolor=MODEL_COLOUR, lw=0.6,
                       zorder=2)
                ax.errorbar(j, ok.mean(), yerr=sd, color="black", capsize=3, lw=0.9, zorder=4)
        # Points spread sideways by fold so equal values stay visible.
        n = max(len(per_fold), 1)
        offsets = (np.arange(n) - (n - 1) / 2) * (0.42 / max(n - 1, 1))
        for k, f in enumerate(per_fold):
            vals = np.array([float(f.get(m, np.nan)) for m in metrics], dtype=float)
            ax.scatter(x + offsets[k], vals, s=14, color=FOLD_COLOURS[k % len(FOLD_COLOURS)], edgecolor="black",
                       lw=0.4, zorder=5, label=f"Fold {folds[k]}")
        ax.set_xticks(x, [METRIC_LABELS.get(m, m) for m in metrics], rotation=0)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("Value (bar: mean ± SD)")
        ax.grid(True, axis="y", lw=0.4, color="#e5e5e5", zorder=0)
        if legend_outside:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        else:
            ax.legend(loc="lower left", ncols=min(len(per_fold), 5), frameon=False, fontsize=6.5)
        if title:
            ax.set_title(title)


def panel_figure(
    nums_roc: dict, curves: Sequence[FoldCurve], counts: np.ndarray, per_fold: Sequence[Mapping[str, float]],
    folds: Sequence[int] | None = None,
) -> Figure:
    """The main results as one multi-panel figure with panel letters: A pooled ROC with its band (and the
    physicians), B ROC per fold, C confusion matrix, D metrics per fold.

    ``nums_roc``: the keyword arguments of :func:`draw_roc` (``fpr, tpr, auc, auc_ci, band, readers,
    band_label``).
    """
    with matplotlib.rc_context(_RC):
        fig = _new_figure(7.2, 7.6)
        grid = fig.add_gridspec(2, 2, height_ratios=(1.15, 1.0))
        a, b = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        c, d = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
        draw_roc(a, **nums_roc)
        draw_fold_roc(b, curves)
        draw_confusion(c, counts)
        draw_fold_metrics(d, per_fold, metrics=("accuracy", "recall", "specificity", "auc"), folds=folds,
                          legend_outside=False)
        d.set_xticks(d.get_xticks(), ["Acc.", "Sens.", "Spec.", "AUC"])
        for letter, ax in zip("ABCD", (a, b, c, d), strict=True):
            # Bold capital letters at the top-left corner outside the axes, as journals set them.
            ax.text(-0.16, 1.04, letter, transform=ax.transAxes, fontsize=12, fontweight="bold", va="bottom",
                    ha="left")
    return fig


def save_figure(fig: Figure, out_dir: str | Path, name: str, dpi: int = 300) -> SavedFigure:
    """Write ``fig`` as ``out_dir/name.png`` (``dpi``, default 300) and ``out_dir/name.svg``; folders created."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    with matplotlib.rc_context(_RC):
        fig.savefig(png, dpi=dpi, facecolor="white", metadata={"Software": None})
        fig.savefig(svg, facecolor="white", metadata={"Date": None})
    return SavedFigure(name=name, png=png, svg=svg)
