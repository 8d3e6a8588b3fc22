"""Does the fill outside the photo leak the photo's source? ds-kaggle vs utk-kids, replicated edges vs flat grey.

    .venv/bin/python benchmarks/bench_border.py [--data ../shared/data] [--out runs/bench-border]

An aligned crop keeps forehead and chin in frame, so a tightly cropped photo leaves part of the template empty.
How much depends on the photo's source, and the fill (``AlignConfig.border``) decides what the model sees there.
For each fill this prints the share of every crop that lies outside its photo (per class and set), then fits a
logistic regression on frozen FaceNet embeddings in the study's five subject-grouped folds (C and the Youden
threshold chosen on the validation subset, exactly like the study's baseline) and prints the CV AUC and the share of
utk-kids (children from another source, none used in training) each fold calls GS. The last row adds, per training
photo, one view with random grey bands along its edges (``augment.frame_p``), so the amount of grey no longer
follows the class. Crops come from the alignment cache (both fills are cached separately).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _embed(model, crops, batch: int = 64):  # type: ignore[no-untyped-def]
    """L2-normalised FaceNet embeddings ``(n, 512)`` of uint8 crops ``(n, 3, 160, 160)``."""
    import torch

    out = []
    with torch.inference_mode():
        for s in range(0, len(crops), batch):
            x = crops[s : s + batch].float() / 255
            out.append(torch.nn.functional.normalize(model.body(x).flatten(1), dim=1))
    return torch.cat(out).numpy()


def _framed(crops, seed: int):  # type: ignore[no-untyped-def]
    """One grey-framed view per crop (no other augmentation), uint8 like the input."""
    import torch

    from gsscreen.training.augment import Augmenter
    from gsscreen.training.config import AugmentConfig

    cfg = AugmentConfig(rotation_deg=0.0, crop_scale=(1.0, 1.0), hflip_p=0.0, frame_p=1.0)
    x = Augmenter(cfg)(crops.float() / 255, torch.Generator().manual_seed(seed))
    return (x * 255).round().to(torch.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-border")
    args = ap.parse_args(argv)
    ds, utk = args.data / "ds-kaggle", args.data / "utk-kids"
    if not (ds.is_dir() and utk.is_dir()):
        print(f"skipped: development data not found at {args.data}")
        return 0

    import numpy as np
    import pandas as pd
    import torch

    from gsscreen.cohort import cohort_from_folders, find_images, load_cohort, write_cohort_csv
    from gsscreen.faces.align import AlignConfig
    from gsscreen.faces.pipeline import align_cohort
    from gsscreen.models.registry import create_model
    from gsscreen.training.data import load_crops
    from gsscreen.training.splits import assign_subsets
    from gsscreen.training.study import _baseline_fold

    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "cohort.csv"
    if not csv.is_file():
        write_cohort_csv(cohort_from_folders(ds, gs=("down",), control=("healthy",)), csv)
    # The study's cohort checks: byte-identical copies left out, near-duplicates kept in one subset.
    table = load_cohort(csv, progress=False).ok_table()
    table["image"] = table["image"].astype(str)
    ds_images = [str(p) for p in table["image"]]
    utk_images = [str(p.resolve()) for p in find_images(utk)]
    model = create_model("facenet").eval()
    size = model.spec.input_size
    rows = []
    for border in ("replicate", "grey"):
        t0 = time.perf_counter()
        res = align_cohort(ds_images + utk_images, args.out / border, AlignConfig(border=border), progress=False)
        al = res.aligned.set_index("image")
        ds_ok = [p for p in ds_images if p in al.index]
        utk_ok = [p for p in utk_images if p in al.index]
        sets = {"down": [p for p in ds_ok if "/down/" in p.replace("\\", "/")],
                "healthy": [p for p in ds_ok if "/healthy/" in p.replace("\\", "/")], "utk-kids": utk_ok}
        print(f"\nborder={border}: {len(ds_ok)}/{len(ds_images)} ds-kaggle and {len(utk_ok)}/{len(utk_images)} "
              f"utk-kids photos aligned ({time.perf_counter() - t0:.0f} s)")
        for name, imgs in sets.items():
            share = al.loc[imgs, "outside"].astype(float)
            print(f"  share of the crop outside the photo, {name:9s}: mean {share.mean():.3f}, "
                  f"median {share.median():.3f}, photos with > 1 %: {(share > 0.01).mean():.1%}")
        crops_ds, ok_ds, _ = load_crops([al.loc[p, "crop"] for p in ds_ok], size)
        crops_utk, ok_utk, _ = load_crops([al.loc[p, "crop"] for p in utk_ok], size)
        crops_ds, crops_utk = crops_ds[ok_ds], crops_utk[ok_utk]
        emb = _embed(model, crops_ds)
        emb_utk = _embed(model, crops_utk)
        sub = assign_subsets(table.set_index("image").loc[ds_ok].reset_index(), 5, seed=0)
        y = (sub["label"] == "GS").to_numpy().astype(int)
        subset = sub["subset"].to_numpy()
        variants = [(border, emb, None)]
        if border == "grey":
            variants.append(("grey + framed views", emb, _embed(model, _framed(crops_ds, seed=0))))
        for name, e, extra in variants:
            aucs, fprs = [], []
            for k in range(5):
                te, va = subset == k, subset == (k + 1) % 5
                tr = ~(te | va)
                if extra is None:
                    e_fit, y_fit, tr_fit = e, y, tr
                else:  # training rows twice: the crop and its framed view
                    e_fit = np.concatenate([e, extra[tr]])
                    y_fit = np.concatenate([y, y[tr]])
                    tr_fit = np.concatenate([tr, np.ones(int(tr.sum()), bool)])
                    va = np.concatenate([va, np.zeros(int(tr.sum()), bool)])
                    te = np.concatenate([te, np.zeros(int(tr.sum()), bool)])
                r, _, _, _ = _baseline_fold(e_fit, y_fit, (tr_fit, va, te), {"utk-kids": emb_utk}, "youden", 0)
                aucs.append(r["test"]["auc"])
                fprs.append(r["external"]["utk-kids"]["fpr"])
            rows.append({"fill": name, "cv_auc": f"{statistics.mean(aucs):.4f} ± {statistics.stdev(aucs):.4f}",
                         "utk_fpr": f"{statistics.mean(fprs):.3f} ± {statistics.stdev(fprs):.3f}",
                         "utk_fpr_per_fold": ", ".join(f"{v:.3f}" for v in fprs)})
    print("\nlogistic regression on frozen FaceNet embeddings, 5 folds (mean ± SD over folds):")
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
