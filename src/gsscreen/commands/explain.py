"""`gsscreen explain`: Grad-CAM heatmaps of a study's test photos, each by the fold model that tested it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer


@dataclasses.dataclass
class ExplainConfig:
    """Settings of one ``gsscreen explain`` run (saved as ``config.json`` in the output folder)."""

    run_dir: str = ""
    which: str = "gs"  # "gs" (the paper's Fig. 3: the GS photos) or "all"
    max_maps: int | None = None  # None = every selected photo
    cover_eyes: bool = True  # grey bar over the eyes in every exported figure (the paper's privacy measure)
    cam: str = ""  # METHOD:LAYER[,LAYER] (gsscreen.explain_cam); "" = the backbone's measured default


def explain(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="Run folder written by `gsscreen study`."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default RUN_DIR/explain)."),
    which: str = typer.Option("gs", "--which", help="gs (GS photos, as the paper's figure) or all."),
    max_maps: int | None = typer.Option(None, "--max", help="At most this many maps (default: all)."),
    cover_eyes: bool = typer.Option(True, "--cover-eyes/--no-cover-eyes",
                                    help="Grey bar over the eyes in every exported overlay (default on)."),
    cam: str = typer.Option("", "--cam", help="Heatmap as METHOD:LAYER[,LAYER], e.g. gradcam:body.4 or "
                            "layercam:body.2,body.4 (default: the backbone's measured default)."),
) -> None:
    """Grad-CAM for every test photo of a study with the fold model that never trained on it: overlay PNGs,
    explain.csv (P(GS), on-face share, mainly-on-face), a gallery (PNG + SVG) and the count of maps that fall
    mainly on the face versus hair, clothes or background (the paper: 217 of 228 GS maps on the face)."""
    from gsscreen.config import save_config
    from gsscreen.explain import gallery
    from gsscreen.explain_cam import CamSpec
    from gsscreen.explain_regions import fold_summary, fold_summary_lines
    from gsscreen.report.gallery import fold_gradcams
    from gsscreen.report.run import load_run

    cfg = ExplainConfig(run_dir=str(run_dir), which=which, max_maps=max_maps, cover_eyes=cover_eyes, cam=cam)
    if which not in ("gs", "all"):
        raise typer.BadParameter("--which must be gs or all")
    try:
        spec = CamSpec.parse(cam) if cam else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    run = load_run(run_dir)
    out = out or run_dir / "explain"
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.json")
    res = fold_gradcams(run, out / "overlays", which=which, max_maps=max_maps, cover_eyes=cover_eyes, cam=spec)
    for p in res.problems:
        typer.echo(f"warning: {p}", err=True)
    if res.rows.empty:
        typer.echo("no maps could be computed (see the warnings above)", err=True)
        raise typer.Exit(1)
    res.rows.to_csv(out / "explain.csv", index=False)
    g = gallery(res.rows.to_dict("records"), out / "gallery.png", cover_eyes=cover_eyes)
    summary = fold_summary(res.rows)
    (out / "regions.json").write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    for line in fold_summary_lines(summary, "GS photos" if which == "gs" else "these photos"):
        typer.echo(line)
    typer.echo(f"{g.summary}; overlays in {out / 'overlays'}, table {out / 'explain.csv'}, gallery {g.png}")


def register(app: typer.Typer) -> None:
    """Attach `explain` to the root app."""
    app.command("explain")(explain)
