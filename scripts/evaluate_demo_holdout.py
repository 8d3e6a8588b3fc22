"""External validation of the shipped demo pack on its whole identity-grouped hold-out, end to end.

The demo pack (``scripts/train_demo_model.py``) was trained on part of ds-kaggle + utk-kids; the rest was held out by
child (``clusters.csv``, column ``side``: ``held``). This script

1. writes the hold-out as a cohort CSV (``image, label, syndrome, age_months, sex, photo_set``; UTKFace age and sex
   come from its file names, ds-kaggle has none);
2. runs ``gsscreen evaluate PACK COHORT -o OUT/eval --same-child --subgroup photo_set`` (the CLI, as a user would:
   decode, detect, align, quality gate, the pack's calibrated P(GS) and operating point);
3. compares the result with the model card's hold-out numbers, recomputed the same way from the card's own
   per-photo predictions when ``--card-predictions`` is given (same photos, same pack: they should agree; the
   photos the quality gate refuses are the expected difference), and writes ``OUT/compare.json``;
4. takes the report's screenshot (``scripts/make_evaluate_screenshot.py``: numeric sections only, every photo
   thumbnail hidden), unless ``--no-screenshot``.

The photos never leave ``OUT`` (outside the repository); only the screenshot, which shows no face, goes to ``docs/``.
Re-run it after replacing the pack; it takes a few minutes on a laptop CPU (alignment of ~875 photos dominates).

    .venv/bin/python scripts/evaluate_demo_holdout.py --split RUN/clusters.csv --out /tmp/demo-holdout \\
        [--pack src/gsscreen/assets/demo_model.gss] [--card-predictions RUN/holdout_predictions.csv] \\
        [--shot docs/evaluate_report.png] [--workers 1] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
UTK_SEX = {"0": "male", "1": "female"}  # UTKFace file names: AGE_SEX_RACE_DATE, SEX 0 = male, 1 = female


def holdout_cohort(split: Path, data_root: Path | None = None) -> pd.DataFrame:
    """The held-out rows of a demo run's ``clusters.csv`` as a cohort table.

    ``photo_set`` is the folder the photo came from (``ds-kaggle`` / ``utk-kids``); ``age_months`` and ``sex`` are
    read from UTKFace file names (``AGE_SEX_...``), left empty elsewhere. ``data_root`` re-roots the image paths
    (``.../ds-kaggle/...`` -> ``data_root/ds-kaggle/...``) when the photos moved.
    """
    t = pd.read_csv(split)
    missing = {"image", "label", "side"} - set(t.columns)
    if missing:
        raise SystemExit(f"{split}: not a demo run's clusters.csv (missing columns {sorted(missing)})")
    held = t[t["side"] == "held"].reset_index(drop=True)
    if held.empty:
        raise SystemExit(f"{split}: no rows with side == 'held'")
    rows = []
    for img, label, syn in zip(held["image"], held["label"], held.get("syndrome", pd.Series([None] * len(held))),
                               strict=True):
        p = Path(str(img))
        parts = p.parts
        photo_set = next((s for s in ("ds-kaggle", "utk-kids") if s in parts), p.parent.name)
        if data_root is not None and photo_set in parts:
            p = data_root.joinpath(*parts[parts.index(photo_set):])
        age, sex = None, None
        if photo_set == "utk-kids":
            f = p.name.split("_")
            if len(f) >= 3 and f[0].isdigit():
                age, sex = int(f[0]) * 12, UTK_SEX.get(f[1])
        rows.append({"image": str(p), "label": label, "syndrome": syn if isinstance(syn, str) else "",
                     "age_months": age, "sex": sex, "photo_set": photo_set})
    return pd.DataFrame(rows)


def headline(frame: pd.DataFrame, threshold: float) -> dict[str, float | int | list[float] | None]:
    """The card's hold-out numbers from per-photo predictions (``photo_set``, ``label``, ``p_gs``).

    ds-kaggle: n, AUC with its DeLong CI, sensitivity / specificity / accuracy at ``threshold``, sensitivity at
    specificity 0.95; utk-kids: n and the share called GS.
    """
    from gsscreen.evaluation.roc import auc_ci_delong, sensitivity_at_specificity

    out: dict[str, float | int | list[float] | None] = {}
    k = frame[frame["photo_set"] == "ds-kaggle"]
    if len(k):
        y = (k["label"] == "GS").to_numpy(int)
        p = k["p_gs"].to_numpy(float)
        call = p >= threshold
        out["kaggle_n"], out["kaggle_n_gs"] = len(k), int(y.sum())
        if 0 < y.sum() < len(y):
            ci = auc_ci_delong(y, p)
            out["kaggle_auc"], out["kaggle_auc_ci"] = float(ci.auc), [float(ci.lo), float(ci.hi)]
            out["kaggle_sens_at_spec_0.95"] = float(sensitivity_at_specificity(y, p, [0.95])[0])
        out["kaggle_sensitivity"] = float(call[y == 1].mean()) if y.sum() else None
        out["kaggle_specificity"] = float((~call[y == 0]).mean()) if (y == 0).any() else None
        out["kaggle_accuracy"] = float((call == (y == 1)).mean())
        out["kaggle_missed_gs"] = int((~call[y == 1]).sum())
    u = frame[frame["photo_set"] == "utk-kids"]
    if len(u):
        called = u["p_gs"].to_numpy(float) >= threshold
        out["utk_n"], out["utk_called_gs"], out["utk_fpr"] = len(u), int(called.sum()), float(called.mean())
    return out


def compare(eval_dir: Path, cohort: pd.DataFrame, card_predictions: Path | None) -> dict:
    """Evaluate's numbers next to the card's (recomputed from its per-photo predictions), on all photos and on the
    photos both scored, plus the per-photo P(GS) difference."""
    preds = pd.read_csv(eval_dir / "predictions.csv")
    cfg = json.loads((eval_dir / "config.json").read_text())["evaluation"]
    thr = float(cfg["threshold"])
    src = json.loads((eval_dir / "cohort_source.json").read_text())["cohort_csv"]
    base = Path(src).parent if src else eval_dir
    preds["image"] = [str((base / p).resolve()) if not Path(p).is_absolute() else p for p in preds["photo"]]
    ev = preds.merge(cohort[["image", "photo_set"]], on="image", how="left", suffixes=("_pred", ""))
    if "photo_set_pred" in ev:
        ev = ev.drop(columns=["photo_set_pred"])
    fails = pd.read_csv(eval_dir / "failures.csv")
    result: dict = {"threshold": thr, "model_id": cfg.get("model_id"), "n_cohort": len(cohort),
                    "n_scored": len(ev), "n_left_out": len(fails),
                    "left_out_by_stage": fails["stage"].value_counts().to_dict() if len(fails) else {},
                    "evaluate": headline(ev, thr)}
    if card_predictions is not None and card_predictions.is_file():
        card = pd.read_csv(card_predictions)
        card = card[card["p_gs"].notna()].copy()
        card["photo_set"] = card["set"].map(lambda s: "ds-kaggle" if "kaggle" in str(s) else "utk-kids")
        result["card_all"] = headline(card, thr)
        both = ev.merge(card[["image", "p_gs"]], on="image", suffixes=("", "_card"))
        result["card_same_photos"] = headline(both.assign(p_gs=both["p_gs_card"]), thr)
        result["evaluate_same_photos"] = headline(both, thr)
        d = (both["p_gs"] - both["p_gs_card"]).abs()
        result["per_photo"] = {
            "n_both": len(both), "max_abs_diff_p_gs": float(d.max()) if len(d) else None,
            "median_abs_diff_p_gs": float(d.median()) if len(d) else None,
            "n_diff_gt_0.01": int((d > 0.01).sum()),
            "calls_differ": int(((both["p_gs"] >= thr) != (both["p_gs_card"] >= thr)).sum()),
            "card_scored_not_evaluated": int(len(card) - len(both)),
        }
    return result


def _fmt(h: dict) -> str:
    def f(key: str, spec: str = ".3f") -> str:
        v = h.get(key)
        return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)

    ci = h.get("kaggle_auc_ci")
    ci_s = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "n/a"
    return (f"Kaggle n={h.get('kaggle_n')} ({h.get('kaggle_n_gs')} GS): AUC {f('kaggle_auc')} (DeLong {ci_s}), "
            f"sens {f('kaggle_sensitivity')}, spec {f('kaggle_specificity')}, acc {f('kaggle_accuracy')}, "
            f"sens@spec0.95 {f('kaggle_sens_at_spec_0.95')}, missed {h.get('kaggle_missed_gs')}; "
            f"UTK n={h.get('utk_n')}: called GS {h.get('utk_called_gs')} ({f('utk_fpr', '.1%')})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", type=Path, required=True, help="the demo run's clusters.csv (column side: held)")
    ap.add_argument("--out", type=Path, required=True, help="output folder (outside the repository)")
    ap.add_argument("--pack", type=Path, default=REPO / "src" / "gsscreen" / "assets" / "demo_model.gss")
    ap.add_argument("--card-predictions", type=Path, default=None,
                    help="the card's per-photo hold-out predictions (train_demo_model's holdout_predictions.csv)")
    ap.add_argument("--data", type=Path, default=None, help="re-root the photo paths here (default: as written)")
    ap.add_argument("--shot", type=Path, default=REPO / "docs" / "evaluate_report.png")
    ap.add_argument("--no-screenshot", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=0, help="first N photos per photo set only (a quick check)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    cohort = holdout_cohort(args.split, args.data)
    if args.limit:
        cohort = cohort.groupby("photo_set", group_keys=False).head(args.limit).reset_index(drop=True)
    csv = args.out / "cohort.csv"
    cohort.to_csv(csv, index=False)
    print(f"hold-out cohort: {len(cohort)} photos "
          + ", ".join(f"{k} {v}" for k, v in cohort["photo_set"].value_counts().items()) + f" -> {csv}")
    eval_dir = args.out / "eval"
    cmd = [sys.executable, "-m", "gsscreen", "evaluate", str(args.pack), str(csv), "-o", str(eval_dir),
           "--same-child", "--subgroup", "photo_set", "--workers", str(args.workers), "--n-boot", str(args.n_boot),
           "--quiet"]
    print("$", " ".join(cmd), flush=True)
    t1 = time.perf_counter()
    subprocess.run(cmd, check=True)
    t_eval = time.perf_counter() - t1
    res = compare(eval_dir, cohort, args.card_predictions)
    res["evaluate_seconds"] = round(t_eval, 1)
    print(f"\nmodel {res['model_id']}, threshold {res['threshold']:.4f}; {res['n_scored']} of {res['n_cohort']} "
          f"photos scored, {res['n_left_out']} left out {res['left_out_by_stage']}")
    print("evaluate (all scored):    ", _fmt(res["evaluate"]))
    if "card_all" in res:
        print("card (all it scored):     ", _fmt(res["card_all"]))
        print("card (photos both scored):", _fmt(res["card_same_photos"]))
        print("evaluate (same photos):   ", _fmt(res["evaluate_same_photos"]))
        print("per photo:", json.dumps(res["per_photo"]))
    if not args.no_screenshot:
        t2 = time.perf_counter()
        subprocess.run([sys.executable, str(REPO / "scripts" / "make_evaluate_screenshot.py"), str(eval_dir),
                        "-o", str(args.shot)], check=True)
        res["screenshot_seconds"] = round(time.perf_counter() - t2, 1)
    res["total_seconds"] = round(time.perf_counter() - t0, 1)
    (args.out / "compare.json").write_text(json.dumps(res, indent=2, default=float))
    print(f"report: {eval_dir / 'report' / 'report.html'}; comparison: {args.out / 'compare.json'}; "
          f"total {res['total_seconds'] / 60:.1f} min (evaluate {t_eval / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
