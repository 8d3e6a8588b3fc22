"""The quality-limit benchmark's agreement rule: a view inside the borderline band is inconclusive, not a
disagreement."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_quality", REPO / "benchmarks" / "bench_quality.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _views() -> pd.DataFrame:
    """40 photos (20 GS) at full quality far from the threshold 0.5, each with one blurred view per sharpness bin;
    the views at sharpness 0.45 all sit just across the threshold (P 0.45 / 0.55: inside a ±0.36 logit band)."""
    rows = []
    for i in range(40):
        y = int(i < 20)
        p0 = 0.95 if y else 0.05
        rows.append({"photo": f"p{i}", "kind": "full", "level": 0.0, "found": True, "p_gs": p0, "y": y,
                     "iod_px": 80.0, "sharpness": 1.1})
        # one downscaled view that keeps its call, so the eye-distance limit (24 px) leaves the blurred views in
        rows.append({"photo": f"p{i}", "kind": "downscaled", "level": 30.0, "found": True, "p_gs": p0, "y": y,
                     "iod_px": 30.0, "sharpness": 1.1})
        for sharp in (0.45, 0.75, 1.1):
            p = (0.45 if y else 0.55) if sharp == 0.45 else p0
            rows.append({"photo": f"p{i}", "kind": "blurred", "level": sharp, "found": True, "p_gs": p, "y": y,
                         "iod_px": 80.0, "sharpness": sharp})
    return pd.DataFrame(rows)


def _run(tmp_path: Path, band: float) -> dict:
    args = argparse.Namespace(agree=0.95, auc_drop=0.5, out=tmp_path / f"b{band}", borderline_logit=band)
    args.out.mkdir()
    _bench().summarise(_views(), 0.5, "test@0", args, 0.0)
    return json.loads((args.out / "limits.json").read_text())


def test_views_inside_the_borderline_band_are_not_disagreements(tmp_path: Path) -> None:
    # without a band every view at sharpness 0.45 flips its call: the limit stops at the next populated bin above
    assert _run(tmp_path, 0.0)["min_sharpness"] == 0.7
    # with the screen's band those views are inconclusive, so the bin keeps agreement and the limit goes below it
    assert _run(tmp_path, 0.36)["min_sharpness"] == 0.4
    assert np.isclose(abs(np.log(0.55 / 0.45)), 0.2007, atol=1e-3)  # inside ±0.36
