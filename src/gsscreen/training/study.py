"""``run_study``: a whole cross-validated study into one run folder (see :mod:`gsscreen.training.run_folder`).

Steps: validate the cohort → align the photos (MTCNN, cached; failures are reported and left out) → load the
crops → split into subject-grouped, class-balanced subsets → (default) cache the frozen body's features → for each
fold train, pick the best epoch on validation, choose the threshold on validation, predict the test subset and the
external controls → the logistic-regression baseline on frozen embeddings with the same splits and threshold
rule → ``predictions.csv`` and ``metrics.json``.

Re-running the same command on the same folder resumes: finished folds are skipped, an interrupted fold continues
from its last finished epoch, and the result equals that of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gsscreen.config import to_dict
from gsscreen.training import run_folder as rf
from gsscreen.training.config import StudyConfig, config_hash
from gsscreen.training.data import (
    CacheSource,
    CacheSpec,
    FeatureCache,
    ImageSource,
    derive_seed,
    keys_digest,
    load_crops,
)
from gsscreen.training.loop import FoldData, FoldRunner, ModelPlan
from gsscreen.training.splits import assign_subsets, fold_masks, split_summary

log = logging.getLogger("gsscreen.study")

METRIC_NAMES = ("accuracy", "recall", "specificity", "precision", "f1", "auc")


@dataclass
class StudyResult:
    """What :func:`run_study` hands on (everything is also in ``run_dir``)."""

    run_dir: Path
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    failures: pd.DataFrame

    def summary_table(self) -> pd.DataFrame:
        """Rows = metrics, columns = model / baseline, cells ``mean ± SD`` over folds."""
        return summary_table(self.metrics)


def summary_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """``metrics.json`` → a small table of ``mean ± SD`` (rows: metrics and external FPRs)."""

    def cell(s: dict[str, Any] | None) -> str:
        if not s or s.get("mean") is None or (isinstance(s["mean"], float) and math.isnan(s["mean"])):
            return "—"
        sd = s.get("sd")
        return f"{s['mean']:.3f} ± {sd:.3f}" if sd is not None and not math.isnan(sd) else f"{s['mean']:.3f}"

    rows: dict[str, dict[str, str]] = {}
    for who in ("model", "baseline"):
        part = metrics.get(who)
        if not part:
            continue
        for m in METRIC_NAMES:
            rows.setdefault(m, {})[who] = cell(part["summary"].get(m))
        rows.setdefault("pooled AUC", {})[who] = f"{part['pooled_roc']['auc']:.3f}" if part.get("pooled_roc") else "—"
        for name, ext in part.get("external", {}).items():
            rows.setdefault(f"FPR {name}", {})[who] = cell(ext)
    return pd.DataFrame(rows).T.fillna("—")


# ------------------------------------------------------------------------------------------------ helpers


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from gsscreen.errors import GsscreenError

        raise GsscreenError("device='cuda' requested but torch sees no CUDA device; use device='auto' or 'cpu'")
    return torch.device(name)


@contextmanager
def _log_to(path: Path):
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("gsscreen")
    old_level = logger.level
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


def _study_table(cohort: Any) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Usable rows (image, label, subject_id, …) and failures of the cohort stage."""
    failures: list[dict[str, str]] = []
    if hasattr(cohort, "ok_table"):
        table = cohort.ok_table()
        for p in getattr(cohort, "blocking_problems", []):
            failures.append({"file": p.file or "", "problem": f"[{p.kind}] {p.message}", "stage": "cohort"})
    elif isinstance(cohort, pd.DataFrame):
        table = cohort.copy()
    else:
        raise TypeError(f"cohort must be a gsscreen.cohort.Cohort or a DataFrame, got {type(cohort).__name__}")
    missing = {"image", "label"} - set(table.columns)
    if missing:
        raise ValueError(f"cohort table lacks column(s) {sorted(missing)}")
    unknown = ~table["label"].isin(["GS", "control"])
    for img in table.loc[unknown, "image"]:
        failures.append({"file": str(img), "problem": "label is neither GS nor control", "stage": "cohort"})
    table = table.loc[~unknown].copy()
    if "subject_id" not in table.columns:
        table["subject_id"] = None
    table["image"] = table["image"].astype(str)
    return table.reset_index(drop=True), failures


def _baseline_features(backbone: str, pretrained_loaded: bool) -> str:
    """What the baseline's features are, in words, for the backbone the study really ran."""
    if not pretrained_loaded:
        return f"{backbone}, randomly initialised: not a pretrained embedding"
    if backbone == "facenet":
        return "FaceNet: its pretrained 512-d embedding"
    if backbone == "vgg16":
        return "VGG-16 with imported VGG-Face weights: its pooled conv5 features"
    return f"{backbone}, pretrained"


def cohort_fingerprint(table: pd.DataFrame, external: Sequence[str]) -> str:
    sub = table[["image", "label", "subject_id"]].astype(str).sort_values("image")
    blob = sub.to_csv(index=False) + "\n".join(map(str, external))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _external_images(entry: str) -> list[str]:
    """Photos of one external control set: a folder (searched recursively) or a cohort CSV (its usable rows)."""
    p = Path(entry).expanduser()
    if p.is_dir():
        from gsscreen.cohort import find_images

        return [str(x.resolve()) for x in find_images(p)]
    if p.is_file():
        from gsscreen.cohort import load_cohort

        c = load_cohort(p, check_images=False)
        return [str(x) for x in c.ok_table()["image"]]
    raise FileNotFoundError(f"external control set not found: {entry} (give a folder of photos or a cohort CSV)")


def _align(images: list[str], out_dir: Path, progress: bool) -> tuple[dict[str, str], list[dict[str, str]]]:
    """MTCNN-align ``images`` via :func:`gsscreen.faces.align_cohort` (which caches crops).

    Returns ``({image: crop_path}, failures)``; a photo without a usable face is a failure, never a crash.
    """
    from gsscreen.faces.align import AlignConfig
    from gsscreen.faces.pipeline import align_cohort

    result = align_cohort(images, out_dir, AlignConfig(), progress=progress)
    crops = {str(r["image"]): str(r["crop"]) for r in result.aligned.to_dict("records") if isinstance(r["crop"], str)}
    failures = [{"file": str(f["image"]), "problem": str(f["problem"]), "stage": "align"}
                for f in result.failures.to_dict("records")]
    failed = {f["file"] for f in failures}
    for img in images:
        if img not in crops and img not in failed:
            failures.append({"file": img, "problem": "no aligned crop produced", "stage": "align"})
            failed.add(img)
    return crops, failures


def _prepare_photos(
    images: list[str], cfg: StudyConfig, size: int, align_dir: Path, progress: bool
) -> tuple[torch.Tensor, list[int], list[str], list[dict[str, str]]]:
    """Align (optionally) and load ``images``; returns crops, indices of the usable images, their keys, failures."""
    failures: list[dict[str, str]] = []
    if cfg.align:
        crop_of, failures = _align(images, align_dir, progress)
    else:
        crop_of = {img: img for img in images}
    usable = [i for i, img in enumerate(images) if img in crop_of]
    paths = [crop_of[images[i]] for i in usable]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), desc="loading crops", unit="photo", leave=False)
    keys: list[str] = []
    crops, ok, load_fail = load_crops(paths, size, progress=bar.update if bar else None, keys=keys)
    if bar:
        bar.close()
    for p, problem in load_fail:
        src = next((images[i] for i in usable if crop_of[images[i]] == p), p)
        failures.append({"file": src, "problem": problem, "stage": "load"})
    kept = [usable[j] for j in ok]
    return crops, kept, keys, failures


def _frozen_embeddings(model: torch.nn.Module, source: Any, rows: np.ndarray, input_index: int,
                       device: torch.device, batch_size: int) -> np.ndarray:
    """Pooled, L2-normalised output of the pretrained (untrained) body for the plain view: ``(n, C)``.

    For FaceNet this is exactly its 512-d embedding (the last body stage); for others the pooled final feature map.
    """
    model.eval()
    body = model.body
    outs = []
    with torch.inference_mode():
        for s in range(0, len(rows), batch_size):
            x = source.eval_batch(rows[s : s + batch_size])[0].to(device)
            for i in range(input_index, len(body)):
                x = body[i](x)
            v = x.float().mean(dim=(2, 3)) if x.ndim == 4 else x.float()
            outs.append(torch.nn.functional.normalize(v, dim=1).cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0))


def _baseline_fold(
    emb: np.ndarray, y: np.ndarray, masks: tuple[np.ndarray, np.ndarray, np.ndarray], ext: dict[str, np.ndarray],
    method: str, seed: int,
) -> tuple[dict[str, Any], np.ndarray, float, dict[str, np.ndarray]]:
    """Logistic regression on frozen embeddings: C chosen by validation AUC, threshold by ``method`` on validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from gsscreen.evaluation.metrics import auc_mann_whitney, binary_metrics, choose_threshold

    tr, va, te = masks
    best = None
    for c in (0.01, 0.1, 1.0, 10.0):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, random_state=seed))
        clf.fit(emb[tr], y[tr])
        p_val = clf.predict_proba(emb[va])[:, 1]
        auc = auc_mann_whitney(y[va], p_val) if 0 < y[va].sum() < va.sum() else 0.0
        if best is None or auc > best[0] + 1e-12:
            best = (auc, c, clf, p_val)
    assert best is not None
    _, c, clf, p_val = best
    threshold = choose_threshold(y[va], p_val, method)
    p_test = clf.predict_proba(emb[te])[:, 1]
    p_ext = {name: clf.predict_proba(e)[:, 1] if len(e) else np.zeros(0) for name, e in ext.items()}
    res = {"C": c, "threshold": threshold, "val": binary_metrics(y[va], p_val, threshold),
           "test": binary_metrics(y[te], p_test, threshold),
           "external": {n: {"n": len(p), "called_gs": int((p >= threshold).sum()),
                            "fpr": float((p >= threshold).mean()) if len(p) else math.nan} for n, p in p_ext.items()}}
    return res, p_test, threshold, p_ext


def _summaries(per_fold: list[dict[str, Any]], y: np.ndarray, p: np.ndarray, cfg: StudyConfig) -> dict[str, Any]:
    from gsscreen.evaluation.metrics import summarize_folds
    from gsscreen.evaluation.roc import pooled_roc_summary

    test = [f["test"] for f in per_fold]
    ext_names = sorted({n for f in per_fold for n in f.get("external", {})})
    external = {}
    for n in ext_names:
        vals = [f["external"][n]["fpr"] for f in per_fold]
        arr = np.asarray(vals, dtype=float)
        sd = float(np.nanstd(arr, ddof=1)) if len(arr) > 1 else math.nan
        external[n] = {"mean": float(np.nanmean(arr)), "sd": sd, "values": vals,
                       "n_photos": per_fold[0]["external"][n]["n"]}
    both = 0 < int(y.sum()) < len(y)
    return {
        "per_fold": [{"fold": i, **{k: t.get(k) for k in (*METRIC_NAMES, "threshold", "tp", "fp", "tn", "fn", "n")}}
                     for i, t in enumerate(test)],
        "summary": summarize_folds(test),
        "pooled_roc": pooled_roc_summary(y, p, n_boot=cfg.n_bootstrap, seed=cfg.seed) if both else None,
        "external": external,
    }


# ------------------------------------------------------------------------------------------------ the study


def run_study(
    cohort: Any,
    out_dir: str | Path,
    cfg: StudyConfig | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, int], None] | None = None,
) -> StudyResult:
    """Run (or resume) a cross-validated study into ``out_dir``.

    Args:
        cohort: a :class:`gsscreen.cohort.Cohort` (its usable rows are used; blocking problems go to
            ``failures.csv``) or a DataFrame with ``image`` (path), ``label`` (GS/control), optional ``subject_id``.
        out_dir: the run folder (created; an existing one must belong to the same config and cohort).
        cfg: the study config (default: ``StudyConfig()``).
        progress: tqdm bars for caching, folds and epochs.
        on_epoch_end: called as ``on_epoch_end(fold, epoch)`` after each epoch's state is saved (monitoring, tests).

    Raises:
        RunFolderMismatch: ``out_dir`` holds a study with another config or cohort.
        ValueError: invalid config, or too few usable photos to split.
    """
    cfg, random_init_note = _check_pretrained((cfg or StudyConfig()).validate())
    run_dir = Path(out_dir)
    from gsscreen.fsperm import private_dir

    private_dir(run_dir)  # a run folder holds children's photo lists and predictions: owner-only
    table, failures = _study_table(cohort)
    ext_entries = [str(e) for e in cfg.external_controls]
    fp = cohort_fingerprint(table, ext_entries)
    cfg_dict = to_dict(cfg)
    resumed = rf.check_or_claim(run_dir, cfg_dict, config_hash(cfg), fp)
    source = getattr(cohort, "source", None)
    if source is not None:
        # Where the cohort table came from: the report reads Table 1's ages and sexes from it.
        rf.atomic_write_json(run_dir / "cohort_source.json", {"cohort_csv": str(Path(source).resolve())})
    with _log_to(run_dir / "study.log"):
        log.info("study %s in %s (config %s, cohort %s)", "resumed" if resumed else "started", run_dir,
                 config_hash(cfg), fp)
        if random_init_note:
            log.warning("%s", random_init_note)
        try:
            return _run(table, failures, run_dir, cfg, ext_entries, progress, on_epoch_end, random_init_note)
        except Exception as exc:  # a full or read-only disk, a bad input, a bug: the log says why the run stopped
            from gsscreen.errors import one_line

            log.error("study stopped: %s", one_line(exc))
            raise


def _check_pretrained(cfg: StudyConfig) -> tuple[StudyConfig, str | None]:
    """Stop when ``cfg`` asks for pretrained weights that are not there, unless ``cfg.allow_random_init``.

    Returns the config to run (``pretrained = False`` when the study goes on from random init, so ``config.json``
    tells the truth) and the warning to record (None when the weights are there or were not asked for).
    """
    from gsscreen.errors import GsscreenError
    from gsscreen.models.registry import get_spec

    if not cfg.pretrained:
        return cfg, None
    spec = get_spec(cfg.backbone)
    if spec.weights_available is not None and spec.weights_available():
        return cfg, None
    missing = (f"backbone {cfg.backbone}: its pretrained weights are not available"
               + (f" ({spec.weights_hint})" if spec.weights_hint and spec.weights_available is not None
                  else " (it has none)" if spec.weights_available is None else ""))
    if not cfg.allow_random_init:
        raise GsscreenError(f"{missing}; the study would train a randomly initialised network. Get the weights, "
                            "or pass --allow-random-init (config: allow_random_init = true) to train from random "
                            "init anyway.")
    note = (f"RANDOM INIT: {missing}, so the {cfg.backbone} network starts from random weights "
            "(--allow-random-init). Its results say nothing about the pretrained model.")
    return dataclasses.replace(cfg, pretrained=False), note


def _run(
    table: pd.DataFrame, failures: list[dict[str, str]], run_dir: Path, cfg: StudyConfig, ext_entries: list[str],
    progress: bool, on_epoch_end: Callable[[int, int], None] | None, random_init_note: str | None = None,
) -> StudyResult:
    from gsscreen.models.registry import get_spec

    torch.use_deterministic_algorithms(True, warn_only=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    spec = get_spec(cfg.backbone)
    size = cfg.image_size or spec.input_size
    ver = rf.versions()
    ver["device"] = str(device)
    rf.atomic_write_json(run_dir / "versions.json", ver)

    # --- photos: align, load; failures are reported and left out
    crops, kept, keys, fails = _prepare_photos(list(table["image"]), cfg, size, run_dir / "aligned", progress)
    failures += fails
    table = table.iloc[kept].reset_index(drop=True)
    if min((table["label"] == "GS").sum(), (table["label"] == "control").sum()) < cfg.folds:
        from gsscreen.errors import GsscreenError

        rf.atomic_write_csv(run_dir / "failures.csv", pd.DataFrame(failures, columns=["file", "problem", "stage"]))
        counts = ", ".join(f"{n} {lab}" for lab, n in table["label"].value_counts().items()) or "none"
        raise GsscreenError(f"too few usable photos to split into {cfg.folds} folds: {counts} (each class needs "
                            f"at least {cfg.folds}); {len(failures)} photo(s) left out, see "
                            f"{run_dir / 'failures.csv'}")
    externals: dict[str, tuple[list[str], torch.Tensor, list[str]]] = {}
    for entry in ext_entries:
        name = Path(entry).stem if Path(entry).is_file() else Path(entry).name
        images = _external_images(entry)
        e_crops, e_kept, e_keys, e_fail = _prepare_photos(images, cfg, size, run_dir / "aligned" / f"ext_{name}",
                                                          progress)
        failures += [{**f, "stage": f"{f['stage']} (external {name})"} for f in e_fail]
        externals[name] = ([images[i] for i in e_kept], e_crops, e_keys)
        log.info("external controls %s: %d photos usable of %d", name, len(e_kept), len(images))
    fail_df = pd.DataFrame(failures, columns=["file", "problem", "stage"])
    rf.atomic_write_csv(run_dir / "failures.csv", fail_df)
    log.info("%d photos usable, %d failure(s) (see failures.csv)", len(table), len(fail_df))

    # --- splits (subjects, identical bytes, near-duplicate chains and likely-same-child clusters kept together)
    from gsscreen.identity import leakage_audit, study_grouping
    from gsscreen.training.splits import split_groups

    g = cfg.grouping
    table, id_emb, grouping = study_grouping(table, crops, keys, g.likely_same_child, g.threshold, g.audit)
    table = assign_subsets(table, cfg.folds, cfg.seed)
    splits = pd.DataFrame({"photo": table["image"], "subject": table["subject_id"], "label": table["label"],
                           "subset": table["subset"], "group": split_groups(table).to_numpy()})
    if id_emb is not None:
        audit = leakage_audit(id_emb, table["subset"].to_numpy(), cfg.folds)
        splits["nearest_train_cosine"] = np.round(audit.pop("nearest_train_cosine"), 4)
        grouping["leakage_audit"] = audit
    # Written relative to the cohort CSV (the table and the photos move together); the in-memory tables stay absolute.
    rf.atomic_write_csv(run_dir / "splits.csv",
                        splits.assign(photo=rf.photos_relative_to_cohort(run_dir, splits["photo"])))
    log.info("subsets (photos per class):\n%s", split_summary(table).to_string())
    y = (table["label"] == "GS").to_numpy(dtype=np.int64)

    # --- model plan: which body part is frozen / cached / trained in stage 2
    init_seed = derive_seed(cfg.seed, "model-init")
    probe_plan = ModelPlan(cfg.backbone, cfg.pretrained, cfg.train.dropout, 0, 0, init_seed)
    model = probe_plan.build()
    if cfg.pretrained and not model.pretrained_loaded:
        log.warning("backbone %s: pretrained weights not available, using random init (%s)", cfg.backbone,
                    spec.weights_hint or spec.weight_source)
    n_body = len(model.body)
    k_unfreeze = cfg.train.finetune.unfreeze_stages
    k_unfreeze = n_body - 1 if k_unfreeze < 0 else min(k_unfreeze, n_body - 1)
    unfreeze_from = n_body - k_unfreeze
    use_cache = cfg.train.cache_features and unfreeze_from > 1
    input_index = unfreeze_from if use_cache else 0
    plan = ModelPlan(cfg.backbone, cfg.pretrained, cfg.train.dropout, input_index, unfreeze_from, init_seed,
                     update_batchnorm=cfg.train.finetune.update_batchnorm)
    model = model.to(device)
    mode = f"cached body[:{input_index}] features" if use_cache else "images (augmented on the fly)"
    log.info("backbone %s (pretrained %s), input %d px, %s, stage 2 trains body[%d:] of %d", cfg.backbone,
             model.pretrained_loaded, size, mode, unfreeze_from, n_body)

    def make_source(name: str, c: torch.Tensor, k: list[str], n_views: int) -> Any:
        if not use_cache:
            return ImageSource(c, cfg.augment, cfg.train.tta_flip, device)
        prefix = model.body[:input_index]
        with torch.no_grad():
            probe = prefix.eval()(torch.zeros(1, 3, size, size, device=device))
        cspec = CacheSpec(cfg.backbone, bool(model.pretrained_loaded), input_index, size,
                          n_views if cfg.augment.enabled else 0, cfg.train.tta_flip, cfg.seed, to_dict(cfg.augment),
                          tuple(probe.shape[1:]), keys_digest(k))
        cache = FeatureCache(run_dir / "cache" / name, cspec, k)
        if not cache.complete:
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=int((~cache.done).sum()), desc=f"caching {name}", unit="photo", leave=False)
            log.info("caching features for %s: %d photos × %d views", name, int((~cache.done).sum()),
                     cache.n_plain + cspec.n_views)
            cache.build(prefix, c, cfg.augment, device, cfg.train.batch_size,
                        autocast=device.type == "cuda" and cfg.mixed_precision, progress=bar.update if bar else None)
            if bar:
                bar.close()
        return CacheSource(cache, use_views=cfg.augment.enabled)

    source = make_source("study", crops, keys, cfg.train.n_views)
    ext_sources = {name: (make_source(f"external_{name}", c, k, 0), len(k)) for name, (_, c, k) in externals.items()}

    # --- folds
    results = []
    fold_iter: Any = range(cfg.folds)
    if progress:
        from tqdm.auto import tqdm

        fold_iter = tqdm(fold_iter, desc="folds", unit="fold")
    for k in fold_iter:
        tr, va, te = fold_masks(table["subset"].to_numpy(), k, cfg.folds)
        data = FoldData(source, y, np.flatnonzero(tr), np.flatnonzero(va), np.flatnonzero(te), ext_sources)
        runner = FoldRunner(cfg, plan, data, k, run_dir, device, progress=progress, on_epoch_end=on_epoch_end)
        results.append(runner.run())

    # --- gather predictions (every photo once, from the fold that tested it)
    pred_parts, ext_parts = [], []
    for k in range(cfg.folds):
        fp_ = pd.read_csv(rf.fold_dir(run_dir, k) / rf.FOLD_PREDICTIONS)
        thr = results[k]["threshold"]
        t = fp_[fp_["set"] == "test"]
        rows = t["row"].to_numpy()
        pred_parts.append(pd.DataFrame({
            "photo": table["image"].to_numpy()[rows], "subject": table["subject_id"].to_numpy()[rows],
            "label": table["label"].to_numpy()[rows], "fold": k, "p_gs": t["p_gs"].to_numpy(),
            "call": np.where(t["p_gs"].to_numpy() >= thr, "GS", "control"), "threshold": thr, "row": rows,
        }))
        for name, (imgs, _, _) in externals.items():
            e = fp_[fp_["set"] == f"external:{name}"]
            ext_parts.append(pd.DataFrame({"set": name, "photo": np.asarray(imgs)[e["row"].to_numpy()], "fold": k,
                                           "p_gs": e["p_gs"].to_numpy(), "threshold": thr,
                                           "call": np.where(e["p_gs"].to_numpy() >= thr, "GS", "control")}))
    preds = pd.concat(pred_parts, ignore_index=True).sort_values("row", kind="stable")

    metrics: dict[str, Any] = {
        "n_photos": len(table), "n_gs": int(y.sum()), "n_control": int(len(y) - y.sum()),
        "n_failures": len(fail_df), "folds": cfg.folds, "backbone": cfg.backbone,
        "pretrained_loaded": bool(model.pretrained_loaded), "image_size": size, "mode": mode,
        "threshold_method": cfg.threshold_method, "device": str(device),
        **({"random_init_note": random_init_note} if random_init_note else {}),
        "fold_details": [{k: r[k] for k in ("fold", "epochs_run", "best_epoch", "best_val", "threshold")}
                         for r in results],
    }
    metrics["grouping"] = grouping
    metrics["model"] = _summaries(results, preds["label"].eq("GS").to_numpy(int), preds["p_gs"].to_numpy(), cfg)

    # --- baseline: logistic regression on frozen embeddings, same splits and threshold rule
    if cfg.baseline:
        pristine = probe_plan.build().to(device)
        eb = cfg.train.batch_size * 2
        emb = _frozen_embeddings(pristine, source, np.arange(len(table)), input_index, device, eb)
        ext_emb = {n: _frozen_embeddings(pristine, s, np.arange(m), input_index, device, eb)
                   for n, (s, m) in ext_sources.items()}
        base_results, p_base = [], np.zeros(len(table))
        for k in range(cfg.folds):
            masks = fold_masks(table["subset"].to_numpy(), k, cfg.folds)
            res, p_te, thr, _ = _baseline_fold(emb, y, masks, ext_emb, cfg.threshold_method, cfg.seed)
            base_results.append(res)
            p_base[masks[2]] = p_te
            log.info("baseline fold %d: C=%g, threshold %.4f, test AUC %.4f", k, res["C"], thr, res["test"]["auc"])
        preds["baseline_p_gs"] = p_base[preds["row"].to_numpy()]
        base_thr = np.array([base_results[f]["threshold"] for f in preds["fold"]])
        preds["baseline_call"] = np.where(preds["baseline_p_gs"] >= base_thr, "GS", "control")
        y_pool = preds["label"].eq("GS").to_numpy(int)
        metrics["baseline"] = _summaries(base_results, y_pool, preds["baseline_p_gs"].to_numpy(), cfg)
        metrics["baseline"]["description"] = (
            "logistic regression (standardised, C chosen by validation AUC) on the frozen backbone's pooled, "
            f"L2-normalised body output ({_baseline_features(cfg.backbone, bool(model.pretrained_loaded))})")
        if 0 < y_pool.sum() < len(y_pool):
            from gsscreen.evaluation.roc import delong_test

            d = delong_test(y_pool, preds["p_gs"].to_numpy(), preds["baseline_p_gs"].to_numpy())
            metrics["model_vs_baseline_delong"] = d._asdict()
    preds = preds.drop(columns=["row"])
    rf.atomic_write_csv(run_dir / "predictions.csv", preds.assign(photo=rf.photos_relative_to_cohort(run_dir,
                                                                                         preds["photo"])))
    if ext_parts:
        rf.atomic_write_csv(run_dir / "external_predictions.csv", pd.concat(ext_parts, ignore_index=True))
    rf.atomic_write_json(run_dir / "metrics.json", metrics)
    log.info("study finished:\n%s", summary_table(metrics).to_string())
    return StudyResult(run_dir, metrics, preds, fail_df)
