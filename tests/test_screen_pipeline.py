"""The streaming screening pipeline: equal to the one-photo path, batches equal singles, kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from screen_support import encode, fabricate_run

from gsscreen.modelpack import ExportConfig, export_model_pack, load_model_pack
from gsscreen.screening import ScreenConfig, ScreeningModel, ScreenResult, expand_inputs
from gsscreen.screening_pipeline import RESULTS_JSONL, read_records, run_screening


@pytest.fixture(scope="module")
def pack_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pack")
    run = fabricate_run(d / "run", folds=3, unfreeze_from=4)
    return export_model_pack(run, d / "m.gss", ExportConfig(name="pipe", age_range_months=(12, 120)))


@pytest.fixture(scope="module")
def model(pack_path: Path) -> ScreeningModel:
    return load_model_pack(pack_path)


def _variants(astronaut: np.ndarray, grace: np.ndarray, n: int, side: int = 360) -> list[np.ndarray]:
    """``n`` different portraits: the two examples, mirrored, rotated a little, rescaled and brightened."""
    out = []
    for k in range(n):
        img = (astronaut, grace)[k % 2]
        if k // 2 % 2:
            img = img[:, ::-1]
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), (k % 5 - 2) * 3.0, 1.0 + 0.02 * (k % 3))
        img = cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), borderMode=cv2.BORDER_REFLECT)
        img = np.clip(img.astype(np.int16) + (k % 7) * 3, 0, 255).astype(np.uint8)
        s = side / max(h, w)
        out.append(cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA))
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray, grace_hopper: np.ndarray) -> Path:
    d = tmp_path_factory.mktemp("photos")
    for k, img in enumerate(_variants(astronaut, grace_hopper, 10)):
        (d / f"p{k:02d}.jpg").write_bytes(encode(img))
    (d / "p03b_broken.jpg").write_bytes(encode(astronaut)[:1500])
    (d / "p05b_blank.png").write_bytes(encode(np.full((100, 100, 3), 180, np.uint8), "PNG"))
    (d / "p07b_empty.jpg").write_bytes(b"")
    return d


def test_pipeline_equals_the_one_photo_path(model: ScreeningModel, folder: Path, tmp_path: Path) -> None:
    files, _ = expand_inputs([str(folder)])
    single = [model.screen_file(f, age_months=50) for f in files]
    par = run_screening(model, ScreenConfig(inputs=[str(folder)], out_dir=str(tmp_path / "par"), age_months=50,
                                            batch_size=4, workers=2), progress=False)
    run_screening(model, ScreenConfig(inputs=[str(folder)], out_dir=str(tmp_path / "seq"), age_months=50,
                                      batch_size=4, workers=0), progress=False)
    assert list(par["file"]) == files  # input order
    def text(v: object) -> str:
        return v if isinstance(v, str) else ""

    for r, s in zip(par.to_dict("records"), single, strict=True):
        assert text(r["flags"]) == ";".join(s.flags) and text(r["problem"]) == (s.problem or "")
        if s.ok:
            assert r["p_gs"] == pytest.approx(s.p_gs, abs=1e-6)
            assert r["iod_px"] == s.face["iod_px"] and r["n_faces"] == s.face["n_faces"]
            assert (tmp_path / "par" / r["heatmap"]).is_file()
        else:
            assert pd.isna(r["p_gs"])
    assert sum(s.ok for s in single) == 10
    probs = {Path(f).name: s.problem for f, s in zip(files, single, strict=True)}
    assert "truncated" in probs["p03b_broken.jpg"] and "empty" in probs["p07b_empty.jpg"]
    # workers or not, the same table (the model's thread count differs, so floats may differ in the last bits)
    seq = pd.read_csv(tmp_path / "seq" / "results.csv")
    pd.testing.assert_frame_equal(par.drop(columns=["p_gs", "fold_p_gs"]), seq.drop(columns=["p_gs", "fold_p_gs"]))
    np.testing.assert_allclose(par["p_gs"], seq["p_gs"], atol=1e-6)
    payload = json.loads((tmp_path / "par" / "results.json").read_text())
    assert [r["file"] for r in payload["results"]] == files and payload["model"]["model_id"] == model.model_id
    assert len(list(read_records(tmp_path / "par" / RESULTS_JSONL))) == len(files)


def test_a_batch_equals_single_photos(model: ScreeningModel, astronaut: np.ndarray, grace_hopper: np.ndarray) -> None:
    preps = [model.prepare(img) for img in _variants(astronaut, grace_hopper, 5)]
    assert not any(isinstance(p, ScreenResult) for p in preps)
    for heatmap in (False, True):
        batch = model.screen_prepared(preps, heatmap=heatmap)
        for p, b in zip(preps, batch, strict=True):
            one = model.screen_prepared([p], heatmap=heatmap)[0]
            np.testing.assert_allclose(b.fold_p_gs, one.fold_p_gs, atol=1e-6)
            assert b.p_gs == pytest.approx(one.p_gs, abs=1e-6) and b.flags == one.flags
            if heatmap:
                np.testing.assert_allclose(b.heatmap, one.heatmap, atol=1e-4)
            else:
                assert b.heatmap is None
    # and the batch halves equal the one-call path
    direct = model.screen(_variants(astronaut, grace_hopper, 1)[0])
    assert direct.p_gs == pytest.approx(model.screen_prepared(preps[:1])[0].p_gs, abs=1e-9)


def test_rerun_skips_done_photos_and_drops_a_torn_line(model: ScreeningModel, folder: Path, tmp_path: Path) -> None:
    cfg = ScreenConfig(inputs=[str(folder)], out_dir=str(tmp_path / "o"), batch_size=4, workers=0, heatmap=False)
    first = run_screening(model, cfg, progress=False)
    csv1 = (tmp_path / "o" / "results.csv").read_bytes()
    jl = tmp_path / "o" / RESULTS_JSONL
    lines = jl.read_text().splitlines(keepends=True)
    # a crash in the middle of the second batch: 5 complete lines and half of the sixth
    jl.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    (tmp_path / "o" / "results.csv").write_text("file,p_gs\ngarbage,1\n")
    second = run_screening(model, cfg, progress=False)
    assert (tmp_path / "o" / "results.csv").read_bytes() == csv1
    pd.testing.assert_frame_equal(first, second)
    recs = list(read_records(jl))
    kept = [r["result"]["seconds"] for r in recs[:5]]
    assert kept == [json.loads(line)["result"]["seconds"] for line in lines[:5]]  # not redone
    # other settings (a heatmap now): nothing is trusted, every photo is screened again
    third = run_screening(model, ScreenConfig(inputs=[str(folder)], out_dir=str(tmp_path / "o"), batch_size=4,
                                              workers=0, heatmap=True), progress=False)
    assert third["heatmap"].notna().sum() == 10


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                kids.append(int(d.name))
    return kids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_sigkill_in_the_middle_then_resume_gives_the_same_table(pack_path: Path, tmp_path: Path,
                                                                 astronaut: np.ndarray, grace_hopper: np.ndarray,
                                                                 model: ScreeningModel) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    n = 48
    for k, img in enumerate(_variants(astronaut, grace_hopper, n, side=640)):
        (photos / f"c{k:03d}.jpg").write_bytes(encode(img))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "gsscreen", "screen", str(photos), "--model", str(pack_path), "--batch-size", "4",
           "--workers", "2", "-o"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jl = killed / RESULTS_JSONL
    deadline = time.monotonic() + 300
    workers: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = _children(proc.pid) or workers
        if jl.is_file() and jl.read_bytes().count(b"\n") >= 12:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(read_records(jl)))
    assert 12 <= done_before < n and workers
    # the workers notice that their parent is gone and exit
    t = time.monotonic()
    while any(Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]
              for w in workers) and time.monotonic() - t < 20:
        time.sleep(0.1)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()
                and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]]
    r = subprocess.run([*cmd, str(killed)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    full = tmp_path / "full"
    r = subprocess.run([*cmd, str(full)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = (killed / "results.csv").read_bytes(), (full / "results.csv").read_bytes()
    assert a == b and a.count(b"\n") == n + 1  # identical table, rows in the same order
    recs = list(read_records(jl))
    assert len(recs) == n and sorted(os.listdir(killed / "heatmaps")) == sorted(os.listdir(full / "heatmaps"))


def test_resumption_tells_packs_with_the_same_weights_apart(model: ScreeningModel, tmp_path: Path) -> None:
    """Same weights (same model id) but another mirror-averaging setting, threshold or decision: a rerun must not
    reuse the first pack's rows; a different creation time or card text changes nothing."""
    import copy

    from gsscreen.screening_pipeline import settings_hash

    cfg = ScreenConfig(inputs=["x.jpg"], out_dir=str(tmp_path / "o"), heatmap=False)
    h = settings_hash(model, cfg)
    for key, value in (("tta_flip", not model.info.get("tta_flip", True)), ("threshold", 0.123)):
        other = copy.copy(model)
        other.info = {**model.info, key: value}
        assert other.model_id == model.model_id
        assert settings_hash(other, cfg) != h, key
    same = copy.copy(model)
    same.info = {**model.info, "created": "2000-01-01T00:00:00+00:00", "holdout_note": "other words"}
    assert settings_hash(same, cfg) == h
    # another operating point or prevalence (--operating-point, --prevalence) makes other calls: rows not reused
    for point, prevalence in (("balanced", None), (None, 0.02)):
        other = copy.copy(model)
        other.set_decision(point, prevalence)
        assert settings_hash(other, cfg) != h, (point, prevalence)


def test_networks_load_in_a_thread_while_photos_are_prepared(model: ScreeningModel, pack_path: Path, folder: Path,
                                                             tmp_path: Path) -> None:
    """The command line's path: a preparation-only model from the pack's verified metadata starts the workers, the
    networks load in a thread meanwhile; the table equals the one of the model loaded first."""
    import threading

    from gsscreen.modelpack import read_pack_info

    contents = read_pack_info(pack_path)
    light = ScreeningModel.for_preparation(contents)
    assert not light.has_networks and light.models == [] and model.has_networks
    loaded_in: list[str] = []

    def networks() -> ScreeningModel:
        loaded_in.append(threading.current_thread().name)
        return load_model_pack(pack_path, contents=contents)

    cfg = dict(inputs=[str(folder)], age_months=50, batch_size=4, workers=2)
    early = run_screening(light, ScreenConfig(**cfg, out_dir=str(tmp_path / "early")), progress=False,
                          networks=networks)
    first = run_screening(model, ScreenConfig(**cfg, out_dir=str(tmp_path / "first")), progress=False)
    assert loaded_in == ["gsscreen-load"]
    pd.testing.assert_frame_equal(early.drop(columns=["p_gs", "fold_p_gs"]), first.drop(columns=["p_gs", "fold_p_gs"]))
    np.testing.assert_allclose(early["p_gs"], first["p_gs"], atol=1e-6)
    assert sorted(os.listdir(tmp_path / "early" / "heatmaps")) == sorted(os.listdir(tmp_path / "first" / "heatmaps"))
    # the boxed photos, encoded by the workers, are the same files as those encoded here
    for f in (tmp_path / "first" / "heatmaps").glob("*_faces.png"):
        assert f.read_bytes() == (tmp_path / "early" / "heatmaps" / f.name).read_bytes()


def test_networks_that_fail_or_differ_stop_the_run(model: ScreeningModel, pack_path: Path, folder: Path,
                                                   tmp_path: Path) -> None:
    from gsscreen.modelpack import ModelPackError, read_pack_info

    light = ScreeningModel.for_preparation(read_pack_info(pack_path))
    cfg = dict(inputs=[str(folder)], batch_size=4, workers=1)
    with pytest.raises(ValueError, match="needs `networks`"):
        run_screening(light, ScreenConfig(**cfg, out_dir=str(tmp_path / "a")), progress=False)

    def broken() -> ScreeningModel:
        raise ModelPackError("m.gss: tensor fold0.x has shape [1] but model.json says [2]")

    with pytest.raises(ModelPackError, match="has shape"):
        run_screening(light, ScreenConfig(**cfg, out_dir=str(tmp_path / "b")), progress=False, networks=broken)
    other = load_model_pack(pack_path)
    other.set_decision("balanced")  # another operating point: other calls than the photos were prepared for
    with pytest.raises(ValueError, match="not the one"):
        run_screening(light, ScreenConfig(**cfg, out_dir=str(tmp_path / "c")), progress=False,
                      networks=lambda: other)


def test_preparation_only_model_prepares_as_the_loaded_one(model: ScreeningModel, pack_path: Path,
                                                           astronaut: np.ndarray) -> None:
    """Built from the pack's metadata alone, without importing torch (checked in a fresh interpreter), it prepares
    a photo exactly as the loaded pack's preprocessor does."""
    from gsscreen.modelpack import read_pack_info

    light = ScreeningModel.for_preparation(read_pack_info(pack_path))
    a, b = light.prepare(astronaut, age_months=40), model.preprocessor().prepare(astronaut, age_months=40)
    assert np.array_equal(a.crop, b.crop) and np.array_equal(a.model_input, b.model_input)
    assert (a.flags, a.reasons, a.notes, a.face, a.usable) == (b.flags, b.reasons, b.notes, b.face, b.usable)
    assert light.threshold == model.threshold and light.model_id == model.model_id
    code = ("import sys; from gsscreen.modelpack import read_pack_info; from gsscreen.screening import "
            f"ScreeningModel; m = ScreeningModel.for_preparation(read_pack_info({str(pack_path)!r})); "
            "print('torch' in sys.modules, m.has_networks)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "False"]


def test_workers_run_below_this_process_priority(model: ScreeningModel, folder: Path, tmp_path: Path) -> None:
    """The workers prepare ahead of the model: when both want a core, the model's process gets it."""
    from gsscreen.screening_pipeline import WORKER_NICENESS, _start_workers

    files, _ = expand_inputs([str(folder)])
    ex = _start_workers(model, files, {}, ScreenConfig(inputs=files, out_dir=str(tmp_path), workers=2))
    try:
        assert ex.submit(os.nice, 0).result() == min(19, os.nice(0) + WORKER_NICENESS)
    finally:
        ex.shutdown()


def test_a_failed_background_write_stops_the_run(model: ScreeningModel, folder: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer thread's error comes up in the run (the rows written before it stay)."""
    import gsscreen.screening_pipeline as sp

    real, calls = sp._append, []

    def append(path: Path, text: str) -> None:
        calls.append(path.name)
        if len(calls) > 2:  # the second batch's results.jsonl
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(sp, "_append", append)
    with pytest.raises(OSError, match="No space left"):
        run_screening(model, ScreenConfig(inputs=[str(folder)], out_dir=str(tmp_path), batch_size=4, workers=0),
                      progress=False)
    assert len(list(read_records(tmp_path / RESULTS_JSONL))) == 4
