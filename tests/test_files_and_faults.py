"""Files and faults (issue #11, items 10–12): owner-only files, the face cache commands, screening writes nothing,
align workers die with their parent, and a full or read-only disk gives one line, leaves no temporary or
zero-byte file, and is logged."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gsscreen.cli import app
from gsscreen.faces import AlignConfig, align_cohort
from gsscreen.fsperm import atomic_write_bytes

REPO = Path(__file__).resolve().parents[1]


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def _photos(folder: Path, astronaut: np.ndarray, n: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"p{i}.png"
        Image.fromarray(np.ascontiguousarray(astronaut[:, i:])).save(p)
        out.append(p)
    return out


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_crops_cache_and_databases_are_owner_only(tmp_path: Path, astronaut: np.ndarray) -> None:
    from gsscreen.paths import cache_dir
    from gsscreen.web.screen_app import AuditLog

    res = align_cohort(_photos(tmp_path / "in", astronaut), tmp_path / "aligned", AlignConfig(workers=1),
                       progress=False)
    assert len(res.aligned) == 2
    crops = tmp_path / "aligned" / "crops"
    assert _mode(crops) == 0o700 and {_mode(p) for p in crops.iterdir()} == {0o600}
    faces = cache_dir("faces")
    assert _mode(faces) == 0o700
    cached = _all_files(faces)
    assert cached and {_mode(p) for p in cached} == {0o600}
    assert {_mode(d) for d in faces.iterdir() if d.is_dir()} == {0o700}
    audit = AuditLog(tmp_path / "logs" / "audit.sqlite")
    audit.record(channel="api", sha256=None, n_bytes=None, model_id="m", status=200)
    assert _mode(audit.path) == 0o600 and _mode(audit.path.parent) == 0o700
    from gsscreen.training import run_folder as rf

    rf.atomic_write_json(tmp_path / "run" / "folds" / "fold_0" / "result.json", {"a": 1})
    assert _mode(tmp_path / "run" / "folds" / "fold_0") == 0o700
    assert _mode(tmp_path / "run" / "folds" / "fold_0" / "result.json") == 0o600


def test_cache_info_and_clear(tmp_path: Path, astronaut: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    from gsscreen.paths import cache_dir

    monkeypatch.setenv("GSSCREEN_CACHE", str(tmp_path / "cache"))
    align_cohort(_photos(tmp_path / "in", astronaut, 1), tmp_path / "aligned", AlignConfig(workers=1), progress=False)
    r = CliRunner().invoke(app, ["cache", "info"])
    assert r.exit_code == 0, r.output
    assert str(cache_dir(create=False)) in r.output and "1 face crops" in r.output
    r = CliRunner().invoke(app, ["cache", "clear", "--yes"])
    assert r.exit_code == 0 and "removed" in r.output
    assert not cache_dir(create=False).joinpath("faces").exists()
    assert "faces/: 0 files" in CliRunner().invoke(app, ["cache", "info"]).output


def test_screening_writes_nothing_to_disk(tmp_path: Path, astronaut: np.ndarray,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from screen_support import encode, fabricate_run

    from gsscreen.faces.pipeline import FaceCache
    from gsscreen.modelpack import export_model_pack, load_model_pack
    from gsscreen.paths import cache_dir

    model = load_model_pack(export_model_pack(fabricate_run(tmp_path / "run", folds=2), tmp_path / "m.gss"))

    def refuse(*_a, **_k):  # pragma: no cover - must not be called
        raise AssertionError("screening wrote to the face cache")

    monkeypatch.setattr(FaceCache, "put", refuse)
    before = _all_files(cache_dir())
    photo = tmp_path / "a.jpg"
    photo.write_bytes(encode(astronaut))
    res = model.screen_file(photo)
    assert res.ok
    model.screen_file(encode(astronaut))
    assert _all_files(cache_dir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", "m.gss", "a.jpg"])


def test_atomic_write_leaves_nothing_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Full:
        def __init__(self, f):  # type: ignore[no-untyped-def]
            self.f = f

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *a):  # type: ignore[no-untyped-def]
            self.f.close()

        def write(self, _data):  # type: ignore[no-untyped-def]
            raise OSError(errno.ENOSPC, "No space left on device")

    real = os.fdopen
    monkeypatch.setattr("gsscreen.fsperm.os.fdopen", lambda fd, mode="r": Full(real(fd, mode)))
    with pytest.raises(OSError) as e:
        atomic_write_bytes(tmp_path / "crop.png", b"x" * 100)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "crop.png")
    assert list(tmp_path.iterdir()) == []  # no temporary file, no zero-byte crop


def test_align_on_a_full_disk_one_line_and_no_trusted_leftovers(tmp_path: Path, astronaut: np.ndarray,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from gsscreen.paths import cache_dir

    photos = _photos(tmp_path / "in", astronaut, 2)
    real = os.replace

    def full(src, dst):  # type: ignore[no-untyped-def]
        if str(dst).endswith(".png"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr("gsscreen.fsperm.os.replace", full)
    out = tmp_path / "aligned"
    r = CliRunner().invoke(app, ["align", str(photos[0].parent), "-o", str(out), "--workers", "1"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("gsscreen: error:")]
    assert len(lines) == 1 and "the disk is full" in lines[0] and ".png" in lines[0]
    assert "Traceback" not in r.output
    leftovers = [p for p in _all_files(out) + _all_files(cache_dir()) if p.name.endswith(".tmp") or
                 (p.suffix == ".png" and p.stat().st_size == 0)]
    assert leftovers == []
    monkeypatch.setattr("gsscreen.fsperm.os.replace", real)  # space again: a rerun aligns every photo
    r = CliRunner().invoke(app, ["align", str(photos[0].parent), "-o", str(out), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert len(list((out / "crops").glob("*.png"))) == 2


def test_read_only_outputs_give_one_line(tmp_path: Path, astronaut: np.ndarray,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Mocked (the tests may run as root, who writes into a chmod-ed folder anyway).
    ro = tmp_path / "ro"
    photo = _photos(tmp_path / "in", astronaut, 1)[0]

    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):  # type: ignore[no-untyped-def]
        if str(self).startswith(str(ro)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    cases = [["serve", "--audit-db", str(ro / "audit.sqlite")],
             ["readers", "invite", "Ann", "--role", "junior", "--db", str(ro / "r.sqlite")],
             ["align", str(photo), "-o", str(ro / "aligned")]]
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # the app is built (and its audit log opened)
    for args in cases:
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert "read-only" in r.output and str(ro) in r.output and "Traceback" not in r.output, r.output


def test_study_failure_is_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training_synth import make_cohort

    from gsscreen.training import study

    def full(*_a, **_k):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "optimizer_e2.pt"))

    monkeypatch.setattr(study, "_run", full)
    with pytest.raises(OSError):
        study.run_study(make_cohort(tmp_path / "photos", n_subjects=10), tmp_path / "run", progress=False)
    log = (tmp_path / "run" / "study.log").read_text()
    assert "study stopped" in log and "the disk is full" in log and "optimizer_e2.pt" in log


def test_save_torch_full_disk_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from gsscreen.training import run_folder as rf

    def full(_obj, f):  # type: ignore[no-untyped-def]
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as e:
        rf.save_torch(tmp_path / "optimizer_e2.pt", {"x": 1})
    assert e.value.filename == str(tmp_path / "optimizer_e2.pt")
    assert list(tmp_path.iterdir()) == []


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int(next(ln for ln in (d / "status").read_text().splitlines() if ln.startswith("PPid:"))
                           .split()[1])
            except (OSError, StopIteration, ValueError):
                continue
            if ppid == pid:
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "zombie" not in state


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_align_workers_exit_when_the_parent_is_killed(tmp_path: Path, sig: signal.Signals) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    # Noise: every retry runs (~1 s a photo). 256 photos make the pool hand each worker 16 per task, so a worker
    # left alone would go on for many seconds after its parent died before noticing.
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (640, 640, 3), dtype=np.uint8)).save(
        photos / "n000.jpg", quality=60)
    for i in range(1, 256):
        os.link(photos / "n000.jpg", photos / f"n{i:03d}.jpg")
    script = textwrap.dedent(f"""
        from gsscreen.faces import AlignConfig, align_cohort
        align_cohort(sorted(__import__("pathlib").Path({str(photos)!r}).glob("*.jpg")), {str(tmp_path / "out")!r},
                     AlignConfig(workers=2, cache=False), progress=False)
    """)
    script_path = tmp_path / "run_align.py"
    script_path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    parent = subprocess.Popen([sys.executable, str(script_path)], env=env)
    try:
        deadline = time.monotonic() + 120
        kids: list[int] = []
        while time.monotonic() < deadline:  # wait for the pool (2 workers + the resource tracker)
            kids = _children(parent.pid)
            if len(kids) >= 3:
                break
            time.sleep(0.2)
        assert len(kids) >= 3, kids
        time.sleep(1.0)  # the workers have run their initializer
        parent.send_signal(sig)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 8  # PDEATHSIG is immediate; the watchdog polls every second
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.2)
        assert not any(_alive(k) for k in kids), [k for k in kids if _alive(k)]
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("guarded", [True, False])
def test_exit_with_parent_ends_a_blocked_worker(tmp_path: Path, guarded: bool) -> None:
    # A worker blocked for minutes (here: sleeping) outlives a SIGKILLed parent unless it called exit_with_parent.
    marker = tmp_path / "armed"
    grandchild = ("from gsscreen.procs import exit_with_parent; exit_with_parent(); " if guarded else "") + \
        f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(120)"
    child = textwrap.dedent(f"""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", {grandchild!r}])
        print(p.pid, flush=True)
        time.sleep(120)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    parent = subprocess.Popen([sys.executable, "-c", child], env=env, stdout=subprocess.PIPE, text=True)
    worker = -1
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not marker.exists():  # the worker has armed its guard
            time.sleep(0.1)
        assert marker.exists()
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and _alive(worker):
            time.sleep(0.2)
        assert _alive(worker) is (not guarded)
    finally:
        if parent.poll() is None:
            parent.kill()
        if worker > 0 and _alive(worker):
            os.kill(worker, signal.SIGKILL)
