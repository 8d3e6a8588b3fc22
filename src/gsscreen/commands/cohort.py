"""`gsscreen cohort ...`: build a cohort table from folders, and check one."""

from __future__ import annotations

from pathlib import Path

import typer

cohort_app = typer.Typer(
    help="Build and check cohort tables (image, label, syndrome, subject_id, age_months, sex, photo_date).",
    no_args_is_help=True,
)


@cohort_app.command("from-folders")
def from_folders(
    root: Path = typer.Argument(..., metavar="ROOT", help="Folder holding one sub-folder per group."),
    gs: list[str] = typer.Option([], "--gs", metavar="FOLDER",
        help="Sub-folder of GS photos (repeatable). Needed unless ROOT has "
             "two sub-folders and one is named like healthy or control."),
    control: list[str] = typer.Option([], "--control", metavar="FOLDER",
        help="Sub-folder of control photos (repeatable)."),
    output: Path = typer.Option(None, "-o", "--output", help="CSV to write (default: ROOT/cohort.csv)."),
    syndrome: bool = typer.Option(True, "--syndrome/--no-syndrome", help="Fill 'syndrome' from the GS folder name."),
) -> None:
    """Write a cohort CSV listing every image under the named sub-folders (recursively).

    Image paths are written relative to the CSV's folder. No subject ids are known: each photo counts as its own
    subject (add a subject_id column if children appear in several photos). Run `gsscreen cohort check` next.
    """
    from gsscreen.cohort import cohort_from_folders, folder_groups, write_cohort_csv

    out = output if output is not None else root / "cohort.csv"
    gs_dirs, control_dirs, note = folder_groups(root, gs, control)
    if note:
        typer.echo(note)
    table = cohort_from_folders(root, gs=gs_dirs, control=control_dirs, syndrome_from_folder=syndrome)
    write_cohort_csv(table, out)
    counts = table["label"].value_counts()
    typer.echo(f"wrote {out}: {len(table)} photos ({int(counts.get('GS', 0))} GS, "
               f"{int(counts.get('control', 0))} control)")
    typer.echo(f"next: gsscreen cohort check {out}")


@cohort_app.command("check")
def check(
    cohort: Path = typer.Argument(..., metavar="COHORT", help="Cohort CSV."),
    report: Path = typer.Option(None, "--report", help="Also write every problem to this CSV."),
    base_dir: Path = typer.Option(None, "--base-dir", help="Folder relative image paths start from "
                                  "(default: the CSV's folder)."),
    images: bool = typer.Option(True, "--images/--no-images", help="Open every image (existence, readability, "
                                "duplicates). --no-images checks the table only."),
    near_duplicate_distance: int = typer.Option(
        None, "--near-duplicate-distance", min=0, max=192,
        help="Max perceptual-hash distance (of 192 bits) reported as near-duplicate (default: 26).",
    ),
    no_near_duplicates: bool = typer.Option(False, "--no-near-duplicates", help="Skip the perceptual hash."),
    same_child: bool = typer.Option(False, "--same-child", help="Also align every photo (shared face cache) and "
                                    "list likely-same-child clusters (FaceNet cosine), with a contact sheet."),
    same_child_threshold: float = typer.Option(None, "--same-child-threshold", min=0.0, max=1.0,
                                               help="Cosine similarity that links two photos (default: 0.80)."),
    sheet: Path = typer.Option(None, "--sheet", help="Contact sheet PNG of the clusters "
                               "(default: COHORT's folder / <name>_same_child.png)."),
) -> None:
    """Print the cohort's summary and every problem; exit 1 if any problem blocks a row, else 0."""
    from gsscreen.cohort import DEFAULT_NEAR_DUPLICATE_DISTANCE, load_cohort

    dist = None if no_near_duplicates else (
        DEFAULT_NEAR_DUPLICATE_DISTANCE if near_duplicate_distance is None else near_duplicate_distance
    )
    c = load_cohort(cohort, base_dir=base_dir, check_images=images, near_duplicate_distance=dist, progress=False)
    for line in format_summary(c.summary()):
        typer.echo(line)
    if c.problems:
        typer.echo(f"\n{len(c.problems)} problem(s), {len(c.blocking_problems)} blocking "
                   "(rows are CSV line numbers; line 1 is the header):")
        for p in c.problems:
            typer.echo(f"  {p}")
    else:
        typer.echo("\nno problems found")
    if same_child:
        _same_child(c, cohort, same_child_threshold, sheet)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        c.problems_frame().to_csv(report, index=False)
        typer.echo(f"problems written to {report}")
    raise typer.Exit(1 if c.blocking_problems else 0)


def _same_child(c, cohort: Path, threshold: float | None, sheet: Path | None) -> None:
    """Print the likely-same-child clusters of the usable photos and write their contact sheet."""
    import tempfile

    from gsscreen.identity import DEFAULT_IDENTITY_THRESHOLD, cluster_table, contact_sheet, likely_same_child

    t = DEFAULT_IDENTITY_THRESHOLD if threshold is None else threshold
    ok = c.ok_table().reset_index(drop=True)
    with tempfile.TemporaryDirectory(prefix="gsscreen-same-child-") as tmp:
        try:
            table, emb, crops = likely_same_child(ok, t, align_dir=tmp)
        except RuntimeError as exc:  # no FaceNet weights
            typer.echo(f"likely-same-child clusters: not computed: {exc}", err=True)
            return
        clusters = cluster_table(table["identity_cluster"].to_numpy(), list(ok["image"]), emb)
        out = sheet if sheet is not None else cohort.parent / f"{cohort.stem}_same_child.png"
        crop_of = {img: cp for img, cp in zip(ok["image"], crops, strict=True) if cp}
        if len(clusters):
            contact_sheet(clusters, crop_of, out)
    n_faces = sum(cp is not None for cp in crops)
    typer.echo(f"\nlikely-same-child clusters (FaceNet cosine >= {t:.2f}, {n_faces} of {len(ok)} photos with a "
               f"face): {len(clusters)} cluster(s), {int(clusters['size'].sum()) if len(clusters) else 0} photos; "
               "the study keeps each in one subset when subject ids are missing")
    for rec in clusters.itertuples():
        names = ", ".join(Path(p).name for p in str(rec.images).split(";"))
        typer.echo(f"  cluster {rec.cluster} ({rec.size} photos, lowest cosine {rec.min_cosine:.2f}): {names}")
    if len(clusters):
        typer.echo(f"contact sheet: {out}")


def format_summary(s: dict) -> list[str]:
    """Human-readable lines of :meth:`gsscreen.cohort.Cohort.summary`."""
    lab = s["labels"]
    lines = [
        f"cohort: {s['source'] or '(table)'}",
        f"photos: {s['n_rows']} ({lab['GS']} GS, {lab['control']} control"
        + (f", {lab['unknown']} without a valid label" if lab["unknown"] else "") + ")",
        f"usable: {s['n_usable']} ({s['usable_labels']['GS']} GS, {s['usable_labels']['control']} control)",
        f"subjects: {s['n_subjects']}" + ("" if s["subjects_given"] else
                                         " (no subject_id for some photos: each counts as its own subject)"),
    ]
    if s["syndromes"]:
        lines.append("syndromes: " + ", ".join(f"{k} {v}" for k, v in s["syndromes"].items()))
    if s["age_months"]:
        a = s["age_months"]
        sd = f" ± {a['sd']:.1f}" if a["sd"] is not None else ""
        lines.append(f"age (months): n={a['n']}, mean {a['mean']:.1f}{sd}, range {a['min']:g}-{a['max']:g}")
    if s["sex"]:
        x = s["sex"]
        lines.append(f"sex: {x['male']} male, {x['female']} female, {x['unknown']} unknown")
    return lines


def register(app: typer.Typer) -> None:
    """Attach `gsscreen cohort ...` to the root app."""
    app.add_typer(cohort_app, name="cohort")
