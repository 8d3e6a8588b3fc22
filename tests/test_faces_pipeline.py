"""Batch alignment: outputs, failures as values, the content-addressed cache, inputs, the CLI."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from gsscreen.config import load_config
from gsscreen.faces import AlignConfig, align_cohort
from gsscreen.faces.pipeline import ALIGNED_COLUMNS, LANDMARK_COLUMNS, config_key


@pytest.fixture()
def mixed_batch(tmp_path: Path, astronaut: np.ndarray, grace_hopper: np.ndarray) -> dict[str, Path]:
    d = tmp_path / "photos"
    d.mkdir()
    files = {
        "astronaut": d / "astronaut.png",
        "hopper": d / "hopper.jpg",
        "empty": d / "empty.jpg",
        "text": d / "text.jpg",
        "truncated": d / "truncated.jpg",
        "noise": d / "noise.png",
        "missing": d / "missing.jpg",
    }
    Image.fromarray(astronaut).save(files["astronaut"])
    Image.fromarray(grace_hopper).save(files["hopper"], quality=92)
    files["empty"].write_bytes(b"")
    files["text"].write_text("hello")
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="JPEG")
    files["truncated"].write_bytes(buf.getvalue()[:3000])
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(files["noise"])
    return files


EXPECTED_PROBLEMS = {
    "empty": "empty file",
    "text": "not an image",
    "truncated": "truncated",
    "noise": "no face found",
    "missing": "file not found",
}


def test_batch_good_and_bad(tmp_path: Path, mixed_batch: dict[str, Path]) -> None:
    out = tmp_path / "out"
    res = align_cohort(list(mixed_batch.values()), out, AlignConfig(workers=2, size=160), progress=False)
    assert sorted(Path(p).stem for p in res.aligned["image"]) == ["astronaut", "hopper"]
    assert list(res.aligned.columns) == ALIGNED_COLUMNS
    fails = dict(zip(res.failures["image"], res.failures["problem"], strict=True))
    assert len(fails) == len(EXPECTED_PROBLEMS)
    for key, words in EXPECTED_PROBLEMS.items():
        assert words in fails[str(mixed_batch[key])], (key, fails[str(mixed_batch[key])])
    # Files on disk agree with the returned tables.
    assert pd.read_csv(res.failures_csv).shape == (5, 2)
    table = pd.read_csv(res.landmarks_csv)
    assert len(table) == 2 and set(LANDMARK_COLUMNS) <= set(table.columns)
    for _, row in table.iterrows():
        crop = np.asarray(Image.open(res.landmarks_csv.parent / row["crop"]))
        assert crop.shape == (160, 160, 3)
        assert Path(row["crop"]).name.startswith(Path(row["image"]).stem + "-")
        lm = row[LANDMARK_COLUMNS].to_numpy(float).reshape(5, 2)
        assert (lm > 0).all() and (lm < 160).all() and lm[0, 0] < lm[1, 0]
        assert 0.0 <= row["outside"] < 0.5  # share of the crop outside the photo: these portraits have room
    assert res.qc_sheet is not None and Image.open(res.qc_sheet).size[0] > 0
    assert load_config(AlignConfig, res.config_json) == AlignConfig(workers=2, size=160)


def test_relative_output_folder_stays_readable(tmp_path: Path, mixed_batch: dict[str, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Aligned into a relative folder: the table holds absolute crop paths, landmarks.csv paths relative to its own
    folder, and the report's reader finds every crop from another working directory and after a move."""
    from gsscreen.report.run import read_landmarks

    monkeypatch.chdir(tmp_path)
    res = align_cohort([mixed_batch["astronaut"], mixed_batch["hopper"]], Path("run") / "aligned",
                       AlignConfig(size=96), progress=False)
    assert all(Path(c).is_absolute() and Path(c).is_file() for c in res.aligned["crop"])
    assert all(c.startswith("crops/") for c in pd.read_csv(res.landmarks_csv)["crop"])
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run").rename(tmp_path / "elsewhere" / "run")
    monkeypatch.chdir(tmp_path / "elsewhere" / "run")
    problems: list[str] = []
    found = read_landmarks(tmp_path / "elsewhere" / "run" / "aligned" / "landmarks.csv", problems)
    assert len(found) == 2 and not problems
    assert all(crop.is_file() for crop, _lm in found.values())


def test_cache_second_run_hits(tmp_path: Path, mixed_batch: dict[str, Path]) -> None:
    paths = [mixed_batch[k] for k in ("astronaut", "hopper", "noise", "text")]
    cfg = AlignConfig(workers=1)
    first = align_cohort(paths, tmp_path / "a", cfg, progress=False)
    second = align_cohort(paths, tmp_path / "b", cfg, progress=False)
    assert first.n_cached == 0
    assert second.n_cached == 4  # crops and failures both come from the cache
    assert second.aligned["cached"].all()
    for c1, c2 in zip(first.aligned["crop"], second.aligned["crop"], strict=True):
        assert Path(c1).read_bytes() == Path(c2).read_bytes()
    pd.testing.assert_frame_equal(first.failures, second.failures)
    # A setting that changes the crop is a different cache key; --no-cache bypasses the cache.
    assert config_key(AlignConfig(size=112)) != config_key(cfg)
    assert config_key(AlignConfig(workers=2, qc_count=3)) == config_key(cfg)
    assert align_cohort(paths, tmp_path / "c", AlignConfig(size=112, workers=1), progress=False).n_cached == 0
    assert align_cohort(paths, tmp_path / "d", AlignConfig(cache=False, workers=1), progress=False).n_cached == 0


def test_cache_keys_on_content_not_name(tmp_path: Path, mixed_batch: dict[str, Path]) -> None:
    cfg = AlignConfig(workers=1)
    align_cohort([mixed_batch["astronaut"]], tmp_path / "a", cfg, progress=False)
    renamed = tmp_path / "renamed.png"
    renamed.write_bytes(mixed_batch["astronaut"].read_bytes())
    res = align_cohort([renamed], tmp_path / "b", cfg, progress=False)
    assert res.n_cached == 1 and Path(res.aligned["crop"][0]).name.startswith("renamed-")


def test_accepts_dataframe_and_cohort(tmp_path: Path, mixed_batch: dict[str, Path]) -> None:
    table = pd.DataFrame({"image": [str(mixed_batch["astronaut"]), str(mixed_batch["missing"])], "label": ["GS", "GS"]})
    res = align_cohort(table, tmp_path / "df", AlignConfig(workers=1), progress=False)
    assert len(res.aligned) == 1 and len(res.failures) == 1
    cohort_mod = pytest.importorskip("gsscreen.cohort")
    cohort = cohort_mod.Cohort(table=table)
    res2 = align_cohort(cohort, tmp_path / "co", AlignConfig(workers=1), progress=False)
    assert list(res2.aligned["image"]) == list(res.aligned["image"])
    with pytest.raises(ValueError, match="'image' column"):
        align_cohort(pd.DataFrame({"path": ["x"]}), tmp_path / "bad", AlignConfig(workers=1), progress=False)


def test_cli_align_folder_and_examples(tmp_path: Path, mixed_batch: dict[str, Path]) -> None:
    from gsscreen.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    r = runner.invoke(app, ["align", str(mixed_batch["astronaut"].parent), "-o", str(out), "--size", "128",
                            "--workers", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert "aligned 2 of 6 photos" in r.output  # the folder holds 6 files (missing.jpg is not one)
    assert "no face found" in r.output and "QC sheet" in r.output
    assert load_config(AlignConfig, out / "config.json").size == 128
    r2 = runner.invoke(app, ["align", "-o", str(tmp_path / "ex"), "--workers", "1", "-q"])
    assert r2.exit_code == 0, r2.output
    assert "embedded example portraits" in r2.output and "aligned 2 of 2" in r2.output
    assert len(list((tmp_path / "ex" / "crops").glob("*.png"))) == 2


def test_cli_csv_and_glob_inputs(tmp_path: Path, mixed_batch: dict[str, Path]) -> None:
    from gsscreen.commands.align import collect_inputs

    csv = tmp_path / "cohort.csv"
    pd.DataFrame({"image": ["photos/astronaut.png", "photos/hopper.jpg"], "label": ["GS", "control"]}).to_csv(
        csv, index=False
    )
    paths, notes = collect_inputs([str(csv), str(tmp_path / "photos" / "*.png"), str(tmp_path / "nothing*.jpg")])
    names = [p.name for p in paths]
    assert names[:2] == ["astronaut.png", "hopper.jpg"]
    assert "noise.png" in names and names.count("astronaut.png") == 1
    assert notes and "matched no file" in notes[0]


@pytest.mark.shared
def test_real_photos_sample(tmp_path: Path, shared_data: Path) -> None:
    """A few dozen development photos align (rates over the whole sets are in benchmarks/bench_align.py)."""
    photos = sorted((shared_data / "ds-kaggle" / "healthy").glob("*.jpg"))[:12]
    photos += sorted((shared_data / "utk-kids").glob("*.jpg"))[:12]
    if len(photos) < 24:
        pytest.skip("development photos not found")
    res = align_cohort(photos, tmp_path / "real", AlignConfig(workers=2), progress=False)
    assert len(res.aligned) >= 23
    assert (res.aligned["score"] > 0.7).all()


def test_align_cli_reports_a_cohort_csv_without_its_columns(tmp_path):
    from typer.testing import CliRunner

    from gsscreen.cli import app

    csv = tmp_path / "bad.csv"
    csv.write_text("photo,diagnosis\na.jpg,GS\n")
    res = CliRunner().invoke(app, ["align", str(csv), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "bad.csv" in res.output and "image" in res.output
    # A clean exit with the message, not a traceback: the only "exception" CliRunner sees is the exit itself.
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output
