"""Which demo model generalises? Variants side by side on the identity-grouped hold-out and held-out utk-kids.

    nice -n 10 .venv/bin/python benchmarks/bench_generalise.py --run /work/artifacts/model/demo_run \\
        [--runs RUN2 RUN3 ...] [--features /work/artifacts/model] [--out /work/artifacts/model/bench_generalise]

Reads the split that ``scripts/train_demo_model.py`` wrote into its run folder (``clusters.csv``: every photo's
likely-same-child cluster and side; no cluster on both sides) and the per-crop face descriptors of
``benchmarks/generalise_features.py`` (FaceNet body output; dlib's 128-d ResNet descriptor and the mirror-image
FaceNet output when those passes have run). Every variant trains on the training side only (ds-kaggle training
subsets + one half of utk-kids as controls unless it says otherwise), picks its regularisation and its threshold
from out-of-fold predictions of a 5-fold cluster-grouped CV on the training side (Youden, like the study), and is
measured once on the held-out side:

- hold-out AUC and sensitivity at specificity 0.95 (from the hold-out ROC, no threshold needed);
- the share of held-out utk-kids children called GS at the variant's own threshold;
- CPU seconds to fit and predict (descriptors already computed; computing them costs the same for all
  FaceNet variants, see generalise_features.py).

Study variants (``scripts/train_demo_model.py --split-from RUN``: flip TTA, fine-tuned FaceNet stages, augmented
views, one fold or five) are rows read from their run folders' ``holdout_predictions.csv`` (P(GS) on the pack's own
scale, the pack's threshold) and ``holdout_metrics.json``; the row whose weights are the shipped pack's is marked.
Every row is measured on the same held-out photos: those every listed run scored and every descriptor covers.
Variants whose descriptors are missing are listed as skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def load_descriptors(features: Path, crops: list[str | float]) -> dict[str, np.ndarray]:
    """Per photo (rows of ``crops``): ``facenet`` (L2-normalised), ``facenet_flip``, ``dlib``; NaN rows = missing."""
    import hashlib

    folder = features / "features_grey"
    keys = [hashlib.sha1(Path(c).read_bytes()).hexdigest() if isinstance(c, str) and Path(c).is_file() else ""
            for c in crops]
    out = {}
    for name in ("facenet", "facenet_flip", "dlib"):
        store: dict[str, np.ndarray] = {}
        for part in sorted(folder.glob(f"{name}-*.npz")):
            d = np.load(part)
            store.update(zip(d["key"].tolist(), d["x"], strict=True))
        if not store:
            continue
        dim = len(next(iter(store.values())))
        x = np.full((len(keys), dim), np.nan, dtype=np.float32)
        for i, k in enumerate(keys):
            if k in store:
                x[i] = store[k]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[name] = x
    return out


def _oof(fit: Callable, x: np.ndarray, y: np.ndarray, groups: np.ndarray, w: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    p = np.zeros(len(y))
    for tr, te in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(x, y, groups):
        p[te] = fit(x[tr], y[tr], w[tr])(x[te])
    return p


def youden(y: np.ndarray, p: np.ndarray) -> float:
    from gsscreen.evaluation.metrics import choose_threshold

    return float(choose_threshold(y, p, "youden"))


def logreg(c: float) -> Callable:
    def fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        m = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        m.fit(x, y, logisticregression__sample_weight=w)
        return lambda z: m.predict_proba(z)[:, 1]

    return fit


def mlp(alpha: float) -> Callable:
    def fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # sample weights: MLPClassifier has none; repeat weighted rows instead (weights here are 1 or 3).
        reps = np.maximum(np.rint(w).astype(int), 1)
        m = make_pipeline(StandardScaler(), MLPClassifier((256,), alpha=alpha, early_stopping=True, max_iter=300,
                                                          random_state=0))
        m.fit(np.repeat(x, reps, axis=0), np.repeat(y, reps))
        return lambda z: m.predict_proba(z)[:, 1]

    return fit


def evaluate(name: str, make: Callable[[float], Callable], grid: list[float], feats: Callable[[np.ndarray], np.ndarray],
             test_feats: Callable[[np.ndarray], list[np.ndarray]], t: pd.DataFrame, seed: int,
             train_mask: np.ndarray, weight: np.ndarray) -> dict:
    """Fit on ``train_mask`` rows (C from OOF AUC, threshold from OOF Youden); score the held-out rows."""
    from sklearn.metrics import roc_auc_score

    from gsscreen.evaluation.roc import sensitivity_at_specificity

    c0 = time.process_time()
    tr = np.flatnonzero(train_mask)
    y = t["y"].to_numpy()
    x_tr, y_tr, g_tr, w_tr = feats(tr), y[tr], t["identity_cluster"].to_numpy()[tr], weight[tr]
    best = None
    for c in grid:
        p = _oof(make(c), x_tr, y_tr, g_tr, w_tr, seed)
        auc = roc_auc_score(y_tr, p)
        if best is None or auc > best[0]:
            best = (auc, c, p)
    assert best is not None
    thr = youden(y_tr, best[2])
    model = make(best[1])(x_tr, y_tr, w_tr)
    he = np.flatnonzero(t["side"].eq("held").to_numpy())
    p_he = np.mean([model(v) for v in test_feats(he)], axis=0)
    cpu = time.process_time() - c0
    ds = t["source"].to_numpy()[he] == "ds-kaggle"
    y_he = y[he][ds]
    sens95 = float(sensitivity_at_specificity(y_he, p_he[ds], [0.95])[0])
    return {"variant": name, "n_kaggle": int(ds.sum()), "n_utk": int((~ds).sum()),
            "holdout_auc": float(roc_auc_score(y_he, p_he[ds])), "sens_at_spec_0.95": sens95,
            "sens_at_threshold": float((p_he[ds][y_he == 1] >= thr).mean()),
            "spec_at_threshold": float((p_he[ds][y_he == 0] < thr).mean()),
            "utk_fpr": float((p_he[~ds] >= thr).mean()), "cpu_s": cpu, "C": best[1], "oof_auc": float(best[0])}


def run_row(pred: pd.DataFrame, common: set[str], threshold: float) -> dict:
    """A training run's hold-out row from its ``holdout_predictions.csv`` (P(GS) on the pack's own scale), on the
    photos in ``common`` only, at the pack's ``threshold``."""
    from sklearn.metrics import roc_auc_score

    from gsscreen.evaluation.roc import sensitivity_at_specificity

    h = pred[pred["image"].isin(common) & pred["p_gs"].notna()]
    ds = h[h["set"] == "ds-kaggle"]
    y, p = ds["label"].eq("GS").to_numpy(int), ds["p_gs"].to_numpy(float)
    u = h.loc[h["set"] == "utk-kids", "p_gs"].to_numpy(float)
    return {"n_kaggle": len(ds), "n_utk": len(u), "holdout_auc": float(roc_auc_score(y, p)),
            "sens_at_spec_0.95": float(sensitivity_at_specificity(y, p, [0.95])[0]),
            "sens_at_threshold": float((p[y == 1] >= threshold).mean()),
            "spec_at_threshold": float((p[y == 0] < threshold).mean()), "utk_fpr": float((u >= threshold).mean())}


def study_wall_s(run: Path) -> float:
    """Wall seconds between the first and last line of ``RUN/study/study.log`` (runs from before the training script
    recorded its CPU time); NaN without the log."""
    import datetime as dt

    log = run / "study" / "study.log"
    if not log.is_file():
        return float("nan")
    stamps = [ln[:23] for ln in log.read_text(errors="replace").splitlines() if ln[:4].isdigit()]
    t = [dt.datetime.strptime(x, "%Y-%m-%d %H:%M:%S,%f") for x in (stamps[0], stamps[-1])] if stamps else []
    return (t[1] - t[0]).total_seconds() if t else float("nan")


def _pack_identity(pack: Path) -> tuple | None:
    import zipfile

    if not pack.is_file():
        return None
    with zipfile.ZipFile(pack) as z:
        info = json.loads(z.read("model.json"))
    # Same weights can be used with or without mirror averaging, under another calibration or threshold.
    return tuple(json.dumps(info.get(k), sort_keys=True) for k in ("weights_sha256", "tta_flip", "threshold",
                                                                   "calibration"))


def is_shipped(run: Path) -> bool:
    """True when the run's measured pack is the shipped demo pack: same weights, mirror averaging, calibration and
    threshold (signing adds a file, so the bytes differ)."""
    ident = _pack_identity(run / "demo_model.gss")
    return ident is not None and ident == _pack_identity(REPO / "src" / "gsscreen" / "assets" / "demo_model.gss")


def run_label(m: dict, run: Path) -> str:
    """A table label for a ``train_demo_model.py`` run from its ``holdout_metrics.json``."""
    c = m.get("study_config", {})
    body = (f"last {c['unfreeze_stages']} FaceNet stages fine-tuned" if c.get("unfreeze_stages")
            else "frozen FaceNet")
    views = f"{c.get('n_views', 0)} augmented views" + (f" (colour jitter {c['color_jitter']})"
                                                         if c.get("n_views") and "color_jitter" in c else "")
    folds = "best fold" if c.get("export_folds") == "best" else "5-fold ensemble"
    flip = ", flip TTA" if c.get("tta_flip") else ""
    return f"study conv head, {body}, {views}{flip}, {folds} [{run.name}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("/work/artifacts/model/demo_run"))
    ap.add_argument("--features", type=Path, default=Path("/work/artifacts/model"))
    ap.add_argument("--out", type=Path, default=Path("/work/artifacts/model/bench_generalise"))
    ap.add_argument("--runs", type=Path, nargs="*", default=[],
                    help="more train_demo_model.py run folders (same split: --split-from RUN) to list beside RUN")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true", help="keep the variant rows of OUT/results.csv (same split) and "
                                                          "only refresh the shipped model's row")
    args = ap.parse_args(argv)
    if not (args.run / "clusters.csv").is_file():
        print(f"skipped: {args.run / 'clusters.csv'} not found (run scripts/train_demo_model.py first)")
        return 0
    t = pd.read_csv(args.run / "clusters.csv")
    t["y"] = t["label"].eq("GS").astype(int)
    d = load_descriptors(args.features, t["crop"].tolist())
    have = np.all([np.isfinite(v).all(axis=1) for v in d.values()], axis=0) if d else np.zeros(len(t), bool)
    # Every row on the same held-out photos: those every listed run scored (a photo without an aligned crop, or
    # whose stored body output is missing, has no P(GS) there) and that have every descriptor.
    preds = {run: pd.read_csv(run / "holdout_predictions.csv") for run in [args.run, *args.runs]
             if (run / "holdout_predictions.csv").is_file()}
    for hp in preds.values():
        scored = set(hp.loc[hp["p_gs"].notna(), "image"])
        have &= ~(t["side"].eq("held") & ~t["image"].isin(scored)).to_numpy()
    t = t[have].reset_index(drop=True)
    d = {k: v[have] for k, v in d.items()}
    common = set(t.loc[t["side"].eq("held"), "image"])
    train = t["side"].eq("train").to_numpy()
    is_utk = t["source"].eq("utk-kids").to_numpy()
    ones = np.ones(len(t))
    grid = [0.01, 0.1, 1.0]
    rows, skipped = [], []
    fn = d.get("facenet")
    old = args.out / "results.csv"
    if args.reuse and old.is_file():
        prev = pd.read_csv(old)
        rows = prev[~prev["variant"].str.startswith("shipped")].to_dict("records")
        skipped = json.loads((args.out / "skipped.json").read_text()) if (args.out / "skipped.json").is_file() else []
        d = {}
        fn = None

    def plain(key: str) -> Callable[[np.ndarray], np.ndarray]:
        return lambda i: d[key][i]

    if args.reuse and old.is_file():
        pass
    elif fn is not None:
        rows.append(evaluate("LR on FaceNet (utk half as controls)", logreg, grid, plain("facenet"),
                             lambda i: [d["facenet"][i]], t, args.seed, train, ones))
        rows.append(evaluate("LR on FaceNet, no external controls", logreg, grid, plain("facenet"),
                             lambda i: [d["facenet"][i]], t, args.seed, train & ~is_utk, ones))
        rows.append(evaluate("LR on FaceNet, external controls weighted x3", logreg, grid, plain("facenet"),
                             lambda i: [d["facenet"][i]], t, args.seed, train, np.where(is_utk, 3.0, 1.0)))
        rows.append(evaluate("MLP (256) on FaceNet", mlp, [1e-3, 1e-1], plain("facenet"),
                             lambda i: [d["facenet"][i]], t, args.seed, train, ones))
    else:
        skipped.append("every FaceNet variant: descriptors missing")
    if args.reuse and old.is_file():
        pass
    elif "facenet_flip" in d:
        rows.append(evaluate("LR on FaceNet + flip TTA", logreg, grid, plain("facenet"),
                             lambda i: [d["facenet"][i], d["facenet_flip"][i]], t, args.seed, train, ones))
    else:
        skipped.append("flip TTA / flip augmentation on the LR: mirror-image descriptors not computed (CPU)")
    if args.reuse and old.is_file():
        pass
    elif "dlib" in d:
        rows.append(evaluate("LR on dlib ResNet 128-d", logreg, grid, plain("dlib"),
                             lambda i: [d["dlib"][i]], t, args.seed, train, ones))
        both = np.hstack([d["facenet"], d["dlib"]])
        rows.append(evaluate("LR on FaceNet ++ dlib (concatenated)", logreg, grid, lambda i: both[i],
                             lambda i: [both[i]], t, args.seed, train, ones))
    else:
        skipped.append("dlib ResNet descriptor and the FaceNet + dlib ensemble: dlib descriptors not computed (CPU)")

    for i, run in enumerate([args.run, *args.runs]):
        metrics_path = run / "holdout_metrics.json"
        if not metrics_path.is_file():
            skipped.append(f"{run}: no holdout_metrics.json (train_demo_model.py has not finished there)")
            continue
        m = json.loads(metrics_path.read_text())
        if i == 0 and args.reuse:
            rows = [r for r in rows if not str(r["variant"]).startswith(("study", "shipped"))]
        rows.insert(i, {"variant": ("shipped: " if is_shipped(run) else "") + run_label(m, run),
                        **run_row(preds[run], common, float(m["threshold"])),
                        "cpu_s": m.get("train_cpu_s") or study_wall_s(run), "cpu_is_wall": not m.get("train_cpu_s"),
                        "pack_mb": m.get("pack_bytes", float("nan")) / 1e6,
                        "C": None, "oof_auc": None})
    (args.out / "skipped.json").parent.mkdir(parents=True, exist_ok=True)
    (args.out / "skipped.json").write_text(json.dumps(skipped))
    skipped = [s for s in skipped if not s.startswith(("fine-tuning", "stronger", "grey vs"))]
    if not any("fine-tuned" in str(r["variant"]) for r in rows):
        skipped.append("fine-tuning the last FaceNet stages: no run given (train_demo_model.py --split-from RUN "
                       "--unfreeze-stages 2, then --runs DIR)")
    skipped += ["blur augmentation: the study's augmentation has none (rotation, crop, flip, colour jitter, "
                "grey frames)",
                "grey vs replicated border: see benchmarks/bench_border.py (the crops here are grey)"]
    res = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    res.to_csv(args.out / "results.csv", index=False)
    n_he = int(t["side"].eq("held").sum())
    lines = [f"identity-grouped hold-out: {int((t['side'].eq('held') & ~t['source'].eq('utk-kids')).sum())} "
             f"ds-kaggle + {int((t['side'].eq('held') & t['source'].eq('utk-kids')).sum())} utk-kids photos "
             f"({n_he} in all); training side: {int(train.sum())} photos",
             "", "| variant | n Kaggle / UTK | hold-out AUC | sens. @ spec 0.95 | sens / spec at its threshold "
             "| utk-kids called GS | CPU s | pack MB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['n_kaggle']} / {r['n_utk']} | {r['holdout_auc']:.4f} | "
                     f"{r['sens_at_spec_0.95']:.3f} | "
                     f"{r['sens_at_threshold']:.3f} / {r['spec_at_threshold']:.3f} | {100 * r['utk_fpr']:.1f}% | "
                     f"{r['cpu_s']:.0f}{' (wall)' if r.get('cpu_is_wall') is True else ''} | "
                     + (f"{r['pack_mb']:.1f} |" if isinstance(r.get("pack_mb"), float) and r["pack_mb"] == r["pack_mb"]
                        else "– |"))
    lines += ["", "CPU s: LR / MLP rows: fitting and CV on stored descriptors (computing the descriptors is extra, "
              "the same for every FaceNet row); study rows: the training process (feature caching, five folds, "
              "baseline), one thread; (wall) = the study's wall time from its log (runs that did not record CPU).",
              "", "skipped:"] + [f"- {s}" for s in skipped]
    text = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
