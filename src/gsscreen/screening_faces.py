"""``gsscreen screen --face all``: every face of every photo screened as its own row.

A photo of several children is not one screening: each face passes the quality gate on its own and gets its own
P(GS), outcome and heatmap. Rows are numbered by ``face`` (1 = the largest, then the detector's order), the same
numbers drawn on ``heatmaps/<stem>_faces.png`` (every face boxed on the photo). One photo after another, in this
process (the batched, resumable pipeline of :mod:`gsscreen.screening_pipeline` screens one face per photo).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from gsscreen.screening import ScreenConfig, ScreeningModel


def screen_each_face(model: ScreeningModel, cfg: ScreenConfig, progress: bool = True) -> pd.DataFrame:
    """Screen every face of ``cfg.inputs`` into ``cfg.out_dir``: ``results.csv`` (columns ``file``, ``face`` and
    :data:`~gsscreen.screening.RESULT_COLUMNS`), ``results.json``, ``heatmaps/<stem>_face<n>_gradcam.png`` and
    ``heatmaps/<stem>_faces.png``. Returns the table."""
    import pandas as pd
    from PIL import Image
    from tqdm.auto import tqdm

    from gsscreen.config import save_config
    from gsscreen.explain import unique_stem
    from gsscreen.faces.io import ImageError, load_image_scaled
    from gsscreen.screening import DISCLAIMER, RESULT_COLUMNS, expand_inputs
    from gsscreen.screening_pipeline import _row

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.json")
    files, bad_inputs = expand_inputs(cfg.inputs)
    rows: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    used: set[str] = set()
    hm_dir = out / "heatmaps"
    for f in tqdm(files, desc="screening", unit="photo", disable=not progress or len(files) < 2):
        t0 = time.perf_counter()
        try:
            img, factor = load_image_scaled(f, model.decode_max_side)
            results = model.screen_faces(img, age_months=cfg.age_months, heatmap=cfg.heatmap, file=f, scale=factor,
                                         regions=cfg.regions)
        except ImageError as exc:
            results = [model._empty(f, exc.reason, "unreadable", t0)]
        except Exception as exc:  # one photo never stops the batch: its row says what happened
            results = [model._empty(f, f"{type(exc).__name__}: {exc}", "unreadable", t0)]
        stem = unique_stem(Path(f).stem or "photo", used)
        if results[0].faces_overlay is not None and cfg.heatmap:
            hm_dir.mkdir(exist_ok=True)
            Image.fromarray(results[0].faces_overlay).save(hm_dir / f"{stem}_faces.png")
        for n, res in enumerate(results, start=1):
            hm = ""
            if res.overlay is not None:
                hm_dir.mkdir(exist_ok=True)
                p = hm_dir / f"{stem}_face{n}_gradcam.png"
                Image.fromarray(res.overlay).save(p)
                hm = str(p.relative_to(out))
            rows.append({"face": n if res.p_gs is not None else None, **_row(res, hm)})
            details.append({**res.to_dict(), "face_number": n, "heatmap": hm})
    for e, prob in bad_inputs:
        rows.insert(0, {"file": e, "outcome": "inconclusive", "reasons": "unreadable", "flags": "unreadable",
                        "problem": prob, "threshold": model.threshold})
    cols = ["file", "face", *(c for c in RESULT_COLUMNS if c != "file")]
    table = pd.DataFrame(rows, columns=cols)
    table.to_csv(out / "results.csv", index=False)
    payload = {"model": model.summary(), "disclaimer": DISCLAIMER, "results": details,
               "input_problems": [{"input": e, "problem": p} for e, p in bad_inputs]}
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return table


__all__ = ["screen_each_face"]
