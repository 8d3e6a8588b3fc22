"""Study reports: one self-contained HTML file and print-resolution figures from a run folder.

``build_report(run_dir, ...)`` is the entry point (``gsscreen report RUN_DIR``); :mod:`gsscreen.report.figures`
holds the figures, :mod:`gsscreen.report.run` the reading of the run folder, :mod:`gsscreen.report.gallery` the
per-fold Grad-CAM and :mod:`gsscreen.report.readers` the physicians' comparison.
"""

from gsscreen.report.gallery import load_fold_model
from gsscreen.report.html import build_report
from gsscreen.report.run import RunData, RunFolderError, load_run

__all__ = ["RunData", "RunFolderError", "build_report", "load_fold_model", "load_run"]
