"""The run folder: layout, atomic writes, checkpoints, versions, and the resume guard.

Layout (``RUN_DIR``)::

    config.json            the StudyConfig (``load_config(StudyConfig, path)`` reads it back)
    run.json               the config hash and cohort fingerprint (a resume must match both)
    versions.json          python, torch, numpy, gsscreen, platform, git commit
    study.log              log of every run on this folder (appended)
    failures.csv           photos left out (unreadable, no face, cohort problems): file, problem, stage
    splits.csv             photo, subject, label, subset (0-based) for the study photos (photo: relative to the
                           cohort CSV's folder when the study had one; see photo_path)
    cache/                 cached frozen-body features (see gsscreen.training.data)
    folds/fold_k/          k = 0..folds-1; fold k tests subset k, validates on subset k+1
        checkpoint.safetensors   best epoch's trainable weights (metadata: backbone, frozen prefix, epoch)
        last_e<E>.safetensors    trainable weights of the last finished epoch E (resume)
        optimizer_e<E>.pt        optimizer state + torch RNG state of epoch E (files of older epochs are removed)
        state.json               epoch, stage, best epoch/metric, patience counter, done flag
        history.csv              one row per epoch
        predictions.csv          validation, test and external-control predictions of the best checkpoint
        result.json              threshold, test metrics, external false-positive rates (written last)
    predictions.csv        photo, subject, label, fold, p_gs, call, threshold (every photo once, as test)
    metrics.json           per fold, mean ± SD, pooled ROC + CIs, external FPRs, baseline

Every file is written via a temporary file and ``os.replace``, so a killed run never leaves half a file.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from gsscreen.errors import GsscreenError

CHECKPOINT = "checkpoint.safetensors"
STATE = "state.json"
HISTORY = "history.csv"
RESULT = "result.json"
FOLD_PREDICTIONS = "predictions.csv"


class RunFolderMismatch(GsscreenError, RuntimeError):
    """The run folder was made by a different config or cohort; it cannot be resumed."""


def fold_dir(run_dir: Path, k: int) -> Path:
    return Path(run_dir) / "folds" / f"fold_{k}"


def atomic_write_text(path: str | Path, text: str) -> None:
    from gsscreen.fsperm import atomic_write_bytes, private_dir

    p = Path(path)
    private_dir(p.parent)
    atomic_write_bytes(p, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False, allow_nan=True) + "\n")


def atomic_write_csv(path: str | Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    return v


def cohort_dir(run_dir: Path) -> Path | None:
    """The folder of the cohort CSV the study used (from ``cohort_source.json``), or None (no CSV: a DataFrame or
    photo folders)."""
    rec = Path(run_dir) / "cohort_source.json"
    try:
        src = json.loads(rec.read_text(encoding="utf-8")).get("cohort_csv")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(src).parent if src else None


def photos_relative_to_cohort(run_dir: Path, photos: pd.Series) -> pd.Series:
    """Photo paths as written in ``predictions.csv`` / ``splits.csv``: relative to the cohort CSV's folder (with
    ``/``), so a run folder stays valid when the data move together with their cohort table. Unchanged when the
    study had no cohort CSV, or a path cannot be expressed relative to it (another drive)."""
    base = cohort_dir(run_dir)
    if base is None:
        return photos

    def rel(p: Any) -> str:
        try:
            return Path(os.path.relpath(str(p), base)).as_posix() if Path(str(p)).is_absolute() else str(p)
        except ValueError:
            return str(p)

    return photos.map(rel)


def photo_path(run_dir: Path, photo: str) -> Path:
    """The file of a ``photo`` entry of ``predictions.csv`` / ``splits.csv`` (see :func:`photos_relative_to_cohort`)."""
    p = Path(photo)
    base = cohort_dir(run_dir)
    return p if p.is_absolute() or base is None else Path(os.path.normpath(base / p))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ versions


def git_commit(start: Path | None = None) -> str | None:
    """The commit of the gsscreen checkout (``git rev-parse HEAD``), or None outside a git checkout."""
    here = start or Path(__file__).resolve().parent
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def versions() -> dict[str, Any]:
    """Versions of everything that can change a study's numbers."""
    import sklearn

    import gsscreen

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "sklearn": sklearn.__version__,
        "gsscreen": gsscreen.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
    }


# ------------------------------------------------------------------------------------------------ resume guard


def check_or_claim(run_dir: Path, config: dict[str, Any], cfg_hash: str, cohort_fp: str) -> bool:
    """Claim an empty run folder for (config, cohort), or check that an existing one belongs to them.

    Returns True when the folder already held this study (a resume). Raises :class:`RunFolderMismatch` naming
    the differing settings when it holds another one.
    """
    from gsscreen.training.config import config_diff

    path = Path(run_dir) / "config.json"
    ident_path = Path(run_dir) / "run.json"
    if ident_path.is_file():
        ident = read_json(ident_path)
        if ident.get("config_hash") != cfg_hash:
            old = read_json(path) if path.is_file() else {}
            diff = config_diff(old, config)
            raise RunFolderMismatch(
                f"{run_dir} holds a study with a different config (hash {ident.get('config_hash')} vs {cfg_hash}); "
                f"differences: {'; '.join(diff) or 'unknown'}. Use a new output folder, or the same settings "
                "to resume."
            )
        if ident.get("cohort_fingerprint") != cohort_fp:
            raise RunFolderMismatch(
                f"{run_dir} holds a study of a different cohort (fingerprint {ident.get('cohort_fingerprint')} vs "
                f"{cohort_fp}): photos, labels or subjects changed. Use a new output folder."
            )
        return True
    if Path(run_dir).is_dir() and any(Path(run_dir).joinpath("folds").glob("fold_*")):
        raise RunFolderMismatch(f"{run_dir} has fold results but no run.json; refusing to mix studies")
    atomic_write_json(path, config)
    atomic_write_json(ident_path, {"config_hash": cfg_hash, "cohort_fingerprint": cohort_fp})
    return False


# ------------------------------------------------------------------------------------------------ checkpoints


def trainable_state(model: nn.Module, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The entries of ``model.state_dict()`` under ``prefixes`` (weights and buffers), contiguous CPU copies."""
    return {
        k: v.detach().to("cpu").contiguous().clone()
        for k, v in model.state_dict().items()
        if k.startswith(prefixes)
    }


def save_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write safetensors atomically; ``metadata`` values are stored as JSON strings."""
    from safetensors.torch import save

    from gsscreen.fsperm import atomic_write_bytes

    # Serialised in memory, then written by Python: a full disk is an OSError naming the file, and no partial
    # or temporary file is left (safetensors' own writer reports neither).
    atomic_write_bytes(path, save(tensors, metadata={k: json.dumps(v) for k, v in metadata.items()}))


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    return load_file(str(path)), meta


def save_torch(path: Path, obj: Any) -> None:
    """``torch.save`` all or nothing, owner-only. Written through a Python file object, so a full disk is an
    ``OSError`` naming ``path`` (torch's own file writer raises a bare RuntimeError), and the temporary file is
    removed on any failure."""
    from gsscreen.fsperm import atomic_write_with

    atomic_write_with(path, lambda f: torch.save(obj, f))


def load_torch(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_fold_model(fold_folder: str | Path, device: str = "cpu") -> nn.Module:
    """Rebuild a fold's best model from ``checkpoint.safetensors`` (eval mode).

    The checkpoint holds only the trained part; the frozen part comes from the backbone's pretrained weights (or,
    for a random-init backbone, from the seeded init recorded in the metadata).
    """
    from gsscreen.models.registry import create_model

    path = Path(fold_folder) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint in {fold_folder} ({CHECKPOINT} missing: fold not finished?)")
    tensors, meta = load_weights(path)
    torch.manual_seed(int(meta["init_seed"]))
    model = create_model(meta["backbone"], pretrained=bool(meta["pretrained"]), dropout=float(meta["dropout"]))
    _, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected:
        raise ValueError(f"{path}: unexpected tensors {unexpected[:5]} for backbone {meta['backbone']}")
    return model.to(device).eval()
