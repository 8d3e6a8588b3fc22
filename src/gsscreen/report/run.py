"""Reading a study's run folder for the report, defensively.

A run folder (written by ``gsscreen study``) holds ``config.json``, ``versions.json``, ``splits.csv``,
``predictions.csv``, ``metrics.json``, ``failures.csv`` and ``folds/fold_k/``; the alignment step adds a folder of
aligned crops with ``landmarks.csv``. Only ``predictions.csv`` is required: everything else the report can
recompute or leave out, and each thing it could not read becomes a line in :attr:`RunData.problems` (shown in the
report) rather than an exception.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gsscreen.errors import GsscreenError

PREDICTION_COLUMNS = ("photo", "label", "fold", "p_gs")
SYNTHETIC_MARKERS = ("SYNTHETIC", "SYNTHETIC.txt", "SYNTHETIC.md")


class RunFolderError(GsscreenError, ValueError):
    """The folder is not a usable run folder (names the file and what is wrong)."""


@dataclass
class RunData:
    """What the report reads from a run folder.

    ``predictions`` has one row per test photo with at least ``photo, label, fold, p_gs`` plus ``y`` (1 = GS,
    0 = control), ``threshold`` (the fold's own threshold; 0.5 where the file has none) and ``called`` (1 = called
    GS, from ``call`` when given, else ``p_gs >= threshold``). ``landmarks`` maps a photo key (see
    :func:`photo_key`) to ``(crop path, (5, 2) landmarks in crop pixels)``.
    """

    run_dir: Path
    predictions: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    failures: pd.DataFrame | None = None
    splits: pd.DataFrame | None = None
    landmarks: dict[str, tuple[Path, np.ndarray]] = field(default_factory=dict)
    cohort: pd.DataFrame | None = None
    cohort_source: Path | None = None
    synthetic_note: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def folds(self) -> list[int]:
        return sorted(int(f) for f in self.predictions["fold"].unique())


def photo_key(value: Any) -> str:
    """A key that matches one photo across tables: the path as written, normalised to forward slashes.

    The study, the alignment and the cohort may write a photo as an absolute path or relative to different
    folders; :func:`match_photos` falls back to shorter suffixes of the path when the full key does not match.
    """
    return str(value).replace("\\", "/").strip()


def _suffixes(key: str) -> Iterator[str]:
    parts = [p for p in key.split("/") if p not in ("", ".")]
    for k in range(len(parts)):
        yield "/".join(parts[k:])


def match_photos(keys: list[str], table_keys: list[str]) -> dict[str, str]:
    """Map each key of ``keys`` to the entry of ``table_keys`` naming the same file.

    Exact matches first; then the longest common path suffix that is unique in ``table_keys`` (so
    ``/data/gs/001.jpg`` matches ``gs/001.jpg``, but a bare ``001.jpg`` shared by two folders matches neither).
    """
    exact = set(table_keys)
    by_suffix: dict[str, list[str]] = {}
    for t in table_keys:
        for s in _suffixes(t):
            by_suffix.setdefault(s, []).append(t)
    out: dict[str, str] = {}
    for k in keys:
        if k in exact:
            out[k] = k
            continue
        for s in _suffixes(k):
            hits = by_suffix.get(s, [])
            if len(hits) == 1:
                out[k] = hits[0]
                break
            if len(hits) > 1:
                break  # ambiguous at this length: a shorter suffix would be even more so
    return out


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    if not path.is_file():
        problems.append(f"{path.name}: not found in the run folder")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path}: cannot read JSON ({exc})")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a JSON object, found {type(data).__name__}")
        return {}
    return data


def _read_csv(path: Path, problems: list[str], required: bool = False) -> pd.DataFrame | None:
    if not path.is_file():
        if required:
            raise RunFolderError(f"{path}: not found (is {path.parent} a run folder written by `gsscreen study`?)")
        return None
    try:
        return pd.read_csv(path, keep_default_na=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        if required:
            raise RunFolderError(f"{path}: cannot read CSV ({exc})") from exc
        problems.append(f"{path.name}: cannot read CSV ({exc})")
        return None


_GS_WORDS = {"gs", "1", "1.0", "true", "syndrome", "case"}
_CONTROL_WORDS = {"control", "0", "0.0", "false", "healthy"}


def _label_to_y(labels: pd.Series, path: Path) -> np.ndarray:
    low = labels.astype(str).str.strip().str.lower()
    y = np.where(low.isin(_GS_WORDS), 1, np.where(low.isin(_CONTROL_WORDS), 0, -1))
    if (y < 0).any():
        bad = labels[y < 0].astype(str).unique()[:5]
        raise RunFolderError(f"{path}: label must be GS or control; found {', '.join(map(repr, bad))}")
    return y.astype(np.int64)


def read_predictions(path: Path) -> pd.DataFrame:
    """``predictions.csv`` with the ``y``, ``threshold`` and ``called`` columns added (see :class:`RunData`)."""
    df = _read_csv(path, [], required=True)
    assert df is not None
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise RunFolderError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}")
    if df.empty:
        raise RunFolderError(f"{path}: no predictions")
    df = df.copy()
    df["photo"] = df["photo"].map(photo_key)
    df["y"] = _label_to_y(df["label"], path)
    df["label"] = np.where(df["y"] == 1, "GS", "control")
    try:
        df["fold"] = pd.to_numeric(df["fold"], errors="raise").astype(int)
        df["p_gs"] = pd.to_numeric(df["p_gs"], errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise RunFolderError(f"{path}: fold and p_gs must be numbers ({exc})") from exc
    if not np.isfinite(df["p_gs"]).all():
        raise RunFolderError(f"{path}: p_gs has {int((~np.isfinite(df['p_gs'])).sum())} missing/non-finite values")
    thr = pd.to_numeric(df["threshold"], errors="coerce") if "threshold" in df else pd.Series(np.nan, index=df.index)
    df["threshold"] = thr.fillna(0.5).astype(float)
    called = (df["p_gs"] >= df["threshold"]).astype(int)
    if "call" in df:
        low = df["call"].astype(str).str.strip().str.lower()
        given = np.where(low.isin(_GS_WORDS), 1, np.where(low.isin(_CONTROL_WORDS), 0, -1))
        # The study's own call wins where it is readable (it is what the fold reported).
        called = np.where(given >= 0, given, called)
    df["called"] = np.asarray(called, dtype=int)
    return df


_LM_X = re.compile(r"^(?P<stem>.*?)[_\-]?x(?P<idx>\d*)$", re.IGNORECASE)


def landmark_columns(columns: list[str]) -> list[tuple[str, str]] | None:
    """The ``(x, y)`` column pairs of the 5 landmarks in a landmarks table, in table order; None if not found.

    The alignment writes ``left_eye_x, left_eye_y, ..., mouth_right_y`` (``gsscreen.faces.pipeline``); other
    tables may use ``le_x, le_y, ...``, ``lm0_x, lm0_y, ...`` or ``x0, y0, ..., x4, y4``: each x column is paired
    with the column whose name has the same stem/index and ``y`` in place of ``x`` (``box_*`` columns ignored).
    """
    try:  # the alignment's own column names, when they are all there
        from gsscreen.faces.pipeline import LANDMARK_COLUMNS

        if set(LANDMARK_COLUMNS) <= set(columns):
            return list(zip(LANDMARK_COLUMNS[0::2], LANDMARK_COLUMNS[1::2], strict=True))
    except ImportError:
        pass
    pairs: list[tuple[str, str]] = []
    lower = {c.lower(): c for c in columns}
    for c in columns:
        m = _LM_X.match(c)
        if not m or c.lower().startswith(("box", "bbox", "index")):  # face boxes are not landmarks
            continue
        stem, idx = m.group("stem"), m.group("idx")
        sep = c[len(stem) : len(c) - 1 - len(idx)]
        ycol = lower.get(f"{stem}{sep}y{idx}".lower())
        if ycol is not None:
            pairs.append((c, ycol))
    return pairs if len(pairs) == 5 else None


def read_landmarks(path: Path, problems: list[str]) -> dict[str, tuple[Path, np.ndarray]]:
    """``landmarks.csv`` (columns ``image``, ``crop`` and 5 x/y pairs in crop pixels) -> photo key -> (crop, lm)."""
    df = _read_csv(path, problems)
    if df is None:
        return {}
    if "image" not in df.columns or "crop" not in df.columns:
        problems.append(f"{path}: needs 'image' and 'crop' columns; found {', '.join(map(str, df.columns))}")
        return {}
    pairs = landmark_columns([str(c) for c in df.columns if c not in ("image", "crop")])
    if pairs is None:
        problems.append(f"{path}: could not find 5 landmark x/y column pairs in {', '.join(map(str, df.columns))}")
        return {}
    out: dict[str, tuple[Path, np.ndarray]] = {}
    for rec in df.to_dict("records"):
        crop = rec.get("crop")
        if not isinstance(crop, str) or not crop.strip():
            continue  # a failed alignment: no crop, no landmarks
        lm = np.array([[rec[x], rec[y]] for x, y in pairs], dtype=np.float64)
        if not np.isfinite(lm).all():
            continue
        cp = Path(crop)
        out[photo_key(rec["image"])] = (cp if cp.is_absolute() else path.parent / cp, lm)
    return out


def _walk_strings(obj: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk_strings(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk_strings(v, f"{prefix}[{i}]")
    elif isinstance(obj, str):
        yield prefix, obj


def _existing(path_str: str, run_dir: Path) -> Path | None:
    if not path_str.strip() or len(path_str) > 1000:
        return None
    try:
        p = Path(path_str).expanduser()
        for cand in (p, run_dir / p) if not p.is_absolute() else (p,):
            if cand.exists():
                return cand.resolve()
    except (OSError, ValueError):
        return None
    return None


def find_cohort_csv(run_dir: Path, config: dict[str, Any], photos: list[str] | None = None) -> Path | None:
    """The cohort CSV the study used: a config value naming an existing CSV under a key with ``cohort`` in it, else
    ``cohort.csv`` in the run folder, its parent, or the photos' common folder and up to 3 levels above it.

    A candidate is only a guess: the report uses it for Table 1 only when it lists the study's photos."""
    recorded = run_dir / "cohort_source.json"  # written by ``gsscreen study`` when the cohort came from a file
    if recorded.is_file():
        try:
            p = Path(json.loads(recorded.read_text(encoding="utf-8"))["cohort_csv"])
            if p.is_file():
                return p
        except (ValueError, KeyError, TypeError):
            pass
    for key, value in _walk_strings(config):
        if "cohort" in key.lower() and value.lower().endswith(".csv"):
            p = _existing(value, run_dir)
            if p is not None and p.is_file():
                return p
    cands = [run_dir / "cohort.csv", run_dir.parent / "cohort.csv"]
    # The study writes each photo as the absolute path the cohort resolved; the cohort CSV usually sits in the
    # photos' common folder or a few levels above it (e.g. DEMO/photos/*.jpg and DEMO/cohort.csv).
    if photos:
        absolute = [p for p in photos if Path(p).is_absolute()]
        if absolute:
            try:
                common = Path(os.path.commonpath(absolute[:5000]))
            except ValueError:
                common = None
            if common is not None:
                cands += [d / "cohort.csv" for d in [common, *common.parents][:4]]
    for cand in cands:
        if cand.is_file():
            return cand
    return None


def find_landmarks_csv(run_dir: Path, config: dict[str, Any]) -> Path | None:
    """``landmarks.csv`` of the alignment: in the run folder, one folder below it, or in a folder the config names."""
    cands = [run_dir / "landmarks.csv", *sorted(run_dir.glob("*/landmarks.csv"))]
    for _key, value in _walk_strings(config):
        p = _existing(value, run_dir)
        if p is None:
            continue
        if p.is_file() and p.name == "landmarks.csv":
            cands.append(p)
        elif p.is_dir():
            cands.append(p / "landmarks.csv")
    for c in cands:
        if c.is_file():
            return c
    return None


def _mentions_synthetic(obj: Any) -> bool:
    if isinstance(obj, dict):
        return any(("synthetic" in str(k).lower() and bool(v)) or _mentions_synthetic(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_mentions_synthetic(v) for v in obj)
    return isinstance(obj, str) and "synthetic" in obj.lower()


def synthetic_note(run_dir: Path, config: dict[str, Any], cohort_csv: Path | None) -> str | None:
    """Why the report calls the cohort synthetic, or None.

    Signs: a ``SYNTHETIC`` marker file in the run folder or the cohort's folder; a ``README.txt`` there that
    mentions "synthetic" (``gsscreen demo`` writes one); or the word in the run's config (a key such as
    ``synthetic: true`` or a value such as a path to a synthetic demo cohort).
    """
    folders = [run_dir, run_dir.parent]
    if cohort_csv is not None:
        folders.append(cohort_csv.parent)
    for folder in dict.fromkeys(folders):
        for name in SYNTHETIC_MARKERS:
            marker = folder / name
            if marker.is_file():
                text = marker.read_text(encoding="utf-8", errors="replace").strip()
                return text or "This run is marked synthetic."
        readme = folder / "README.txt"
        if readme.is_file():
            text = readme.read_text(encoding="utf-8", errors="replace").strip()
            if "synthetic" in text.lower():
                return text
    if _mentions_synthetic(config):
        return "The run's configuration says the cohort is synthetic."
    return None


def _read_cohort(path: Path, problems: list[str]) -> pd.DataFrame | None:
    # The cohort module normalises labels and sexes; the images themselves are not needed for the report.
    try:
        from gsscreen.cohort import load_cohort

        return load_cohort(path, check_images=False, near_duplicate_distance=None).table
    except Exception as exc:  # a bad cohort file must not stop the report: Table 1 is then left out
        problems.append(f"{path}: cannot read the cohort ({exc})")
        return None


def load_run(run_dir: str | Path, cohort_csv: str | Path | None = None) -> RunData:
    """Read a run folder (see the module docstring). Raises :class:`RunFolderError` only when the folder or its
    ``predictions.csv`` is missing or unusable; other files are optional."""
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise RunFolderError(f"run folder not found: {run}")
    problems: list[str] = []
    predictions = read_predictions(run / "predictions.csv")
    config = _read_json(run / "config.json", problems)
    versions = _read_json(run / "versions.json", problems)
    metrics = _read_json(run / "metrics.json", problems)
    failures = _read_csv(run / "failures.csv", problems)
    splits = _read_csv(run / "splits.csv", problems)
    lm_csv = find_landmarks_csv(run, config)
    landmarks = read_landmarks(lm_csv, problems) if lm_csv is not None else {}
    photos = predictions["photo"].tolist()
    csv = Path(cohort_csv) if cohort_csv is not None else find_cohort_csv(run, config, photos)
    if cohort_csv is not None and not csv.is_file():  # type: ignore[union-attr]
        raise RunFolderError(f"cohort file not found: {csv}")
    cohort = _read_cohort(csv, problems) if csv is not None else None
    if csv is None:
        problems.append("cohort CSV not found (looked in config.json and next to the run): Table 1 left out")
    return RunData(
        run_dir=run,
        predictions=predictions,
        config=config,
        versions=versions,
        metrics=metrics,
        failures=failures,
        splits=splits,
        landmarks=landmarks,
        cohort=cohort,
        cohort_source=csv,
        synthetic_note=synthetic_note(run, config, csv),
        problems=problems,
    )


def finite(x: Any) -> bool:
    """True for a real, finite number (not None, not NaN, not a string)."""
    try:
        return x is not None and not isinstance(x, (str, bool)) and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
