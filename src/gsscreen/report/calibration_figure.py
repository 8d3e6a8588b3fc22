"""Reliability diagram: does P(GS) = 0.8 mean that 8 of 10 such children carry a syndrome?

Built without pyplot like every report figure (see :mod:`gsscreen.report.figures`); save it with
:func:`gsscreen.report.figures.save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from gsscreen.evaluation.calibration import brier_score, reliability_table
from gsscreen.report.figures import PALETTE, _new_figure

#: one colour and marker per curve, in order (Okabe–Ito; shapes differ too, for greyscale prints)
_STYLES = ((PALETTE["vermillion"], "o"), (PALETTE["blue"], "s"), (PALETTE["green"], "^"), (PALETTE["purple"], "D"))


def reliability_figure(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    n_bins: int = 10,
    strategy: str = "quantile",
    title: str | None = "Reliability of P(GS)",
) -> Figure:
    """Observed GS rate against mean P(GS) per bin, one curve per entry of ``curves``, with 95 % Wilson bars.

    Args:
        curves: label → ``(y, p)``: outcomes ``(n,)`` 0/1 and probabilities ``(n,)`` (e.g. "before calibration",
            "after calibration" on the same held-out photos). The legend gives each curve's Brier score.
        n_bins, strategy: binning of :func:`gsscreen.evaluation.calibration.reliability_table`.

    The lower panel shows how many photos fall at each P(GS) (a bin with few photos has a wide interval).
    """
    if not curves:
        raise ValueError("reliability_figure needs at least one (y, p) curve")
    fig = _new_figure(3.6, 4.4)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], ls="--", lw=0.8, color=PALETTE["grey"], label="Perfect calibration", zorder=1)
    edges = np.linspace(0, 1, 21)
    for i, (label, (y, p)) in enumerate(curves.items()):
        colour, marker = _STYLES[i % len(_STYLES)]
        t = reliability_table(y, p, n_bins=n_bins, strategy=strategy)
        err = np.vstack([t["observed"] - t["ci_low"], t["ci_high"] - t["observed"]]).clip(min=0)
        top.errorbar(t["mean_p"], t["observed"], yerr=err, color=colour, marker=marker, ms=3.5, lw=1.1,
                     elinewidth=0.7, capsize=1.5, label=f"{label} (Brier {brier_score(y, p):.3f})", zorder=3)
        bottom.hist(np.asarray(p, float), bins=edges, histtype="step", color=colour, lw=1.0)
    top.set_xlim(-0.01, 1.01)
    top.set_ylim(-0.01, 1.01)
    top.set_ylabel("Observed fraction GS")
    top.grid(True, lw=0.4, color="#e5e5e5", zorder=0)
    top.legend(loc="lower right", frameon=False)
    if title:
        top.set_title(title)
    bottom.set_xlabel("Predicted P(GS)")
    bottom.set_ylabel("Photos")
    return fig


__all__ = ["reliability_figure"]
