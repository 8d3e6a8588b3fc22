"""Train, export and measure the shipped demo model (``src/gsscreen/assets/demo_model.gss``).

Development data only (``../shared/data``), never copied into the repository:

1. Hold-out by child, not by photo. Every photo of ds-kaggle (Down syndrome vs healthy) and utk-kids (healthy
   children from another source) is aligned and compared by FaceNet cosine similarity; photos linked by a chain
   of pairs at or above ``--identity-threshold`` (0.80, :mod:`gsscreen.identity`), or by identical bytes or a
   near-duplicate chain, form one likely-same-child cluster. ds-kaggle is split, cluster-grouped and
   class-balanced, into five subsets; subset 0 (20%) is held out. utk-kids clusters are split in two halves at
   random: one half joins the training cohort as extra controls (so "stock photo" is not a shortcut for
   "healthy"), the other is held out. A utk-kids cluster that touches a ds-kaggle photo follows that photo's side.
   Clusters of more than ``--max-cluster`` (50) photos are chains of look-alikes, not one child: they stay whole in
   training (otherwise one such chain could be the whole held-out GS class).
   No cluster has photos on both sides; ``OUT/holdout_audit.json`` counts held-out photos with a training photo
   above 0.8 / 0.9 cosine (it should be 0 at 0.8 by construction).
2. ``gsscreen study`` (default preset: frozen FaceNet, cached features, the paper's head, CE + triplet, RMSProp,
   5-fold CV; ``--n-views`` / ``--no-tta-flip`` trade augmentation for CPU) runs on the training cohort; the five
   fold models are exported as an ensemble with the threshold chosen on out-of-fold validation predictions.
3. The exported pack's fold models score every held-out photo. ``--features DIR`` reuses the FaceNet body
   outputs that ``benchmarks/generalise_features.py`` stored per crop (the same crop bytes, the same body, the
   same float16 rounding as the study's own feature cache) instead of running the body again, both for the
   study's feature cache and for scoring; a sample of held-out photos is then also screened end to end through
   ``ScreeningModel.screen_file`` (decode, MTCNN, body, heads) and the largest difference is reported.
   Written to ``OUT/holdout_metrics.json``: AUC (DeLong CI), sensitivity at specificity 0.95 and 0.90, accuracy /
   sensitivity / specificity at the pack's threshold on held-out ds-kaggle, and the share of held-out utk-kids
   children called GS.

    .venv/bin/python scripts/train_demo_model.py --out /work/artifacts/model/demo_run \\
        [--pack src/gsscreen/assets/demo_model.gss] [--features /work/artifacts/model]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def build_split(data: Path, out: Path, seed: int, threshold: float,
                max_cluster: int = 50) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """Write the training cohort CSV; return it, the held-out table (image, label, set) and the clustered table.

    A cluster of more than ``max_cluster`` photos is not one child but a chain of look-alikes (single linkage at
    0.80 joins hundreds of photos); it is kept whole on the training side, so it can neither leak nor make up
    the held-out set by itself."""
    from gsscreen.cohort import cohort_from_folders, find_images, load_cohort, write_cohort_csv
    from gsscreen.identity import likely_same_child
    from gsscreen.training.splits import assign_subsets

    ds = load_cohort(cohort_from_folders(data / "ds-kaggle", gs=("down",), control=("healthy",))).ok_table()
    ds["source"] = "ds-kaggle"
    utk = pd.DataFrame({"image": [str(p.resolve()) for p in find_images(data / "utk-kids")], "label": "control",
                        "syndrome": "", "subject_id": None, "source": "utk-kids"})
    both = pd.concat([ds, utk], ignore_index=True)
    both, emb, crops = likely_same_child(both, threshold=threshold, align_dir=out / "aligned_all")
    both["crop"] = crops
    size = both["identity_cluster"].map(both["identity_cluster"].value_counts())
    chained = (size > max_cluster).to_numpy()
    is_ds = (both["source"] == "ds-kaggle").to_numpy()
    side = pd.Series(index=both.index, dtype=object)
    side[chained] = "train"
    free = np.flatnonzero(is_ds & ~chained)
    ds_part = assign_subsets(both.iloc[free].reset_index(drop=True), n_folds=5, seed=seed)
    side[free] = np.where(ds_part["subset"].to_numpy() == 0, "held", "train")
    # ds-kaggle's grouping also follows sha256 / near-duplicate chains, so read each cluster's side from its photos.
    cluster_side = {c: s for c, s in zip(both.loc[is_ds | chained, "identity_cluster"], side[is_ds | chained],
                                         strict=True)}
    rng = np.random.default_rng(seed)
    utk_clusters = sorted(set(both.loc[~is_ds, "identity_cluster"]))
    order = rng.permutation(len(utk_clusters))
    for rank, i in enumerate(order):
        c = utk_clusters[i]
        cluster_side.setdefault(c, "train" if rank < len(order) // 2 else "held")
    side[~is_ds] = [cluster_side[c] for c in both.loc[~is_ds, "identity_cluster"]]
    both["side"] = side.to_numpy()
    # ds-kaggle clusters split across sides by sha256/near-duplicate merging cannot happen (assign_subsets keeps
    # each merged group whole); check the promise anyway.
    mixed = both.groupby("identity_cluster")["side"].nunique()
    if (mixed > 1).any():
        raise SystemExit(f"{int((mixed > 1).sum())} likely-same-child clusters on both sides: split bug")

    cols = ["image", "label", "syndrome", "subject_id", "source"]
    # No cluster ids as subject ids: a chained cluster holds both labels (the cohort check would drop it); the
    # study groups its folds by the same likely-same-child clusters itself (StudyConfig.grouping).
    train = both[both["side"] == "train"][cols].copy()
    csv = out / "train_cohort.csv"
    write_cohort_csv(train, csv)
    held = both[both["side"] == "held"][["image", "label", "source"]].rename(columns={"source": "set"})
    held.to_csv(out / "holdout.csv", index=False)

    # Audit: each held-out photo's most similar training photo (FaceNet cosine).
    tr, he = np.flatnonzero(both["side"] == "train"), np.flatnonzero(both["side"] == "held")
    ok = np.linalg.norm(emb, axis=1) > 0
    tr, he = tr[ok[tr]], he[ok[he]]
    best = (emb[he] @ emb[tr].T).max(axis=1) if len(he) and len(tr) else np.zeros(0)
    audit = {"identity_threshold": threshold, "n_train": int((both["side"] == "train").sum()),
             "n_held": int((both["side"] == "held").sum()),
             "held_with_train_neighbour_ge_0.8": int((best >= 0.8).sum()),
             "held_with_train_neighbour_ge_0.9": int((best >= 0.9).sum()),
             "max_held_to_train_cosine": float(best.max()) if len(best) else None,
             "n_clusters_2plus": int((both["identity_cluster"].value_counts() >= 2).sum()),
             "max_cluster_held_out": max_cluster,
             "chained_clusters_kept_in_training": int(both.loc[chained, "identity_cluster"].nunique()),
             "photos_in_chained_clusters": int(chained.sum())}
    (out / "holdout_audit.json").write_text(json.dumps(audit, indent=2) + "\n")
    both.drop(columns=["side"]).assign(side=both["side"]).to_csv(out / "clusters.csv", index=False)
    return csv, held, both


Store = dict[str, dict[str, np.ndarray]]


def feature_store(features_dir: Path) -> Store:
    """``{"facenet" / "facenet_flip": {crop sha1: FaceNet body output (512,) float32}}`` (what
    ``benchmarks/generalise_features.py`` has stored; the mirror-image part may be missing)."""
    folder = features_dir / "features_grey"
    store: Store = {"facenet": {}, "facenet_flip": {}}
    for name, part_store in store.items():
        for part in sorted(folder.glob(f"{name}-*.npz")):
            d = np.load(part)
            part_store.update(zip(d["key"].tolist(), d["x"], strict=True))
    return store


def prefill_study_cache(store: Store) -> None:
    """Let the study's feature cache take rows from ``store`` (same crop bytes → same key → same body output)
    before it runs the body on whatever is left. Only for caches without augmented views."""
    from gsscreen.training import data as D

    original = D.FeatureCache.build

    def build(self, prefix, crops, augment_cfg, device, batch_size=32, autocast=False, progress=None):  # type: ignore[no-untyped-def]
        # Only the whole frozen body's output (feat_shape (512, 1, 1)) can come from the store, not a fine-tuning
        # prefix's.
        if self.spec.n_views == 0 and int(np.prod(self.spec.feat_shape)) == 512:
            parts = [store["facenet"]] + ([store["facenet_flip"]] if self.spec.tta_flip else [])
            rows = [int(r) for r in np.flatnonzero(~self.done) if all(self.keys[r] in q for q in parts)]
            for r in rows:
                for j, q in enumerate(parts):
                    f = np.clip(q[self.keys[r]], -D.F16_MAX, D.F16_MAX).reshape(self.spec.feat_shape)
                    self.plain[r, j] = f.astype(np.float16)
            self.plain.flush()
            self.done[rows] = True
            self._save_done()
            print(f"feature cache: {len(rows)} of {len(self.keys)} rows from the stored body outputs", flush=True)
            if progress is not None:
                progress(len(rows))
        return original(self, prefix, crops, augment_cfg, device, batch_size, autocast, progress)

    D.FeatureCache.build = build  # type: ignore[method-assign]


def score_heldout(pack: Path, held: pd.DataFrame, clustered: pd.DataFrame, store: Store | None,
                  n_check: int, seed: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """P(GS) of every held-out photo from the pack's fold models; with ``store`` from stored body outputs of the
    photos' aligned crops, checked against end-to-end ``screen_file`` on ``n_check`` of them."""
    import hashlib

    import torch

    from gsscreen.modelpack import build_fold_models, load_model_pack, read_model_pack

    model = load_model_pack(pack)
    rows = []
    check: dict[str, float] = {}
    views = [store["facenet"]] + ([store["facenet_flip"]] if model.tta_flip else []) if store else []
    if int(model.info.get("unfreeze_from", 0)) < len(model.base.body):
        # Fine-tuned body stages: stored body outputs do not apply; run the pack on the aligned crops instead.
        return score_crops(model, held, clustered, n_check, seed)
    if not views or not all(views):
        for img, label, subset in zip(held["image"], held["label"], held["set"], strict=True):
            r = model.screen_file(img, heatmap=False)
            rows.append({"image": img, "label": label, "set": subset, "p_gs": r.p_gs, "problem": r.problem})
        return pd.DataFrame(rows), check
    _, folds = build_fold_models(read_model_pack(pack))
    crop_of = dict(zip(clustered["image"], clustered["crop"], strict=True))
    keys, idx = [], []
    for i, img in enumerate(held["image"]):
        crop = crop_of.get(img)
        key = hashlib.sha1(Path(crop).read_bytes()).hexdigest() if isinstance(crop, str) and Path(crop).is_file() \
            else None
        if key is not None and all(key in v for v in views):
            keys.append(key)
            idx.append(i)
    p = np.full(len(held), np.nan)
    fold_ps = []
    with torch.inference_mode():
        for m in folds:  # per fold: mean over the views (photo, mirror) of P(GS), as ScreeningModel does
            per_view = []
            for v in views:
                f = torch.from_numpy(np.stack([v[k] for k in keys]).astype(np.float16).astype(np.float32))
                f = f.reshape(len(keys), -1, 1, 1)  # the body's output map (B, C, 1, 1), as the head receives it
                per_view.append(torch.softmax(m.head(f)[0].float(), dim=1)[:, 1].numpy())
            fold_ps.append(np.mean(per_view, axis=0))
    # The pack's own decision rule turns the fold models' raw P(GS) into P(GS) (its calibration map, when it has
    # one), so these numbers sit on the same scale as the pack's threshold and as screen_file's output.
    p[idx] = [model.decision.ensemble_probability(col) for col in np.stack(fold_ps, axis=1)]
    out = held.assign(p_gs=p, problem=np.where(np.isnan(p), "no aligned crop", ""))
    return out, end_to_end_check(model, held, p, idx, n_check, seed)


def end_to_end_check(model, held: pd.DataFrame, p: np.ndarray, idx: list[int],  # type: ignore[no-untyped-def]
                     n_check: int, seed: int) -> dict[str, Any]:
    """Screen ``n_check`` of the scored photos (rows ``idx``) end to end with ``screen_file`` and report the largest
    difference from the shortcut's P(GS) ``p``: the shortcut must be the screen's own number, up to rounding."""
    sample = np.random.default_rng(seed).choice(idx, size=min(n_check, len(idx)), replace=False)
    diffs = []
    for i in sample:
        r = model.screen_file(held["image"].iloc[i], heatmap=False)
        if r.p_gs is not None:
            diffs.append(abs(float(r.p_gs) - p[i]))
    return {"n_checked_end_to_end": len(diffs), "max_abs_diff_p_gs": float(max(diffs)) if diffs else None}


def score_crops(model, held: pd.DataFrame, clustered: pd.DataFrame, n_check: int,  # type: ignore[no-untyped-def]
                seed: int, batch: int = 32) -> tuple[pd.DataFrame, dict[str, float]]:
    """P(GS) of every held-out photo from the pack run on its aligned crop (``ScreeningModel.predict_tensor``: the
    same network, mirror averaging and calibration as screening, minus decoding and face detection), checked
    against end-to-end ``screen_file`` on ``n_check`` of them."""

    from gsscreen.training.data import load_crops

    crop_of = dict(zip(clustered["image"], clustered["crop"], strict=True))
    idx = [i for i, img in enumerate(held["image"])
           if isinstance(crop_of.get(img), str) and Path(crop_of[img]).is_file()]
    p = np.full(len(held), np.nan)
    for start in range(0, len(idx), batch):
        part = idx[start : start + batch]
        c, ok, fail = load_crops([crop_of[held["image"].iloc[i]] for i in part], model.input_size)
        if fail:
            raise SystemExit(f"cannot read crops: {fail[:3]}")
        fold_p = model.predict_tensor(c[: len(ok)].float().div(255.0))  # (B, K) per-fold P(GS)
        p[[part[j] for j in ok]] = [model.decision.ensemble_probability(row) for row in fold_p]
    out = held.assign(p_gs=p, problem=np.where(np.isnan(p), "no aligned crop", ""))
    return out, {**end_to_end_check(model, held, p, idx, n_check, seed), "via_crops": True}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "demo-model")
    ap.add_argument("--pack", type=Path, default=REPO / "src" / "gsscreen" / "assets" / "demo_model.gss")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--identity-threshold", type=float, default=0.80)
    ap.add_argument("--max-cluster", type=int, default=50, help="larger clusters stay whole in training")
    ap.add_argument("--n-views", type=int, default=None, help="augmented views cached per photo (preset: 4)")
    ap.add_argument("--no-tta-flip", action="store_true", help="no mirror-image averaging (half the body passes)")
    ap.add_argument("--split-from", type=Path, default=None,
                    help="reuse the split of an earlier run folder (its clusters.csv, holdout.csv, train_cohort.csv, "
                         "holdout_audit.json) so variants are trained and measured on the same sides")
    ap.add_argument("--unfreeze-stages", type=int, default=None,
                    help="fine-tune the last N FaceNet body stages (train.finetune.unfreeze_stages; preset: 0)")
    ap.add_argument("--color-jitter", type=float, default=None, help="augment.color_jitter (preset: 0.4)")
    ap.add_argument("--export-folds", choices=("all", "best"), default="all",
                    help="ensemble of every fold model, or the fold with the best validation AUC (smaller pack)")
    ap.add_argument("--weights-dtype", choices=("float32", "float16", "qdelta8"), default="float32",
                    help="storage type of the trained tensors in the pack (float16: half the size; qdelta8: int8 "
                         "deltas from the installed weights, gsscreen.packquant)")
    ap.add_argument("--quant-levels", type=int, default=31, help="qdelta8 code range ±N (1..127)")
    ap.add_argument("--score-only", action="store_true", help="reuse OUT's split and finished study: export, "
                                                               "measure and ship only")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (1 is fastest on a busy machine)")
    ap.add_argument("--epochs", type=int, default=None, help="maximum epochs per fold (preset: 30)")
    ap.add_argument("--features", type=Path, default=None, help="stored body outputs (generalise_features.py)")
    ap.add_argument("--check", type=int, default=24, help="held-out photos also screened end to end")
    ap.add_argument("--sign-key", type=Path, default=Path("/work/artifacts/keys/demo_ed25519.pem"),
                    help="Ed25519 private key the shipped demo pack is signed with (scripts/sign_demo_pack.py)")
    ap.add_argument("--card", type=Path, default=REPO / "src" / "gsscreen" / "assets" / "DEMO_MODEL.md",
                    help="model card whose hold-out section is rewritten (none: --card '')")
    args = ap.parse_args(argv)
    if not (args.data / "ds-kaggle").is_dir():
        print(f"skipped: development data not found at {args.data}")
        return 0

    from gsscreen.cohort import load_cohort
    from gsscreen.evaluation.metrics import binary_metrics
    from gsscreen.evaluation.roc import auc_ci_delong, sensitivity_at_specificity
    from gsscreen.modelpack import ExportConfig, export_model_pack
    from gsscreen.training.config import build_config
    from gsscreen.training.study import run_study

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.split_from is not None and not args.score_only:
        import shutil

        for name in ("clusters.csv", "holdout.csv", "train_cohort.csv", "holdout_audit.json"):
            shutil.copyfile(args.split_from / name, args.out / name)
    if args.score_only or args.split_from is not None:
        csv = args.out / "train_cohort.csv"
        held = pd.read_csv(args.out / "holdout.csv")
        clustered = pd.read_csv(args.out / "clusters.csv")
    else:
        csv, held, clustered = build_split(args.data, args.out, args.seed, args.identity_threshold, args.max_cluster)
    print(json.dumps(json.loads((args.out / "holdout_audit.json").read_text()), indent=2))
    overrides: dict = {"seed": args.seed, "train": {}}
    if args.n_views is not None:
        overrides["train"]["n_views"] = args.n_views
    if args.no_tta_flip:
        overrides["train"]["tta_flip"] = False
    if args.epochs is not None:
        overrides["train"]["epochs"] = args.epochs
    if args.threads:
        overrides["threads"] = args.threads
    if args.unfreeze_stages is not None:
        overrides["train"]["finetune"] = {"unfreeze_stages": args.unfreeze_stages}
    if args.color_jitter is not None:
        overrides["augment"] = {"color_jitter": args.color_jitter}
    store = feature_store(args.features) if args.features else None
    if store:
        prefill_study_cache(store)
    t1, c1 = time.perf_counter(), time.process_time()
    if not args.score_only:
        result = run_study(load_cohort(csv), args.out / "study", build_config("default", None, overrides))
        print(result.summary_table().to_string())
    t_train, c_train = time.perf_counter() - t1, time.process_time() - c1
    cost = args.out / "study_cost.json"  # the study's own CPU cost, kept for --score-only re-measurements
    if not args.score_only:
        cost.write_text(json.dumps({"train_cpu_s": c_train, "train_wall_s": t_train}) + "\n")
    elif cost.is_file():
        c_train = float(json.loads(cost.read_text())["train_cpu_s"])

    # Exported and measured as a work copy in the run folder (the shipped path is always signature-checked);
    # copied to --pack and signed at the end.
    work = args.out / "demo_model.gss"
    export_model_pack(
        args.out / "study", work,
        ExportConfig(folds=args.export_folds, demo=True, name="gsscreen-demo-down-syndrome",
                     weights_dtype=args.weights_dtype, quant_levels=args.quant_levels,
                     description="Down syndrome vs healthy (web-collected photos); a demonstration"),
    )
    from gsscreen.modelpack import load_model_pack

    model = load_model_pack(work)
    t2 = time.perf_counter()
    scored, check = score_heldout(work, held, clustered, store, args.check, args.seed)
    t_screen = time.perf_counter() - t2
    scored.to_csv(args.out / "holdout_predictions.csv", index=False)

    ok = scored[scored["p_gs"].notna()]
    ds = ok[ok["set"] == "ds-kaggle"]
    y = ds["label"].eq("GS").to_numpy(int)
    p = ds["p_gs"].to_numpy(float)
    m = binary_metrics(y, p, model.threshold)
    ci = auc_ci_delong(y, p)
    sens = sensitivity_at_specificity(y, p, [0.95, 0.90])
    utk = ok[ok["set"] == "utk-kids"]
    fpr_utk = float((utk["p_gs"] >= model.threshold).mean())
    out = {
        "holdout": "identity-grouped: no likely-same-child cluster (FaceNet cosine >= "
                   f"{args.identity_threshold}, chains, identical bytes, near-duplicates) on both sides",
        "threshold": model.threshold,
        "ds_kaggle_holdout": {k: m[k] for k in ("accuracy", "recall", "specificity", "precision", "f1", "auc",
                                                 "tp", "fp", "tn", "fn")},
        "ds_kaggle_holdout_auc_ci_delong": [ci.lo, ci.hi],
        "ds_kaggle_holdout_sensitivity_at_specificity_0.95": float(sens[0]),
        "ds_kaggle_holdout_sensitivity_at_specificity_0.90": float(sens[1]),
        "ds_kaggle_holdout_n": len(ds),
        "ds_kaggle_holdout_n_gs": int(y.sum()),
        "utk_holdout_false_positive_rate": fpr_utk,
        "utk_holdout_called_gs": int((utk["p_gs"] >= model.threshold).sum()),
        "utk_holdout_n": len(utk),
        "no_face": int(scored["p_gs"].isna().sum()),
        "scoring": (("pack fold models (ScreeningModel.predict_tensor) on the held-out aligned crops"
                     if check.pop("via_crops", False) else
                     "pack fold heads on stored FaceNet body outputs of the held-out crops") if check
                    else "ScreeningModel.screen_file on every held-out photo"),
        "end_to_end_check": check,
        "study_config": {"n_views": overrides["train"].get("n_views", 4),
                         "tta_flip": not args.no_tta_flip,
                         "unfreeze_stages": args.unfreeze_stages or 0,
                         "color_jitter": 0.4 if args.color_jitter is None else args.color_jitter,
                         "export_folds": args.export_folds, "weights_dtype": args.weights_dtype,
                         **({"quant_levels": args.quant_levels} if args.weights_dtype == "qdelta8" else {})},
        "audit": json.loads((args.out / "holdout_audit.json").read_text()),
        "train_wall_min": t_train / 60,
        # CPU seconds of the study (this process: feature caching, the folds, the baseline); 0 with --score-only.
        "train_cpu_s": c_train,
        "total_wall_min": (time.perf_counter() - t0) / 60,
        "score_s_per_photo": t_screen / max(len(scored), 1),
        "pack_bytes": work.stat().st_size,
    }
    (args.out / "holdout_metrics.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))

    # The card says what was measured, how, and what it does not cover: in the pack (re-exported with the note:
    # same weights, same threshold), next to it as JSON, and in DEMO_MODEL.md between its markers.
    note = holdout_note(out)
    export_model_pack(
        args.out / "study", work,
        ExportConfig(folds=args.export_folds, demo=True, name="gsscreen-demo-down-syndrome",
                     weights_dtype=args.weights_dtype, quant_levels=args.quant_levels,
                     description="Down syndrome vs healthy (web-collected photos); a demonstration",
                     holdout_note=note),
    )
    ship(work, args.pack, args.sign_key)
    summary = {k: out[k] for k in ("holdout", "threshold", "ds_kaggle_holdout", "ds_kaggle_holdout_auc_ci_delong",
                                   "ds_kaggle_holdout_sensitivity_at_specificity_0.95", "ds_kaggle_holdout_n",
                                   "ds_kaggle_holdout_n_gs", "utk_holdout_false_positive_rate",
                                   "utk_holdout_called_gs", "utk_holdout_n", "audit", "scoring", "end_to_end_check")}
    summary["note"] = note
    args.pack.with_name(args.pack.stem + "_holdout.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.card is not None and args.card.is_file():
        write_card_section(args.card, note)
    return 0


def ship(work: Path, pack: Path, key: Path | None) -> None:
    """Copy the measured pack to ``pack`` and, with ``key`` (the demo key's private half), sign it there."""
    import shutil

    pack.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work, pack)
    if key is not None and key.is_file():
        from gsscreen.packsign import sign_model_pack

        print(f"signed {pack} with key {sign_model_pack(pack, key)}")
    else:
        print(f"{pack} is NOT signed (no --sign-key): run scripts/sign_demo_pack.py before shipping it")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion k / n."""
    if n == 0:
        return (float("nan"), float("nan"))
    ph = k / n
    centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(centre - half), float(centre + half))


def holdout_note(m: dict) -> str:
    """The model card's "measured on held-out photos" section, in plain words, from ``holdout_metrics.json``."""
    h, a = m["ds_kaggle_holdout"], m["audit"]
    n_gs, n = m["ds_kaggle_holdout_n_gs"], m["ds_kaggle_holdout_n"]
    lo, hi = m["ds_kaggle_holdout_auc_ci_delong"]
    s_lo, s_hi = wilson(int(h["tp"]), int(h["tp"] + h["fn"]))
    u_k, u_n = m["utk_holdout_called_gs"], m["utk_holdout_n"]
    check = m.get("end_to_end_check") or {}
    scored = ("Each held-out photo was scored by this pack's own fold models on its aligned crop (the crop and "
              "network screening uses)"
              + (f"; {check['n_checked_end_to_end']} of them were also screened end to end with `gsscreen screen`'s "
                 f"code, largest difference in P(GS) {check['max_abs_diff_p_gs']:.1e}."
                 if check.get("n_checked_end_to_end") else ".")
              if check else "Each held-out photo was screened end to end, as `gsscreen screen` does.")
    return "\n".join([
        f"Held out before training: {n} photos of the Kaggle set ({n_gs} Down syndrome, {n - n_gs} healthy) and "
        f"{u_n} UTKFace children (all healthy). No model in this pack was trained, tuned or thresholded on them.",
        "The hold-out is by child, not by photo: photos whose faces are similar by FaceNet (cosine similarity "
        f"≥ {a['identity_threshold']:.2f}, and chains of such pairs), identical files and near-duplicates were kept "
        f"on one side. Single linkage also chains look-alike children into large clusters; the "
        f"{a.get('chained_clusters_kept_in_training', 0)} cluster(s) of more than {a.get('max_cluster_held_out', 50)} "
        f"photos ({a.get('photos_in_chained_clusters', 0)} photos) were kept whole in training, so the held-out "
        "photos are the more distinctive faces, not a random sample. Afterwards the most similar training photo of "
        f"any held-out photo has cosine {a['max_held_to_train_cosine']:.3f}. " + scored,
        "",
        "| held-out set | n | result |",
        "|---|---|---|",
        f"| Kaggle, Down syndrome vs healthy | {n} | AUC {h['auc']:.3f} (DeLong 95% CI {lo:.3f}–{hi:.3f}); at the "
        f"pack's threshold {m['threshold']:.3f}: sensitivity {h['recall']:.3f} (95% CI {s_lo:.2f}–{s_hi:.2f}), "
        f"specificity {h['specificity']:.3f}, accuracy {h['accuracy']:.3f}; sensitivity at specificity 0.95: "
        f"{m['ds_kaggle_holdout_sensitivity_at_specificity_0.95']:.3f} |",
        f"| UTKFace children (all healthy) | {u_n} | called GS: {100 * m['utk_holdout_false_positive_rate']:.1f}% "
        f"({u_k} of {u_n}) |",
        "",
        f"At this threshold the model misses {int(h['fn'])} of {n_gs} held-out children with Down syndrome.",
        "",
        "What these numbers do not cover: they come from one web-collected photo set and one syndrome, so the "
        "held-out photos share sources, photographers and styles with the training photos; the labels are not "
        "clinical diagnoses; other syndromes, populations, ages, cameras and clinical photos were never tested. "
        "Grouping by face similarity can miss a child photographed very differently (then that child may still be "
        "on both sides) and can merge look-alike children. New photos from the same web source scored lower "
        "before this hold-out existed (AUC 0.964 for the previous model): expect the numbers on your own photos to "
        "be lower than these.",
    ])


CARD_START, CARD_END = "<!-- holdout:start -->", "<!-- holdout:end -->"


def write_card_section(card: Path, note: str) -> None:
    """Replace the text between the hold-out markers of ``card`` (DEMO_MODEL.md) with ``note``."""
    text = card.read_text(encoding="utf-8")
    if CARD_START not in text or CARD_END not in text:
        text = text.rstrip("\n") + f"\n\n{CARD_START}\n{CARD_END}\n"
    head, rest = text.split(CARD_START, 1)
    _, tail = rest.split(CARD_END, 1)
    card.write_text(f"{head}{CARD_START}\n{note}\n{CARD_END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
