"""Resume: a study killed with SIGKILL in the middle of its third fold and started again ends with exactly the
numbers of an uninterrupted run, without recomputing the finished folds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from training_synth import make_cohort

from gsscreen.training.run_folder import fold_dir, read_json

pytestmark = pytest.mark.slow

# The driver runs the study in its own process (so it can be SIGKILLed). With a marker path it announces
# "fold 2 epoch 1 done" there and then waits to be killed.
DRIVER = """
import sys, time
from pathlib import Path
import pandas as pd
from gsscreen.training.config import preset, replace
from gsscreen.training.study import run_study

run_dir, cohort_csv, marker = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
cfg = preset("quick")
cfg = replace(cfg, seed=11, n_bootstrap=20, train=replace(cfg.train, epochs=3, n_views=2))

def hook(fold, epoch):
    if marker and fold == 2 and epoch == 1:
        Path(marker).write_text("fold 2 epoch 1 done")
        time.sleep(600)

run_study(pd.read_csv(cohort_csv), run_dir, cfg, progress=False, on_epoch_end=hook)
"""


def _run(driver: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(driver), *args], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]


def _fold_files(run: Path, k: int) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(fold_dir(run, k).iterdir())}


def test_killed_study_resumes_to_identical_results(tmp_path: Path) -> None:
    table = make_cohort(tmp_path / "photos", n_subjects=20)
    csv = tmp_path / "cohort.csv"
    table.to_csv(csv, index=False)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    marker = tmp_path / "fold2_epoch1.marker"
    killed, reference = tmp_path / "killed", tmp_path / "reference"

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(driver), str(killed), str(csv), str(marker)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else "driver died"
            assert time.monotonic() < deadline, "fold 2 epoch 1 never finished"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    # State at the kill: folds 0-1 finished, fold 2 saved after epoch 1, nothing beyond.
    assert read_json(fold_dir(killed, 2) / "state.json")["epoch"] == 1
    assert not (fold_dir(killed, 2) / "result.json").exists() and not fold_dir(killed, 3).exists()
    assert not (killed / "metrics.json").exists()
    done_before = {k: _fold_files(killed, k) for k in (0, 1)}

    _run(driver, str(killed), str(csv))  # the same command again: resumes
    _run(driver, str(reference), str(csv))  # uninterrupted, same seed

    log = (killed / "study.log").read_text()
    assert {k: _fold_files(killed, k) for k in (0, 1)} == done_before  # folds 0-1 untouched
    assert "fold 0: already done, skipped" in log and "fold 1: already done, skipped" in log
    assert "fold 2: resuming after epoch 1" in log
    assert log.count("fold 2 epoch 1 done") == 1 and log.count("fold 2 epoch 2 done") == 1
    assert log.count("fold 0 epoch 1 done") == 1

    for k in range(5):
        h_killed = pd.read_csv(fold_dir(killed, k) / "history.csv").drop(columns="seconds")
        h_ref = pd.read_csv(fold_dir(reference, k) / "history.csv").drop(columns="seconds")
        pd.testing.assert_frame_equal(h_killed, h_ref, rtol=0, atol=1e-9)
    p_killed = pd.read_csv(killed / "predictions.csv")
    p_ref = pd.read_csv(reference / "predictions.csv")
    pd.testing.assert_frame_equal(p_killed, p_ref, rtol=0, atol=1e-6)
    m_killed = json.loads((killed / "metrics.json").read_text())
    m_ref = json.loads((reference / "metrics.json").read_text())
    for who in ("model", "baseline"):
        for name, s in m_ref[who]["summary"].items():
            assert m_killed[who]["summary"][name]["values"] == pytest.approx(s["values"], abs=1e-6, nan_ok=True)
        assert m_killed[who]["pooled_roc"]["auc"] == pytest.approx(m_ref[who]["pooled_roc"]["auc"], abs=1e-6)
