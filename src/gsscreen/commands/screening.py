"""`gsscreen` sub-commands for the screening area: ``export`` (run folder → model pack), ``screen`` (photos →
P(GS), call, heatmap, quality flags) and ``serve`` (the local screening web app + JSON API)."""

from __future__ import annotations

from pathlib import Path

import typer


def _parse_age_range(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        lo, hi = (float(v) for v in text.replace("–", "-").split("-", 1))
    except ValueError:
        raise typer.BadParameter(f"age range must look like 24-120 (months), got {text!r}") from None
    if not 0 <= lo <= hi:
        raise typer.BadParameter(f"age range needs 0 <= low <= high, got {text!r}")
    return lo, hi


_OP_HELP = ("Operating point of the model pack: screening (validation sensitivity ≥ 0.95) or balanced (Youden); "
            "default: the pack's own default (see its model card).")
_PREV_HELP = ("Share of children with a genetic syndrome among those you screen (e.g. 0.02): P(GS) is adjusted "
              "from the training prevalence to this one (the call does not change).")


def _trusted(paths: list[Path] | None) -> list | None:
    from gsscreen.packsign import load_public_key

    return [load_public_key(p) for p in paths] if paths else None


TRUSTED_KEY_HELP = ("Ed25519 public key (PEM) the model pack must be signed with; repeat for several. The shipped "
                    "demo pack is always checked against its own key.")


def _load(model: Path | None, trusted_key: list[Path] | None = None, operating_point: str | None = None,
          prevalence: float | None = None):  # -> ScreeningModel
    return _load_later(model, trusted_key, operating_point, prevalence)[1]()


def _load_later(model: Path | None, trusted_key: list[Path] | None = None, operating_point: str | None = None,
                prevalence: float | None = None):  # -> (ScreeningModel, Callable[[], ScreeningModel])
    """The pack read and verified now, without torch: ``(a preparation-only model, a function that loads the
    networks)``; the second part takes seconds (importing torch, building the networks), so ``screen`` runs it
    while photos are already being prepared. A pack or decision error exits 2 with one red line, from either."""
    from gsscreen.decision import DecisionError
    from gsscreen.modelpack import ModelPackError, load_model_pack, read_pack_info
    from gsscreen.screening import ScreeningModel, resolve_model

    try:
        path, is_demo = resolve_model(model)
    except FileNotFoundError as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(2) from None
    if is_demo:
        typer.secho(f"no --model given: using the shipped demo model ({path.name}; Down syndrome only, a "
                    "demonstration, not a medical device)", err=True, fg="yellow")

    def decided(m: ScreeningModel) -> ScreeningModel:
        if operating_point is not None or prevalence is not None:
            m.set_decision(operating_point, prevalence)
        return m

    def failed(exc: Exception) -> typer.Exit:
        typer.secho(str(exc), err=True, fg="red")
        return typer.Exit(2)

    try:
        contents = read_pack_info(path, _trusted(trusted_key))
        light = decided(ScreeningModel.for_preparation(contents))
    except (ModelPackError, DecisionError) as exc:
        raise failed(exc) from None

    def networks() -> ScreeningModel:
        try:
            return decided(load_model_pack(path, contents=contents))
        except (ModelPackError, DecisionError) as exc:
            raise failed(exc) from None

    return light, networks


def export(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A finished `gsscreen study` run folder."),
    output: str = typer.Option(..., "-o", "--output", help="model.gss (a zip) or DIR/ (a folder)."),
    folds: str = typer.Option("all", help="all: ensemble of every fold model; best: the best fold on validation."),
    threshold_rule: str = typer.Option(
        "pooled", help="pooled: the study's rule on pooled out-of-fold validation predictions; mean: mean of the "
        "folds' validation thresholds."),
    name: str | None = typer.Option(None, help="Model name (default: the run folder's name)."),
    description: str = typer.Option("", help="What the model screens for, one line."),
    age_range: str | None = typer.Option(None, help="Ages of the training cohort in months, e.g. 12-180."),
    cohort: Path | None = typer.Option(None, help="Cohort CSV to read the age range from (age_months)."),
    demo: bool = typer.Option(False, help="Write the demo model's card (Down syndrome only, not a medical device)."),
    operating_point: str = typer.Option("screening", help="Default operating point of the pack: screening "
                                        "(validation sensitivity ≥ 0.95) or balanced (Youden)."),
    sign: Path | None = typer.Option(None, "--sign", help="Sign the pack with this Ed25519 private key (PEM)."),
    weights_dtype: str = typer.Option(
        "float32", help="Storage of the trained weights: float32, float16 (half the size) or qdelta8 (int8 "
        "differences from the installed backbone weights; fine-tuned packs about 1/6; see gsscreen.packquant)."),
) -> None:
    """Package a trained study as one model file (weights + model.json + MODEL_CARD.md)."""
    from gsscreen.modelpack import ExportConfig, ModelPackError, export_model_pack, read_model_pack

    cfg = ExportConfig(folds=folds, threshold_rule=threshold_rule, name=name, demo=demo,
                       age_range_months=_parse_age_range(age_range), cohort=str(cohort) if cohort else None,
                       description=description, operating_point=operating_point, weights_dtype=weights_dtype)
    try:
        out = export_model_pack(run_dir, output, cfg)
        signer = None
        if sign is not None:
            from gsscreen.packsign import sign_model_pack

            signer = sign_model_pack(out, sign)
        info = read_model_pack(out).info
    except (ModelPackError, FileNotFoundError) as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(2) from None
    size = sum(p.stat().st_size for p in out.iterdir()) if out.is_dir() else out.stat().st_size
    typer.echo(f"wrote {out} ({size / 1e6:.1f} MB): {info['backbone']}, {info['n_folds']} fold model(s), "
               f"threshold {info['threshold']:.4f} ({info['threshold_rule']})"
               + (f"; signed with key {signer}" if signer else ""))
    cal = info.get("calibration")
    if cal:
        ops = ", ".join(f"{k} {v['threshold']:.3f} (validation sensitivity {v['sensitivity']:.2f}, specificity "
                        f"{v['specificity']:.2f})" for k, v in info["operating_points"].items())
        typer.echo(f"P(GS) calibrated with {cal['map']['method']} at the training prevalence "
                   f"{cal['train_prevalence']:.3f}; operating points: {ops}; default {info['default_operating_point']}")
    else:
        typer.secho("no pooled validation predictions: P(GS) is not calibrated and the pack has one threshold",
                    err=True, fg="yellow")


def screen(
    photos: list[str] = typer.Argument(..., metavar="PHOTO",
        help="Photos, folders (searched recursively) or glob patterns."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Model pack (default: the shipped demo model)."),
    age_months: float | None = typer.Option(None, "--age-months", help="Age of the child in months (one for all)."),
    no_heatmap: bool = typer.Option(False, "--no-heatmap", help="Skip the Grad-CAM heatmaps (faster)."),
    regions: bool = typer.Option(False, "--regions", help="Also the facial-region bars beside each heatmap: the "
                                 "drop in P(GS) when each region is greyed out (5 more model passes a photo)."),
    output: Path = typer.Option(Path("screening"), "-o", "--output", help="Output folder (CSV, JSON, heatmaps)."),
    operating_point: str | None = typer.Option(None, "--operating-point", help=_OP_HELP),
    prevalence: float | None = typer.Option(None, "--prevalence", help=_PREV_HELP),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Photos per model batch (and per table write)."),
    workers: int = typer.Option(2, "--workers", min=0, help="Processes that decode and align; 0 = in this process."),
    face: str = typer.Option("largest", "--face", help="Which face: 'largest' (one row per photo; every face is "
                             "boxed in heatmaps/<photo>_faces.png) or 'all' (each face its own row)."),
    runtime: str = typer.Option("auto", "--runtime", help="The shared frozen body on auto (ONNX Runtime when it "
                                "can be exported and matches torch) or torch."),
    trusted_key: list[Path] = typer.Option([], "--trusted-key", metavar="PEM", help=TRUSTED_KEY_HELP),
) -> None:
    """Screen face photos: P(GS), the call at the model's threshold, a heatmap and photo-quality flags.

    Results are appended to results.csv / results.jsonl a batch at a time: rerun the same command (same -o) after
    an interruption and it skips the photos already screened."""
    from gsscreen.screening import DISCLAIMER, ScreenConfig, format_table, screen_batch

    if age_months is not None and age_months < 0:
        raise typer.BadParameter("--age-months must be >= 0")
    m, networks = _load_later(model, trusted_key, operating_point, prevalence)  # networks: while photos are read
    cfg = ScreenConfig(inputs=list(photos), model=str(m.path) if m.path else None, age_months=age_months,
                       heatmap=not no_heatmap, out_dir=str(output), quality=m.quality, batch_size=batch_size,
                       workers=workers, runtime=runtime, face=face, regions=regions)
    if regions and no_heatmap:
        raise typer.BadParameter("--regions needs the heatmap: drop --no-heatmap")
    if face not in ("largest", "all"):
        raise typer.BadParameter("--face must be 'largest' or 'all'")
    table = screen_batch(m, cfg, progress=True, networks=networks)
    d = m.decision
    typer.echo(f"model {m.model_id}: operating point {d.operating_point.name}, threshold {m.threshold:.4f}; P(GS) "
               + (("calibrated" + (f", adjusted to prevalence {d.prevalence:g}" if d.prevalence else
                                   f" at the training prevalence {d.train_prevalence:.3f}"))
                  if d.calibrated else "not calibrated (older model pack)"))
    shown = 200  # an archive run would flood the terminal: the full table is in results.csv
    typer.echo(format_table(table.head(shown)))
    if len(table) > shown:
        typer.echo(f"… {len(table) - shown} more row(s) in {output}/results.csv")
    n_bad = int(table["p_gs"].isna().sum())
    typer.echo(f"\n{len(table) - n_bad} photo(s) screened, {n_bad} not screened; results in {output}/results.csv "
               f"and results.json" + ("" if no_heatmap else f", heatmaps in {output}/heatmaps/"))
    typer.secho(DISCLAIMER, fg="yellow")


def serve(
    model: Path | None = typer.Option(None, "--model", "-m", help="Model pack (default: the shipped demo model)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, help="TCP port."),
    token: str | None = typer.Option(None, envvar="GSSCREEN_TOKEN",
                                      help="API token (Authorization: Bearer); required off loopback."),
    audit_db: Path = typer.Option(Path("screen_audit.sqlite"), help="SQLite audit log (no pixels are stored)."),
    max_upload_mb: float = typer.Option(20.0, help="Largest accepted upload, MB."),
    operating_point: str | None = typer.Option(None, "--operating-point", help=_OP_HELP),
    prevalence: float | None = typer.Option(None, "--prevalence", help=_PREV_HELP),
    trusted_key: list[Path] = typer.Option([], "--trusted-key", metavar="PEM", help=TRUSTED_KEY_HELP),
    allow_host: list[str] = typer.Option([], "--allow-host", metavar="HOST",
                                         help="A host name the app may be reached under (besides localhost and IP "
                                              "addresses); repeat for several."),
    max_batch: int | None = typer.Option(None, "--max-batch", min=1, help="Most concurrent photos screened as one "
                                         "model batch (default: the measured best, see benchmarks/bench_service.py)."),
) -> None:
    """Run the local screening web app and JSON API (POST /api/screen; schema at /openapi.json, docs at /docs)."""
    from gsscreen.web.screen_app import ScreenAppConfig, check_bind, serve_app

    cfg = ScreenAppConfig(model=str(model) if model else None, host=host, port=port, token=token,
                          audit_db=str(audit_db), max_upload_mb=max_upload_mb, allowed_hosts=tuple(allow_host),
                          **({"max_batch": max_batch} if max_batch else {}))
    try:
        check_bind(cfg)
    except ValueError as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(2) from None
    m = _load(model, trusted_key, operating_point, prevalence)
    serve_app(cfg, m)


def register(app: typer.Typer) -> None:
    """Attach this area's commands to the root app."""
    app.command("export")(export)
    app.command("screen")(screen)
    app.command("serve")(serve)
