from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from gsscreen.cli import app
from gsscreen.cohort import (
    CONTROL,
    GS,
    CohortError,
    cohort_from_folders,
    load_cohort,
    near_duplicate_pairs,
    normalise_label,
    normalise_sex,
    perceptual_distance,
    perceptual_hash,
    write_cohort_csv,
)


def _noise_image(seed: int, size: int = 96) -> np.ndarray:
    """A distinct synthetic photo: smooth random colour blobs (not white noise, so hashes are stable)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


def _save(arr: np.ndarray, path, **kw) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path.name


def _write_csv(path, rows: list[dict]) -> None:
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.fixture()
def clean_cohort(tmp_path):
    """Four distinct photos, two subjects per label, all columns valid."""
    rows = []
    for k, (lab, subj, age, sex) in enumerate(
        [("GS", "s1", 30, "M"), ("GS", "s2", 40, "female"), ("control", "s3", 35, "F"), ("control", "s4", 44, "boy")]
    ):
        _save(_noise_image(k), tmp_path / "img" / f"p{k}.png")
        rows.append({"image": f"img/p{k}.png", "label": lab, "subject_id": subj, "age_months": age, "sex": sex,
                     "syndrome": "down" if lab == "GS" else "", "photo_date": "2020-01-0" + str(k + 1)})
    _write_csv(tmp_path / "cohort.csv", rows)
    return tmp_path / "cohort.csv"


def test_clean_cohort_has_no_problems_and_normalises(clean_cohort, tmp_path):
    c = load_cohort(clean_cohort)
    assert c.problems == []
    t = c.table
    assert t["label"].tolist() == [GS, GS, CONTROL, CONTROL]
    assert list(c.y) == [1, 1, 0, 0]
    assert t["sex"].tolist() == ["male", "female", "female", "male"]
    assert t["age_months"].tolist() == [30.0, 40.0, 35.0, 44.0]
    assert all(p.startswith(str(tmp_path)) for p in t["image"])  # resolved to absolute paths
    assert not t["subject_inferred"].any()
    assert t["source_row"].tolist() == [2, 3, 4, 5]  # CSV line numbers
    assert t["photo_date"].dt.day.tolist() == [1, 2, 3, 4]
    s = c.summary()
    assert s["labels"] == {"GS": 2, "control": 2, "unknown": 0}
    assert s["n_subjects"] == 4 and s["subjects_given"] and s["syndromes"] == {"down": 2}
    assert s["age_months"]["n"] == 4 and s["age_months"]["mean"] == pytest.approx(37.25)
    assert s["sex"] == {"male": 2, "female": 2, "unknown": 0}
    assert len(c.ok_table()) == 4


def test_label_and_sex_normalisation():
    for v in ("GS", "gs", " GS ", "case", "Syndrome", "affected", "1"):
        assert normalise_label(v) == GS, v
    for v in ("control", "Control", "CONTROL ", "healthy", "normal", "unaffected", "ctrl", "0"):
        assert normalise_label(v) == CONTROL, v
    for v in ("sick", "GSX", "", None, "2"):
        assert normalise_label(v) is None, v
    assert [normalise_sex(v) for v in ("M", "m", "Male", "boy", "F", "female", "Girl", "", "unknown", "x")] == [
        "male", "male", "male", "male", "female", "female", "female", None, None, None]


def test_every_problem_kind_reported_at_once(tmp_path, astronaut):
    folder = tmp_path / "photos"
    # distinct photos
    for k in range(8):
        _save(_noise_image(100 + k), folder / f"ok{k}.png")
    # the same bytes under two names
    _save(_noise_image(7), folder / "twin_a.png")
    (folder / "twin_b.png").write_bytes((folder / "twin_a.png").read_bytes())
    # near-duplicate: the astronaut re-encoded as JPEG, slightly resized, under another subject
    _save(astronaut, folder / "astro.png")
    smaller = np.asarray(Image.fromarray(astronaut).resize((480, 480), Image.Resampling.LANCZOS))
    _save(smaller, folder / "astro_copy.jpg", quality=80)
    # not an image, and a truncated JPEG
    (folder / "notes.jpg").write_text("this is not a photo")
    buf = io.BytesIO()
    Image.fromarray(_noise_image(9, 256)).save(buf, format="PNG")
    (folder / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])

    rows = [
        {"image": "photos/ok0.png", "label": "GS ", "subject_id": "a", "age_months": "12", "sex": "M"},  # line 2 ok
        {"image": "photos/ok1.png", "label": "Control", "subject_id": "b", "age_months": "-3", "sex": "F"},  # 3 age
        {"image": "photos/ok2.png", "label": "sick", "subject_id": "c", "age_months": "two", "sex": "x"},  # 4
        {"image": "photos/missing.jpg", "label": "GS", "subject_id": "d", "age_months": "", "sex": ""},  # 5
        {"image": "photos/ok0.png", "label": "GS", "subject_id": "a", "age_months": "12", "sex": "M"},  # 6 dup row
        {"image": "photos/ok3.png", "label": "GS", "subject_id": "e", "age_months": "", "sex": ""},  # 7 conflict
        {"image": "photos/ok4.png", "label": "healthy", "subject_id": "e", "age_months": "", "sex": ""},  # 8
        {"image": "photos/twin_a.png", "label": "GS", "subject_id": "f", "age_months": "", "sex": ""},  # 9
        {"image": "photos/twin_b.png", "label": "GS", "subject_id": "g", "age_months": "", "sex": ""},  # 10
        {"image": "photos/astro.png", "label": "control", "subject_id": "h", "age_months": "", "sex": ""},  # 11
        {"image": "photos/astro_copy.jpg", "label": "control", "subject_id": "i", "age_months": "", "sex": ""},  # 12
        {"image": "photos/notes.jpg", "label": "GS", "subject_id": "j", "age_months": "", "sex": ""},  # 13
        {"image": "photos/truncated.png", "label": "GS", "subject_id": "k", "age_months": "", "sex": ""},  # 14
        {"image": "", "label": "GS", "subject_id": "l", "age_months": "", "sex": ""},  # 15 no path
    ]
    _write_csv(tmp_path / "cohort.csv", rows)
    c = load_cohort(tmp_path / "cohort.csv")
    found = {(p.row, p.kind) for p in c.problems}
    expected = {
        (3, "bad_age"),
        (4, "unknown_label"),
        (4, "bad_age"),
        (4, "unknown_sex"),
        (5, "missing_file"),
        (6, "duplicate_row"),
        (7, "subject_label_conflict"),
        (8, "subject_label_conflict"),
        (10, "duplicate_image"),
        (12, "near_duplicate"),
        (13, "unreadable_image"),
        (14, "unreadable_image"),
        (15, "missing_value"),
    }
    assert found == expected, sorted(found ^ expected)
    by_kind = {p.kind: p for p in c.problems}
    assert by_kind["missing_file"].file == "photos/missing.jpg" and "missing.jpg" in by_kind["missing_file"].message
    assert "'sick'" in by_kind["unknown_label"].message
    assert "line 2" in by_kind["duplicate_row"].message
    assert "line 9" in by_kind["duplicate_image"].message and "photos/twin_a.png" in by_kind["duplicate_image"].message
    assert "line 11" in by_kind["near_duplicate"].message
    # labels: whitespace/case variants and synonyms normalised, unknown kept as missing (never dropped)
    assert len(c.table) == len(rows)
    assert c.table["label"].iloc[:3].tolist()[:2] == [GS, CONTROL] and pd.isna(c.table["label"].iloc[2])
    assert c.table["label"].iloc[6] == CONTROL  # "healthy"
    # bad values become missing; blocking rows are left out of ok_table, warnings are not
    assert np.isnan(c.table["age_months"].iloc[1]) and pd.isna(c.table["sex"].iloc[2])
    ok_rows = set(c.ok_table()["source_row"])
    assert ok_rows == {2, 3, 9, 11, 12}
    with pytest.raises(CohortError, match=r"use Cohort\.ok_table"):
        _ = c.y
    s = c.summary()
    assert s["n_blocking"] == len(c.blocking_problems) == 9  # lines 4, 5, 6, 7, 8, 10, 13, 14, 15
    assert s["problems"]["near_duplicate"] == 1
    # the near-duplicate row names the photo it looks like, so the splits can keep both in one subset
    src = c.table.set_index("source_row")
    assert src.loc[12, "near_duplicate_of"] == src.loc[11, "image"]
    assert src["near_duplicate_of"].notna().sum() == 1


def test_same_photo_with_two_labels_blocks_both(tmp_path):
    _save(_noise_image(1), tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes((tmp_path / "a.png").read_bytes())
    _save(_noise_image(2), tmp_path / "c.png")
    df = pd.DataFrame({"image": ["a.png", "b.png", "c.png"], "label": ["GS", "control", "control"]})
    c = load_cohort(df, base_dir=tmp_path)  # DataFrame: rows are 0-based positions
    assert {(p.row, p.kind) for p in c.problems} == {(0, "duplicate_image"), (1, "duplicate_image")}
    assert c.ok_table()["source_row"].tolist() == [2]
    assert c.table["subject_inferred"].all() and c.table["subject_id"].nunique() == 3


def test_mirrored_copy_is_a_near_duplicate_but_distinct_photos_are_not(astronaut, grace_hopper):
    h = perceptual_hash(astronaut)
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    brighter = np.clip(astronaut.astype(int) + 20, 0, 255).astype(np.uint8)
    assert perceptual_distance(h, perceptual_hash(brighter)) <= 10
    assert perceptual_distance(h, perceptual_hash(flipped, mirror=True)) == 0
    hashes = [h, perceptual_hash(grace_hopper), perceptual_hash(flipped)]
    mirrored = [perceptual_hash(astronaut, mirror=True), perceptual_hash(grace_hopper, mirror=True),
                perceptual_hash(flipped, mirror=True)]
    assert perceptual_distance(hashes[0], hashes[1]) > 40  # two different people
    assert near_duplicate_pairs(hashes, 26) == []  # the flip is far without mirroring...
    assert near_duplicate_pairs(hashes, 26, mirrored=mirrored) == [(0, 2, 0)]  # ...and found with it


def test_grey_photos_compare_on_luma(astronaut):
    grey = np.repeat(np.asarray(Image.fromarray(astronaut).convert("L"))[..., None], 3, axis=2)
    h = perceptual_hash(grey)
    assert h & ((1 << 128) - 1) == 0  # no colour: chroma words are zero, not noise
    recoded = io.BytesIO()
    Image.fromarray(grey).save(recoded, format="JPEG", quality=70)
    h2 = perceptual_hash(np.asarray(Image.open(recoded).convert("RGB")))
    assert perceptual_distance(h, h2) <= 12


def test_missing_columns_and_missing_file_raise(tmp_path):
    _write_csv(tmp_path / "bad.csv", [{"path": "a.png", "diagnosis": "GS", "age": 3}])
    with pytest.raises(CohortError) as err:
        load_cohort(tmp_path / "bad.csv")
    msg = str(err.value)
    assert "bad.csv" in msg and "image, label" in msg and "'path'" in msg and "'diagnosis'" in msg
    with pytest.raises(CohortError, match=r"nope\.csv"):
        load_cohort(tmp_path / "nope.csv")


def test_csv_variants_semicolons_bom_and_column_case(tmp_path):
    _save(_noise_image(1), tmp_path / "a.png")
    _save(_noise_image(2), tmp_path / "b.png")
    text = "\ufeffImage ; Label;Subject ID;Age\na.png;GS;007;3\nb.png;normal;008;4\n"
    (tmp_path / "c.csv").write_text(text, encoding="utf-8")
    c = load_cohort(tmp_path / "c.csv")
    assert c.table["label"].tolist() == [GS, CONTROL]
    assert c.table["subject_id"].tolist() == ["007", "008"]  # ids stay text
    assert [p.kind for p in c.problems] == ["unused_column"] and "age_months" in c.problems[0].message


def test_from_folders_round_trip(tmp_path):
    root = tmp_path / "data"
    _save(_noise_image(1), root / "down" / "a10.jpg")
    _save(_noise_image(2), root / "down" / "a2.JPG")
    _save(_noise_image(3), root / "down" / "nested" / "deep.PNG")
    _save(_noise_image(4), root / "healthy" / "h.webp")
    (root / "healthy" / "readme.txt").write_text("not an image")
    _save(_noise_image(5), root / "other" / "ignored.png")
    df = cohort_from_folders(root, gs=("down",), control=("healthy",))
    names = [p.rsplit("/", 1)[-1] for p in df["image"]]
    assert names == ["a2.JPG", "a10.jpg", "deep.PNG", "h.webp"]  # natural order, recursive, any case
    assert df["label"].tolist() == [GS, GS, GS, CONTROL]
    assert df["syndrome"].tolist() == ["down", "down", "down", ""]
    out = write_cohort_csv(df, tmp_path / "tables" / "cohort.csv")
    written = pd.read_csv(out)
    assert written["image"].iloc[0] == "../data/down/a2.JPG"  # relative to the CSV's folder
    c = load_cohort(out)
    assert c.problems == [] and c.table["image"].tolist() == [str(p) for p in df["image"]]
    # to_csv round trip: made-up subject ids are not written, so they are made up again
    c.to_csv(tmp_path / "again.csv")
    again = load_cohort(tmp_path / "again.csv")
    assert again.table["image"].tolist() == c.table["image"].tolist()
    assert "subject_id" not in pd.read_csv(tmp_path / "again.csv").columns
    with pytest.raises(CohortError, match=r"no sub-folder 'missing'.*found: down, healthy, other"):
        cohort_from_folders(root, gs=("missing",))
    with pytest.raises(CohortError, match="both GS and control"):
        cohort_from_folders(root, gs=("down",), control=("down",))


def test_cli_from_folders_and_check(tmp_path):
    runner = CliRunner()
    root = tmp_path / "data"
    for k in range(3):
        _save(_noise_image(10 + k), root / "gs" / f"g{k}.png")
        _save(_noise_image(20 + k), root / "ctl" / f"c{k}.png")
    out = tmp_path / "cohort.csv"
    res = runner.invoke(app, ["cohort", "from-folders", str(root), "--gs", "gs", "--control", "ctl", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "6 photos (3 GS, 3 control)" in res.output
    res = runner.invoke(app, ["cohort", "check", str(out)])
    assert res.exit_code == 0, res.output
    assert "photos: 6 (3 GS, 3 control)" in res.output and "no problems found" in res.output

    # break it: a missing file (blocking) and a bad sex value (warning)
    df = pd.read_csv(out)
    df.loc[len(df)] = {"image": "data/gs/gone.png", "label": "GS", "syndrome": "gs"}
    df["sex"] = ["m", "f", "m", "?!", "f", "m", "f"]
    df.to_csv(out, index=False)
    report = tmp_path / "problems.csv"
    res = runner.invoke(app, ["cohort", "check", str(out), "--report", str(report)])
    assert res.exit_code == 1, res.output
    assert "line 8 (data/gs/gone.png): error [missing_file]" in res.output
    assert "[unknown_sex]" in res.output
    rep = pd.read_csv(report)
    assert set(rep["kind"]) == {"missing_file", "unknown_sex"}
    assert rep.set_index("kind").loc["missing_file", "row"] == 8

    res = runner.invoke(app, ["cohort", "check", str(tmp_path / "absent.csv")])
    assert res.exit_code == 2 and "absent.csv" in res.output


@pytest.mark.shared
@pytest.mark.slow
def test_ds_kaggle_from_folders(shared_data, tmp_path):
    root = shared_data / "ds-kaggle"
    df = cohort_from_folders(root, gs=("down",), control=("healthy",))
    assert len(df) == 2399 and int((df["label"] == GS).sum()) == 1200
    c = load_cohort(df)
    kinds = c.summary()["problems"]
    # Nothing missing or unreadable; the known duplicates inside down/ are found (README: "a few near-duplicate
    # photos exist inside down/"): 2 byte-identical copies plus re-encoded / mirrored ones.
    assert not {"missing_file", "unreadable_image", "unknown_label"} & set(kinds)
    dup = [p for p in c.problems if p.kind == "duplicate_image"]
    near = [p for p in c.problems if p.kind == "near_duplicate"]
    assert len(dup) >= 1 and all("/down/" in p.message or "down_" in p.message for p in dup)
    assert sum("/down/" in str(p.file) for p in near) >= 2
    assert len(near) < 30  # a handful, not a flood of look-alike faces
