"""External validation: a fixed model (a model pack, or a study's fold models) on a labelled cohort it never saw.

The output folder has the files a study's run folder has, so the same report reads it (minus the folds):

- ``predictions.csv``: one row per photo the model made a call on (``photo`` (relative to the cohort CSV, as in a
  study), ``subject, label, fold`` (= 0),
  ``p_gs, call, threshold`` and the cohort's ``syndrome`` / ``age_months`` / ``sex`` where given);
- ``failures.csv``: every photo left out, with the stage and reason (cohort problems, no face, the quality gate);
- ``splits.csv``: the bootstrap clusters (``group``: subject ids, identical files and, with ``same_child``,
  likely-same-child clusters);
- ``metrics.json`` (``kind = "external_validation"``; the accuracy measures at the pack's threshold, the pooled
  ROC with its CI band), ``config.json`` (what was evaluated), ``cohort_source.json``;
- ``screening/``: the raw screening output (results.csv with quality measures);
- ``report/report.html``: the report (accuracy with CIs, calibration, decision curve, subgroups, flow).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gsscreen.errors import GsscreenError

log = logging.getLogger(__name__)


class EvaluationError(GsscreenError, ValueError):
    """The model or cohort cannot be evaluated (names the file and the problem)."""


@dataclass
class EvaluateConfig:
    """Settings of ``gsscreen evaluate`` (saved as ``config.json``)."""

    model: str = ""
    cohort: str = ""
    out_dir: str = "evaluation"
    same_child: bool = False
    same_child_threshold: float = 0.80
    subgroups: list[str] = field(default_factory=list)
    prevalence: float | None = None
    n_boot: int = 1000
    seed: int = 0
    workers: int = 2
    report: bool = True


def _pack_for(model: Path, out: Path) -> Path:
    """A model pack path: ``model`` itself, or a pack exported from a study run folder into ``out``."""
    if model.is_dir() and (model / "config.json").is_file() and any(model.glob("fold_*")):
        from gsscreen.modelpack import export_model_pack

        pack = out / "model_from_study.gss"
        log.info("exporting the fold models of %s as an ensemble pack %s", model, pack)
        return export_model_pack(model, pack)
    if not model.exists():
        raise EvaluationError(f"{model}: model pack or study run folder not found")
    return model


def evaluate(cfg: EvaluateConfig, progress: bool = True) -> Path:
    """Run the external validation described by ``cfg`` into ``cfg.out_dir``; returns the output folder."""
    from gsscreen.cohort import load_cohort
    from gsscreen.evaluation.metrics import binary_metrics, summarize_folds
    from gsscreen.evaluation.roc import pooled_roc_summary
    from gsscreen.groups import split_groups
    from gsscreen.modelpack import load_model_pack
    from gsscreen.screening import ScreenConfig, screen_batch

    out = Path(cfg.out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    cohort = load_cohort(cfg.cohort, check_images=False)
    table = cohort.ok_table().reset_index(drop=True)
    failures = [{"file": p.file or "", "problem": f"[{p.kind}] {p.message}", "stage": "cohort"}
                for p in cohort.blocking_problems]
    if table.empty:
        raise EvaluationError(f"{cfg.cohort}: no usable labelled photos")
    pack = _pack_for(Path(cfg.model).expanduser(), out)
    model = load_model_pack(pack)
    images = table["image"].astype(str).tolist()
    res = screen_batch(model, ScreenConfig(inputs=images, model=str(pack), heatmap=False,
                                           out_dir=str(out / "screening"), workers=cfg.workers), progress=progress)
    by_file = {str(r["file"]): r for r in res.to_dict("records")}
    keep, p_gs = [], []
    for i, img in enumerate(images):
        r = by_file.get(img)
        if r is None:
            failures.append({"file": img, "problem": "not screened", "stage": "screen"})
        elif r.get("problem") and not isinstance(r.get("problem"), float):
            failures.append({"file": img, "problem": str(r["problem"]), "stage": "align"})
        elif str(r.get("outcome")) == "inconclusive":
            failures.append({"file": img, "problem": f"quality gate: {r.get('reasons') or 'inconclusive'}",
                             "stage": "quality"})
        elif r.get("p_gs") is None or not np.isfinite(float(r["p_gs"])):
            failures.append({"file": img, "problem": "no P(GS)", "stage": "screen"})
        else:
            keep.append(i)
            p_gs.append(float(r["p_gs"]))
    used = table.iloc[keep].reset_index(drop=True)
    if used.empty:
        raise EvaluationError(f"{cfg.cohort}: the model made no call on any photo (see {out / 'failures.csv'})")
    thr = float(model.threshold) if hasattr(model, "threshold") else 0.5
    p = np.asarray(p_gs)
    y = (used["label"] == "GS").to_numpy(int)
    preds = pd.DataFrame({"photo": used["image"], "subject": used["subject_id"], "label": used["label"], "fold": 0,
                          "p_gs": p.round(6), "call": np.where(p >= thr, "GS", "control"), "threshold": thr})
    for c in ("syndrome", "age_months", "sex", *cfg.subgroups):
        if c in used.columns and c not in preds.columns:
            preds[c] = used[c].to_numpy()
    grouped = used
    if cfg.same_child:
        from gsscreen.identity import likely_same_child

        grouped, _, _ = likely_same_child(used, cfg.same_child_threshold)
    splits = pd.DataFrame({"photo": used["image"], "subject": used["subject_id"], "label": used["label"],
                           "subset": 0, "group": split_groups(grouped).to_numpy()})
    # Paths relative to the cohort CSV, as a study's run folder writes them (the folder stays valid when the photos
    # move together with their table); cohort_source.json first, because the report resolves them through it.
    from gsscreen.training.run_folder import photos_relative_to_cohort

    src = cohort.source.resolve() if cohort.source else None
    (out / "cohort_source.json").write_text(json.dumps({"cohort_csv": str(src) if src else None}), encoding="utf-8")
    preds.assign(photo=photos_relative_to_cohort(out, preds["photo"])).to_csv(out / "predictions.csv", index=False)
    splits.assign(photo=photos_relative_to_cohort(out, splits["photo"])).to_csv(out / "splits.csv", index=False)
    pd.DataFrame(failures, columns=["file", "problem", "stage"]).to_csv(out / "failures.csv", index=False)
    both = 0 < y.sum() < len(y)
    point = binary_metrics(y, p, thr)
    metrics: dict[str, Any] = {
        "kind": "external_validation", "n_photos": len(y), "n_gs": int(y.sum()), "n_control": int(len(y) - y.sum()),
        "n_failures": len(failures), "folds": 1, "threshold": thr, "model_id": getattr(model, "model_id", ""),
        "model": {"per_fold": [{"fold": 0, **point}], "summary": summarize_folds([point]),
                  "pooled_roc": pooled_roc_summary(y, p, n_boot=200, seed=cfg.seed) if both else None,
                  "external": {}},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json), encoding="utf-8")
    conf = asdict(cfg) | {"model_pack": str(pack), "model_id": metrics["model_id"], "threshold": thr}
    (out / "config.json").write_text(json.dumps({"evaluation": conf}, indent=2, default=_json), encoding="utf-8")
    (out / "versions.json").write_text(json.dumps(_versions(), indent=2), encoding="utf-8")
    if cfg.report:
        build_evaluation_report(out, cfg.subgroups, cfg.prevalence, cfg.n_boot, cfg.seed)
    return out


def _json(v: Any) -> Any:
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    return str(v)


def _versions() -> dict[str, Any]:
    from gsscreen.training.run_folder import versions

    return versions()


def build_evaluation_report(out_dir: str | Path, subgroups: Sequence[str] = (), prevalence: float | None = None,
                            n_boot: int = 1000, seed: int = 0) -> Path:
    """The external-validation report of an :func:`evaluate` folder: the study report's cohort flow, accuracy with
    CIs, calibration, decision curve and subgroups (no folds, no Grad-CAM gallery)."""
    from gsscreen.report import figures as F
    from gsscreen.report.evidence import evidence_sections
    from gsscreen.report.flow import flow_figure, participant_flow
    from gsscreen.report.html import Section, _version, cohort_section, config_section, write_report
    from gsscreen.report.run import load_run

    run = load_run(out_dir)
    report_dir = run.run_dir / "report"
    fig_dir = report_dir / "figures"
    flow = participant_flow(run)
    saved = {"flow": F.save_figure(flow_figure(flow), fig_dir, "participant_flow")}
    evidence = evidence_sections(run, fig_dir, subgroups, prevalence, n_boot=n_boot, seed=seed)
    sections = [cohort_section(run, flow, saved["flow"]), *(Section(**d) for d in evidence), config_section(run, saved)]
    for s in sections:
        if s.id == "calibration":  # the same numbers, for a fixed model on new photos
            s.id = "evaluation"
            s.title = "External validation: accuracy with confidence intervals, calibration, net benefit"
    return write_report(sections, report_dir / "report.html", report_dir,
                        heading="gsscreen external validation report", run_name=run.run_dir.name,
                        version=_version(), problems=list(run.problems))
