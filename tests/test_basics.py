from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from gsscreen.cli import app
from gsscreen.config import from_dict, load_config, save_config, to_dict
from gsscreen.examples import EXAMPLE_NAMES, example_image
from gsscreen.paths import cache_dir


@dataclasses.dataclass
class _Inner:
    size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclasses.dataclass
class _Outer:
    name: str = "x"
    lr: float = 1e-3
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    note: str | None = None


def test_config_round_trip_toml_and_json(tmp_path):
    cfg = load_config(_Outer, None, lr=0.5)
    assert cfg.lr == 0.5 and cfg.inner.size == 224
    for name in ("c.toml", "c.json"):
        save_config(cfg, tmp_path / name)
        again = load_config(_Outer, tmp_path / name)
        assert again == cfg
    assert json.loads((tmp_path / "c.json").read_text())["inner"]["mean"] == [0.5, 0.5, 0.5]


def test_config_rejects_unknown_keys(tmp_path):
    (tmp_path / "bad.toml").write_text("lr = 1\n[inner]\nsise = 3\n")
    with pytest.raises(ValueError, match="sise"):
        load_config(_Outer, tmp_path / "bad.toml")
    with pytest.raises(ValueError, match="typo"):
        from_dict(_Outer, {"typo": 1})
    assert to_dict(_Outer())["inner"] == {"size": 224, "mean": [0.5, 0.5, 0.5]}


def test_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("GSSCREEN_CACHE", str(tmp_path / "c"))
    assert cache_dir("weights") == tmp_path / "c" / "weights"
    assert (tmp_path / "c" / "weights").is_dir()


def test_embedded_examples_are_real_rgb_portraits():
    for name in EXAMPLE_NAMES:
        img = example_image(name)
        assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 400
        assert img.std() > 20  # a photo, not a blank


def test_cli_help_and_version():
    runner = CliRunner()
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "genetic syndromes" in res.output
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and "gsscreen" in res.output


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    from gsscreen.paths import sha256_file

    data = bytes(range(256)) * 9000  # > 2 MiB: several read chunks
    (tmp_path / "f.bin").write_bytes(data)
    assert sha256_file(tmp_path / "f.bin", chunk=1 << 20) == hashlib.sha256(data).hexdigest()


def test_demo_redoes_only_its_own_study(tmp_path):
    """`gsscreen demo` may delete and redo a study folder only when it is a study of its own synthetic cohort."""
    import json

    from gsscreen.commands.demo import _is_demo_study

    csv = tmp_path / "demo" / "cohort" / "cohort.csv"
    run = tmp_path / "demo" / "study"
    run.mkdir(parents=True)
    assert not _is_demo_study(run, csv)  # no cohort_source.json: not known to be ours
    (run / "cohort_source.json").write_text(json.dumps({"cohort_csv": str(tmp_path / "mine.csv")}))
    assert not _is_demo_study(run, csv)
    (run / "cohort_source.json").write_text(json.dumps({"cohort_csv": str(csv)}))
    assert _is_demo_study(run, csv)
    (run / "cohort_source.json").write_text("{not json")
    assert not _is_demo_study(run, csv)
