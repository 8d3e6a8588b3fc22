"""Where does a call stop being trustworthy? The quality gate's limits, measured on the shipped model.

    .venv/bin/python benchmarks/bench_quality.py [--data ../shared/data] [--holdout HOLDOUT.csv] [--per-class 120]
                                                 [--out runs/bench-quality]

Photos: the shipped demo model's *held-out* ds-kaggle photos (``scripts/train_demo_model.py``'s split, rebuilt here
unless ``--holdout`` names its ``holdout.csv``), ``--per-class`` of each class (seeded sample). Each photo is aligned
and screened at full quality (its "full-quality call"), then degraded two ways and cropped again with the *same*
landmarks (scaled), so the study isolates what the model does with the pixels (the detector failing on a small photo
only adds "no face" outcomes, which are inconclusive anyway):

- **downscaled** so the eyes are 48 … 5 px apart (area averaging, as a phone's small photo would be);
- **blurred** at full size with a Gaussian whose sigma is a fixed fraction of the eye distance (0.03 … 0.20 IOD), so
  the blur is the same on the face whatever the photo's size.

Per level it prints the share of photos still found, the model's AUC (GS vs control) and the agreement of the call
with the full-quality call, with the measured quality numbers (eye distance in px, crop sharpness). Then all degraded
views are pooled and binned by the two *measured* numbers the gate can see on a new photo (eye distance, sharpness):
the chosen limit is the lowest bin edge from which every bin above keeps agreement ≥ ``--agree`` (0.95) and the
views it accepts keep their AUC within ``--auc-drop`` (0.02) of the same photos at full quality. ``--from-views``
redoes this summary from an earlier run's ``views.csv``. The limits go into ``QualityLimits``' defaults by hand
(this script prints them; it changes no code).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
IOD_LEVELS = (48, 32, 24, 20, 16, 12, 8, 5)
BLUR_LEVELS = (0.03, 0.06, 0.10, 0.15, 0.20)  # Gaussian sigma, fraction of the eye distance


def _holdout(data: Path, holdout: Path | None, out: Path):  # type: ignore[no-untyped-def]
    import pandas as pd

    if holdout is None:
        spec = importlib.util.spec_from_file_location("train_demo_model", REPO / "scripts" / "train_demo_model.py")
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        out.mkdir(parents=True, exist_ok=True)
        # the demo model's split: seed 0, likely-same-child threshold 0.80 (scripts/train_demo_model.py defaults)
        _, held, _ = mod.build_split(data, out, seed=0, threshold=0.80)
    else:
        held = pd.read_csv(holdout)
    return held[held["set"] == "ds-kaggle"]


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--holdout", type=Path, default=None)
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--agree", type=float, default=0.95)
    ap.add_argument("--auc-drop", type=float, default=0.02)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-quality")
    ap.add_argument("--borderline-logit", type=float, default=None,
                    help="half-width of the borderline band on the logit scale (default: the pack's; 0 = none)")
    ap.add_argument("--from-views", type=Path, default=None,
                    help="summarise an earlier run's views.csv (no screening)")
    args = ap.parse_args()
    if args.borderline_logit is None:
        from gsscreen.decision import BORDERLINE_LOGIT
        from gsscreen.modelpack import read_model_pack
        from gsscreen.screening import demo_model_path

        args.borderline_logit = float(read_model_pack(demo_model_path()).info.get("borderline_logit",
                                                                                  BORDERLINE_LOGIT))
    if args.from_views is not None:
        import pandas as pd

        from gsscreen.modelpack import read_model_pack
        from gsscreen.screening import demo_model_path

        info = read_model_pack(demo_model_path()).info
        sha = str(info.get("weights_sha256", ""))[:12]
        args.out.mkdir(parents=True, exist_ok=True)
        return summarise(pd.read_csv(args.from_views), float(info["threshold"]), f"{info.get('name')}@{sha}",
                         args, time.perf_counter())
    if not (args.data / "ds-kaggle").is_dir():
        print(f"skipped: {args.data}/ds-kaggle not found")
        return 0
    import cv2
    import pandas as pd

    from gsscreen.faces.align import NoFaceError, warp_face
    from gsscreen.faces.io import load_image_scaled
    from gsscreen.modelpack import load_model_pack
    from gsscreen.screening import demo_model_path

    t_start = time.perf_counter()
    held = _holdout(args.data, args.holdout, args.out)
    rng = np.random.default_rng(0)
    pick = []
    for label in ("GS", "control"):
        rows = held[held["label"] == label]
        pick.append(rows.iloc[rng.permutation(len(rows))[: args.per_class]])
    photos = pd.concat(pick, ignore_index=True)
    model = load_model_pack(demo_model_path())
    thr = model.threshold

    import torch

    from gsscreen.faces.align import LANDMARK_WEIGHTS, align_face, apply_affine, similarity_transform, template
    from gsscreen.faces.quality import crop_sharpness

    cfg = model.align_config
    tmpl = template(cfg)
    records: list[dict] = []
    pending: list[tuple[dict, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        x = torch.from_numpy(np.stack([a for _, a in pending])).permute(0, 3, 1, 2).float().div_(255.0)
        p = model.predict_tensor(x).mean(axis=1)
        for (rec, _), v in zip(pending, p, strict=True):
            rec["p_gs"] = float(v)
        pending.clear()

    def run(img: np.ndarray, lm: np.ndarray, rec: dict) -> None:
        m = similarity_transform(lm, tmpl, LANDMARK_WEIGHTS)
        crop = warp_face(img, m, cfg.size, cfg.border)
        rec["iod_px"] = float(np.hypot(*(lm[1] - lm[0])))
        rec["sharpness"] = crop_sharpness(crop, apply_affine(m, lm))
        rec["found"] = True
        records.append(rec)
        pending.append((rec, model.model_input(crop)))
        if len(pending) >= 32:
            flush()

    for i, row in photos.iterrows():
        img, _ = load_image_scaled(row["image"], model.decode_max_side)
        y = int(row["label"] == "GS")
        base = {"photo": i, "y": y}
        try:
            face = align_face(img, cfg)
        except NoFaceError:
            records.append({**base, "kind": "full", "level": 0.0, "found": False, "p_gs": np.nan})
            continue
        lm = face.source_landmarks.astype(np.float64)
        run(img, lm, {**base, "kind": "full", "level": 0.0})
        iod0 = float(np.hypot(*(lm[1] - lm[0])))
        for t in IOD_LEVELS:
            if t >= iod0:
                continue
            s = t / iod0
            small = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                               interpolation=cv2.INTER_AREA)
            sx, sy = small.shape[1] / img.shape[1], small.shape[0] / img.shape[0]
            lm_s = (lm + 0.5) * np.array([sx, sy]) - 0.5  # cv2.resize's pixel-centre convention
            run(small, lm_s, {**base, "kind": "downscaled", "level": float(t)})
        for k in BLUR_LEVELS:
            run(cv2.GaussianBlur(img, (0, 0), k * iod0), lm, {**base, "kind": "blurred", "level": k})
        if (len(set(r["photo"] for r in records))) % 10 == 0:
            print(f"  {i + 1}/{len(photos)} photos, {time.perf_counter() - t_start:.0f} s", file=sys.stderr, flush=True)
    flush()
    df = pd.DataFrame(records)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "views.csv", index=False)
    return summarise(df, thr, model.model_id, args, t_start)


def summarise(df, thr: float, model_id: str, args: argparse.Namespace, t_start: float) -> int:  # type: ignore[no-untyped-def]
    """Print the tables and the chosen limits from the screened views (``views.csv``)."""
    import pandas as pd

    full = df[(df["kind"] == "full") & df["found"]].set_index("photo")
    df["call0"] = df["photo"].map(full["p_gs"] >= thr)
    df["p0"] = df["photo"].map(full["p_gs"])
    df = df[df["photo"].isin(full.index)]
    # A view "agrees" unless it makes a confident call that differs from the full-quality photo's outcome: the
    # screen shows a P(GS) within the borderline band (logit scale) as inconclusive, which is safe, and a photo whose
    # full-quality P(GS) is itself borderline has no call a degraded view could keep. With a band of 0 this is
    # plain call agreement.
    band = float(getattr(args, "borderline_logit", 0.0) or 0.0)

    def _lg(p: pd.Series) -> np.ndarray:
        q = np.clip(p.to_numpy(float), 1e-9, 1 - 1e-9)
        return np.log(q / (1 - q))

    lt = float(np.log(thr / (1 - thr)))
    df["decided0"] = df["photo"].map(pd.Series(np.abs(_lg(full["p_gs"]) - lt) >= band, index=full.index))
    decided = np.abs(_lg(df["p_gs"].fillna(thr)) - lt) >= band
    df["agree"] = ~decided | (df["decided0"].astype(bool) & ((df["p_gs"] >= thr) == df["call0"]))
    auc0 = _auc(full["y"].to_numpy(), full["p_gs"].to_numpy())
    print(f"\nshipped model {model_id}, threshold {thr:.4f}, borderline band ±{band:g} logit; {len(full)} held-out "
          f"ds-kaggle photos ({int(full['y'].sum())} GS) found at full quality; AUC there {auc0:.3f}")
    print(f"full-quality eye distance: median {full['iod_px'].median():.0f} px; "
          f"sharpness median {full['sharpness'].median():.2f} (5th pct {full['sharpness'].quantile(0.05):.2f})\n")

    def summary(g: pd.DataFrame) -> dict:
        f = g[g["found"]]
        return {"n": len(g), "found": len(f) / max(len(g), 1), "auc": _auc(f["y"].to_numpy(), f["p_gs"].to_numpy()),
                "agree": float(f["agree"].mean()) if len(f) else float("nan"),
                "iod_px": float(f["iod_px"].median()) if len(f) else float("nan"),
                "sharpness": float(f["sharpness"].median()) if len(f) else float("nan")}

    lines = ["| degradation | level | n | face found | AUC | agrees with full-quality call | median IOD px | "
             "median sharpness |", "|---|---|---|---|---|---|---|---|"]
    for kind, unit in (("downscaled", "eyes {:g} px apart"), ("blurred", "sigma {:g} IOD")):
        for lvl, g in df[df["kind"] == kind].groupby("level", sort=False):
            s = summary(g)
            lines.append(f"| {kind} | {unit.format(lvl)} | {s['n']} | {s['found']:.2f} | {s['auc']:.3f} | "
                         f"{s['agree']:.3f} | {s['iod_px']:.1f} | {s['sharpness']:.2f} |")
    print("\n".join(lines))

    # Limits from what the gate can measure on a new photo: pool every degraded view, bin by the measure.
    deg = df[(df["kind"] != "full") & df["found"]].copy()

    def limit(col: str, edges: list[float], other: pd.Series) -> tuple[float, list[str]]:
        # Walk from the best bin down. A limit is acceptable when every bin from it upwards keeps the call
        # (agreement >= --agree) and all the views it accepts together keep the AUC: at most --auc-drop below the
        # AUC of the *same photos* at full quality (paired). A bin's own AUC is not used: a bin of a measured
        # quantity holds whichever photos landed there, so its class mix (and with ~50 photos its AUC) is noise.
        out, chosen = [], None
        ok_above = True
        for lo, hi in zip(edges[-2::-1], edges[:0:-1], strict=True):
            g = deg[(deg[col] >= lo) & (deg[col] < hi) & other]
            acc = deg[(deg[col] >= lo) & other]
            cum_auc = _auc(acc["y"].to_numpy(), acc["p_gs"].to_numpy())
            cum_drop = _auc(acc["y"].to_numpy(), acc["p0"].to_numpy()) - cum_auc
            if len(g) < 20:
                out.append(f"| {col} | {lo:g}–{hi:g} | {len(g)} | – | – | {cum_auc:.3f} | {cum_drop:+.3f} |")
                continue
            auc, agree = _auc(g["y"].to_numpy(), g["p_gs"].to_numpy()), float(g["agree"].mean())
            ok_above = ok_above and agree >= args.agree and cum_drop <= args.auc_drop
            if ok_above:
                chosen = lo
            out.append(f"| {col} | {lo:g}–{hi:g} | {len(g)} | {auc:.3f} | {agree:.3f} | {cum_auc:.3f} | "
                       f"{cum_drop:+.3f} |{' ✓' if ok_above else ''}")
        return (chosen if chosen is not None else edges[-1]), out

    print("\npooled degraded views, binned by the measured number (other measure within its limit):")
    print("| measure | bin | n | AUC in bin | agreement in bin | AUC of all views >= bin | its drop vs the same "
          "photos at full quality | |\n|---|---|---|---|---|---|---|---|")
    iod_edges = [0, 5, 8, 12, 16, 20, 24, 32, 48, 1e9]
    # eye distance judged on views that were only downscaled (blur is the other limit's job)
    min_iod, rows_iod = limit("iod_px", iod_edges, deg["kind"] == "downscaled")
    print("\n".join(rows_iod))
    sharp_edges = [0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.3, 1e9]
    min_sharp, rows_sh = limit("sharpness", sharp_edges, deg["iod_px"] >= min_iod)
    print("\n".join(rows_sh))
    chosen = {"min_iod_px": min_iod, "min_sharpness": min_sharp}
    print(f"\nchosen limits (agreement >= {args.agree} in every accepted bin, AUC of the accepted views within "
          f"{args.auc_drop} of the same photos at full quality): {chosen}")
    # how many full-quality held-out photos the chosen limits would refuse
    refused = ((full["iod_px"] < min_iod) | (full["sharpness"] < min_sharp)).mean()
    print(f"share of full-quality held-out photos these limits refuse: {refused:.3f}")
    (args.out / "table.md").write_text("\n".join(lines) + "\n\n" + "\n".join(rows_iod + rows_sh) + "\n",
                                       encoding="utf-8")
    (args.out / "limits.json").write_text(json.dumps({**chosen, "auc_full": auc0, "n_photos": len(full),
                                                      "refused_full_quality": refused}, indent=2) + "\n")
    print(f"({time.perf_counter() - t_start:.0f} s; views in {args.out}/views.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
