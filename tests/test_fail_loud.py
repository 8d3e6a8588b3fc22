"""Training never fails silently, and the command line speaks plainly (issue: "fail loud", items 4-8).

- a study that asks for pretrained weights that are missing stops, unless --allow-random-init; then the console,
  config.json, metrics.json and the report's header say so, and the baseline text names the real backbone;
- warnings of every command reach the console;
- imported BatchNorm statistics stay frozen during full fine-tuning (unless configured);
- the AUC bootstrap uses n_bootstrap;
- user errors are one line naming the file and the problem (no traceback, no Python reprs);
- --gs / --control are named or inferred from a two-folder layout, and the help fits 80 columns.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gsscreen.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``gsscreen ARGS`` through the real entry point (root error handler included): (exit code, out, err)."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _no_console_handler_leak():
    """The CLI root attaches a console handler to the ``gsscreen`` logger; take it off after each test."""
    logger = logging.getLogger("gsscreen")
    before = list(logger.handlers)
    yield
    for h in list(logger.handlers):
        if h not in before:
            logger.removeHandler(h)


def _folder_cohort(root: Path, n: int = 6, names: tuple[str, str] = ("down", "healthy")) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


# ------------------------------------------------------------------------------------------- 4: pretrained or stop


def test_study_stops_when_pretrained_weights_are_missing(tmp_path, monkeypatch):
    from gsscreen.errors import GsscreenError
    from gsscreen.training.config import build_config
    from gsscreen.training.study import run_study

    monkeypatch.setattr("gsscreen.models.backbones.vgg16.vggface_weights_path",
                        lambda: tmp_path / "no-weights" / "vggface.safetensors")
    table = pd.DataFrame({"image": [f"x{i}.png" for i in range(10)], "label": ["GS", "control"] * 5})
    with pytest.raises(GsscreenError, match=r"vgg16.*not available.*--allow-random-init"):
        run_study(table, tmp_path / "run", build_config("paper"))
    assert not (tmp_path / "run" / "config.json").exists()  # nothing claimed, nothing trained


def test_random_init_is_said_everywhere(tmp_path, capsys):
    """--allow-random-init: a console warning, pretrained = false in config.json, the note in metrics.json and the
    report header, and a baseline description that names the backbone really used."""
    from gsscreen.report import build_report

    cohort = _folder_cohort(tmp_path / "photos")
    cfg = tmp_path / "pretrained.toml"
    cfg.write_text("pretrained = true\nn_bootstrap = 20\n", encoding="utf-8")
    run = tmp_path / "run"
    code, out, err = run_cli(["study", str(cohort), "-o", str(run), "--preset", "quick", "-c", str(cfg),
                              "--folds", "3", "--epochs", "1", "-q"], capsys)
    assert code == 2 and "--allow-random-init" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1

    code, out, err = run_cli(["study", str(cohort), "-o", str(run), "--preset", "quick", "-c", str(cfg),
                              "--folds", "3", "--epochs", "1", "-q", "--allow-random-init"], capsys)
    assert code == 0, err
    assert "gsscreen: warning: RANDOM INIT" in err
    assert "inferred from the two sub-folders" in out
    assert json.loads((run / "config.json").read_text())["pretrained"] is False
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["pretrained_loaded"] is False and "RANDOM INIT" in metrics["random_init_note"]
    assert "FaceNet" not in metrics["baseline"]["description"]
    assert "tiny, randomly initialised" in metrics["baseline"]["description"]
    assert "RANDOM INIT" in (run / "study.log").read_text()
    html = build_report(run, gallery="none").read_text(encoding="utf-8")
    assert "RANDOM INIT" in html.split("</header>")[0]


def test_warnings_reach_the_console(capsys):
    """Any command's log warning is printed on stderr, not only written to a log file."""
    from gsscreen.errors import console_warnings

    console_warnings()
    console_warnings()  # idempotent: one line per warning
    logging.getLogger("gsscreen.somewhere").warning("the weights are odd: %s", "x.safetensors")
    logging.getLogger("gsscreen.somewhere").info("not shown")
    err = capsys.readouterr().err
    assert err == "gsscreen: warning: the weights are odd: x.safetensors\n"


# ----------------------------------------------------------------------------------- 5: frozen BatchNorm statistics


def _small_vggface_net():
    """A small network of the VGG-16 layout with stand-in 'imported' VGG-Face weights (identity BNs)."""
    from gsscreen.models.backbones.vgg16 import VGG16, vgg16_parts
    from gsscreen.models.registry import GSNet

    widths = ((4, 4), (8, 8), (8, 8, 8), (12, 12, 12), (16, 16, 16))
    g = torch.Generator().manual_seed(0)
    tensors, c = {}, 3
    for gi, ws in enumerate(widths):
        for li, w in enumerate(ws):
            tensors[f"conv{gi + 1}_{li + 1}.weight"] = torch.randn(w, c, 3, 3, generator=g) * (2 / (9 * c)) ** 0.5
            tensors[f"conv{gi + 1}_{li + 1}.bias"] = torch.randn(w, generator=g) * 0.05
            c = w
    for name, n_in, n_out, k in (("fc6", c, 24, 7), ("fc7", 24, 24, 1)):
        tensors[f"{name}.weight"] = torch.randn(n_out, n_in, k, k, generator=g) * (2 / (n_in * k * k)) ** 0.5
        tensors[f"{name}.bias"] = torch.randn(n_out, generator=g) * 0.05
    return GSNet(VGG16, vgg16_parts(tensors, widths=widths, fc_dim=24))


@pytest.mark.parametrize("update_batchnorm", [False, True])
def test_full_finetuning_keeps_imported_batchnorm_statistics(update_batchnorm):
    from gsscreen.training.loop import ModelPlan, TrainNet

    model = _small_vggface_net()
    assert model.pretrained_loaded
    plan = ModelPlan("vgg16", True, 0.5, input_index=0, unfreeze_from=1, init_seed=0,
                     update_batchnorm=update_batchnorm)
    net = TrainNet(model, plan)
    net.set_stage(2)  # full fine-tuning: every body stage trains
    net.train()
    x = torch.rand(8, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    conv2 = model.body[:3]  # Normalize, conv group 1, conv group 2
    with torch.no_grad():
        before = conv2.eval()(x).clone()
    net.train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.0)  # lr 0: only BN stats move
    logits, _ = net(x)
    logits.sum().backward()
    opt.step()
    with torch.no_grad():
        after = conv2.eval()(x)
    rel = float((after - before).norm() / before.norm())
    if update_batchnorm:
        assert rel > 0.01  # batch statistics replaced the imported ones: no longer VGG-Face
    else:
        assert rel < 1e-6
        bns = [m for m in model.body.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert all(int(b.num_batches_tracked) == 0 for b in bns)


def test_paper_preset_keeps_batchnorm_frozen_by_default():
    from gsscreen.training.config import build_config

    assert build_config("paper").train.finetune.update_batchnorm is False
    assert build_config("paper", None, {"train": {"finetune": {"update_batchnorm": True}}}).train.finetune.\
        update_batchnorm is True


# ------------------------------------------------------------------------------------------- 6: n_bootstrap honoured


def test_auc_bootstrap_uses_n_bootstrap():
    from gsscreen.evaluation.roc import pooled_roc_summary

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    p = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1)
    s = pooled_roc_summary(y, p, n_boot=37, seed=0)
    assert s["auc_ci_bootstrap"]["n_boot"] == 37 and s["band"]["n_boot"] == 37
    assert pooled_roc_summary(y, p, n_boot=37, n_boot_auc=55)["auc_ci_bootstrap"]["n_boot"] == 55


def test_config_docstring_names_metrics_json():
    from gsscreen.training.config import StudyConfig

    doc = StudyConfig.__doc__ or ""
    assert "versions.json`` records" not in doc and "metrics.json" in doc


# ------------------------------------------------------------------------------------- 7: one line per user error


def test_readers_export_defaults_db_like_serve(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["readers", "export", "-o", "readers.csv"], capsys)
    assert code == 2
    assert "Missing option" not in err
    assert err.strip().splitlines() == [err.strip()] and "readers.sqlite" in err and "not found" in err


def test_unreadable_photo_is_named_in_plain_words(tmp_path):
    from gsscreen.cohort import fingerprint_file
    from gsscreen.training.data import load_crops

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a JPEG")
    fp = fingerprint_file(bad)
    _, ok, failures = load_crops([bad], 32)
    for message in (fp.error or "", failures[0][1]):
        assert "BytesIO" not in message and "object at 0x" not in message
        assert "not an image" in message
    assert str(bad) in (fp.error or "") and failures[0][0] == str(bad) and ok == []


def test_study_with_an_unknown_label_is_one_line(tmp_path, capsys):
    from PIL import Image

    rows = []
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png", "label": ["GS", "control", "martian"][i]})
    pd.DataFrame(rows).to_csv(tmp_path / "cohort.csv", index=False)
    code, _, err = run_cli(["study", str(tmp_path / "cohort.csv"), "-o", str(tmp_path / "run"), "--preset",
                            "quick", "-q"], capsys)
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("gsscreen: error: too few usable photos") and "failures.csv" in line
    failures = pd.read_csv(tmp_path / "run" / "failures.csv")
    assert failures["problem"].str.contains("unknown label 'martian'").any()


# ------------------------------------------------------------------------------ 8: folder names, help at 80 columns


def test_folder_groups_named_or_inferred(tmp_path):
    from gsscreen.cohort import CohortError, folder_groups

    root = _folder_cohort(tmp_path / "a", n=1, names=("trisomy", "Healthy"))
    assert folder_groups(root, ["x"], ["y"]) == (("x",), ("y",), None)
    gs, control, note = folder_groups(root)
    assert (gs, control) == (("trisomy",), ("Healthy",)) and "--gs trisomy --control Healthy" in note
    assert folder_groups(root, gs=["Healthy"])[:2] == (("Healthy",), ("trisomy",))  # the user's word wins
    three = _folder_cohort(tmp_path / "b", n=1, names=("down", "healthy", "other"))
    with pytest.raises(CohortError, match="--gs FOLDER --control FOLDER"):
        folder_groups(three)
    neither = _folder_cohort(tmp_path / "c", n=1, names=("site1", "site2"))
    with pytest.raises(CohortError, match="cannot tell"):
        folder_groups(neither)


def test_from_folders_says_what_it_inferred(tmp_path, capsys):
    root = _folder_cohort(tmp_path / "photos", n=2)
    code, out, err = run_cli(["cohort", "from-folders", str(root)], capsys)
    assert code == 0, err
    assert "inferred from the two sub-folders" in out and "--gs down --control healthy" in out
    table = pd.read_csv(root / "cohort.csv")
    assert sorted(table["label"].unique()) == ["GS", "control"]


COMMANDS = [[], ["demo"], ["cohort"], ["cohort", "from-folders"], ["cohort", "check"], ["align"], ["weights"],
            ["study"], ["explain"], ["report"], ["export"], ["screen"], ["serve"], ["readers"],
            ["readers", "serve"], ["readers", "export"], ["evaluate"], ["readers", "invite"], ["cache"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help_fits_80_columns(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_cli([*command, "--help"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "<bool>" not in out and "list[" not in out.split("Options:")[-1]
    # every long option is printed whole (not cut with an ellipsis)
    assert "…" not in out
    for name in re.findall(r"--[a-z][a-z0-9-]+", out):
        assert not name.endswith("-")
