"""Batch alignment: many photos → aligned crops, a landmarks table, a failures table, a QC sheet.

One broken photo never stops the batch (its problem goes to ``failures.csv``). Work is spread over a process pool
(OpenCV limited to one thread per worker, so N workers use N cores), and every result — success or failure — is
kept in a content-addressed cache: key = sha256(file bytes) + hash of the crop-relevant :class:`AlignConfig`
fields, under ``gsscreen.paths.cache_dir("faces")``. A second run over the same photos only hashes files and
copies cached crops.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gsscreen.config import from_dict, save_config, to_dict
from gsscreen.faces.align import AlignConfig, AlignedFace, NoFaceError, align_face
from gsscreen.faces.io import ImageError, load_image_scaled
from gsscreen.paths import sha256_file

if TYPE_CHECKING:
    import pandas as pd

#: Bump when detection/alignment code changes in a way that changes crops (invalidates old cache entries).
ALGORITHM_VERSION = "faces-2"  # faces-2: records carry "outside"

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
LANDMARK_COLUMNS = [f"{n}_{c}" for n in LANDMARK_NAMES for c in ("x", "y")]
BOX_COLUMNS = ["box_x0", "box_y0", "box_x1", "box_y1"]
ALIGNED_COLUMNS = [
    "image",
    "crop",
    "score",
    "n_faces",
    "flags",
    *LANDMARK_COLUMNS,
    *BOX_COLUMNS,
    "tilt_deg",
    "iod",
    "outside",
    "cached",
]
FAILURE_COLUMNS = ["image", "problem"]


@dataclass
class AlignmentResult:
    """What :func:`align_cohort` produced.

    ``aligned``: one row per aligned photo (columns :data:`ALIGNED_COLUMNS`; landmarks in crop px, box in original
    px; ``crop`` is the crop's absolute path), in input order. ``failures``: ``image``, ``problem``.
    """

    aligned: pd.DataFrame
    failures: pd.DataFrame
    out_dir: Path
    crops_dir: Path
    landmarks_csv: Path
    failures_csv: Path
    qc_sheet: Path | None
    config_json: Path
    n_cached: int  # photos answered from the cache (successes and failures)
    seconds: float


# ------------------------------------------------------------------------------------------------------------------
# Inputs


def image_paths(items: Any) -> list[Path]:
    """Image paths from a :class:`gsscreen.cohort.Cohort`, a DataFrame with an ``image`` column, or paths."""
    table = getattr(items, "table", None)
    if table is not None and hasattr(table, "columns"):
        items = table
    if hasattr(items, "columns"):
        if "image" not in items.columns:
            raise ValueError(f"the table has no 'image' column (columns: {', '.join(map(str, items.columns))})")
        return [Path(str(p)) for p in items["image"].tolist()]
    if isinstance(items, (str, os.PathLike)):
        return [Path(items)]
    if isinstance(items, Iterable):
        return [Path(p) for p in items]
    raise TypeError(
        f"align_cohort needs a Cohort, a DataFrame with an 'image' column or a list of paths, got {items!r}"
    )


# ------------------------------------------------------------------------------------------------------------------
# Cache


def config_key(cfg: AlignConfig) -> str:
    """Hash (16 hex) of the settings that determine a crop, plus the algorithm version."""
    blob = json.dumps({"v": ALGORITHM_VERSION, **to_dict(cfg.key_fields())}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class FaceCache:
    """Content-addressed store of alignment results: ``<root>/<k[:2]>/<k>.json`` (+ ``<k>.png`` for a crop)."""

    def __init__(self, root: Path | None = None) -> None:
        if root is None:
            from gsscreen.paths import cache_dir

            root = cache_dir("faces")
        self.root = Path(root)

    def _paths(self, key: str) -> tuple[Path, Path]:
        d = self.root / key[:2]
        return d / f"{key}.json", d / f"{key}.png"

    def get(self, key: str) -> tuple[dict[str, Any], Path | None] | None:
        """(record, crop path or None for a cached failure), or None on a miss or an unreadable entry."""
        meta_p, png_p = self._paths(key)
        try:
            rec = json.loads(meta_p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if rec.get("ok"):
            return (rec, png_p) if png_p.is_file() else None
        return rec, None

    def put(self, key: str, rec: dict[str, Any], png: bytes | None) -> None:
        """Store atomically (write to a temporary name, then rename; the JSON, written last, marks completeness).
        Owner-only files; a failed write leaves no temporary or partial file."""
        from gsscreen.fsperm import atomic_write_bytes, private_dir

        meta_p, png_p = self._paths(key)
        private_dir(meta_p.parent)
        if png is not None:
            atomic_write_bytes(png_p, png)
        atomic_write_bytes(meta_p, json.dumps(rec).encode("utf-8"))


# ------------------------------------------------------------------------------------------------------------------
# One photo


#: quality-gate reasons that keep a face out of a study: its crop is not a face the right way up
STUDY_GATE = ("implausible_landmarks", "eyes_not_found", "photo_rotated")


def _record(face: AlignedFace, factor: float) -> dict[str, Any]:
    """JSON-able record of a face aligned on a copy reduced by ``factor``; coordinates back to original px.

    ``flags`` holds the alignment's own flags plus the quality gate's reasons and notes (default
    :class:`~gsscreen.faces.quality.QualityLimits`), so a study's QC sheet can show them first."""
    from gsscreen.faces.quality import assess_quality

    verdict = assess_quality(None, face, scale=factor)
    gate = [f for f in (*verdict.reasons, *verdict.notes) if f not in face.flags]
    return {
        "ok": True,
        "score": round(float(face.score), 6),
        "n_faces": int(face.n_faces),
        "flags": [*face.flags, *gate],
        "sharpness": verdict.measures["sharpness"],
        "rotation": int(face.rotation),
        "orientation": face.orientation,
        "other_faces": [{"box": [round(float(v) * factor, 2) for v in o["box"]], "score": round(float(o["score"]), 4)}
                        for o in face.other_faces],
        "landmarks": np.round(face.landmarks.astype(np.float64), 3).tolist(),
        "source_landmarks": np.round(face.source_landmarks.astype(np.float64) * factor, 3).tolist(),
        "box": [round(float(v) * factor, 2) for v in face.box],
        "tilt_deg": round(float(face.tilt_deg), 3),
        "iod": round(float(face.iod) * factor, 3),
        "outside": round(float(face.outside), 4),
    }


def _current(rec: dict[str, Any]) -> bool:
    """Whether a cached record holds what today's code would give.

    Records written before the orientation check (no ``orientation`` key) are kept — no re-alignment of a whole
    warm cache — when their face is one the orientation check would have accepted as it was: found without a turn,
    reading upright, confidently, eyes not squeezed in the box (>= 95 % of the development photos). The rest are
    aligned again. A failure stays a failure (the same attempts ran)."""
    if not rec.get("ok") or "orientation" in rec:
        return True
    from gsscreen.faces.orientation import MIN_EYE_SHARE, SEARCH_BELOW_SCORE, reads_upright

    if any(str(f).startswith("rotated") for f in rec.get("flags", [])):
        return False
    lm = np.asarray(rec["source_landmarks"], dtype=np.float64)
    box = rec["box"]
    share = float(np.hypot(*(lm[1] - lm[0]))) / max(float(box[2] - box[0]), 1e-9)
    return bool(reads_upright(lm, box) and float(rec["score"]) >= SEARCH_BELOW_SCORE and share >= MIN_EYE_SHARE)


def _upgrade(rec: dict[str, Any], crop: Path | None) -> dict[str, Any]:
    """A cached record from before the quality gate, with the gate's flags and the crop's sharpness added."""
    if not rec.get("ok") or "orientation" in rec:
        return rec
    import cv2

    from gsscreen.faces.quality import crop_sharpness, judge, measures_from_record

    rec = {**rec, "rotation": 0, "orientation": "upright", "other_faces": []}
    img = cv2.imread(str(crop), cv2.IMREAD_COLOR) if crop is not None else None
    rec["sharpness"] = (round(crop_sharpness(img[:, :, ::-1], np.asarray(rec["landmarks"])), 4)
                        if img is not None else None)
    v = judge(measures_from_record(rec))
    rec["flags"] = [*rec["flags"], *(f for f in (*v.reasons, *v.notes) if f not in rec["flags"])]
    return rec


def align_file(path: str | Path, cfg: AlignConfig) -> tuple[dict[str, Any], bytes | None]:
    """Align one photo file. Returns (record, PNG bytes of the crop) or ({"ok": False, "problem": ...}, None).

    Never raises for a bad photo: unreadable files and faceless photos become a failure record.
    """
    import cv2

    try:
        image, factor = load_image_scaled(path, cfg.load_max_side, cfg.max_pixels)
        face = align_face(image, cfg)
    except (ImageError, NoFaceError) as exc:
        return {"ok": False, "problem": exc.reason}, None
    except Exception as exc:  # one odd photo must not stop a batch of thousands
        # "transient": not cached, so a fixed bug or a freed resource gets a fresh try next run.
        return {"ok": False, "problem": f"unexpected error: {type(exc).__name__}: {exc}", "transient": True}, None
    rec = _record(face, factor)
    gated = [f for f in rec["flags"] if f in STUDY_GATE]
    if gated:
        from gsscreen.faces.quality import REASON_TEXT

        # Not a face the right way up: kept out of the study, with the reason (its landmarks stay in the record).
        return {"ok": False, "problem": " ".join(REASON_TEXT[f] for f in gated), "gated": gated,
                "face": {k: rec[k] for k in ("score", "source_landmarks", "box", "rotation", "orientation")}}, None
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(face.image[:, :, ::-1]))
    if not ok:  # pragma: no cover - encoding a valid uint8 array does not fail
        return {"ok": False, "problem": "could not encode the crop as PNG"}, None
    return rec, buf.tobytes()


def _worker_init() -> None:
    import cv2

    from gsscreen.procs import exit_with_parent

    # N worker processes each on one thread use N cores without oversubscribing them.
    cv2.setNumThreads(1)
    exit_with_parent()  # a killed `gsscreen align` must not leave its workers running


def _work(job: tuple[int, str, str, str, dict[str, Any], str]) -> tuple[int, dict[str, Any]]:
    """Pool task: align, store in the cache, write the crop. Returns (index, record)."""
    idx, path, key, crop_path, cfg_dict, cache_root = job
    cfg = from_dict(AlignConfig, cfg_dict)
    rec, png = align_file(path, cfg)
    if cache_root and not rec.get("transient"):
        with contextlib.suppress(OSError):  # a full or read-only cache must not lose the result
            FaceCache(Path(cache_root)).put(key, rec, png)
    if png is not None:
        from gsscreen.fsperm import atomic_write_bytes

        atomic_write_bytes(Path(crop_path), png)  # all or nothing: never a zero-byte crop a rerun would trust
    return idx, rec


def _run_pool(jobs: list[tuple], workers: int) -> Iterable[tuple[int, dict[str, Any]]]:
    """Run jobs on ``workers`` processes, yielding (index, record) as they finish.

    "spawn" processes are safe even when the caller has torch or threads running (fork would copy their locks).
    If the pool cannot work (e.g. the parent is a script on stdin, which spawn cannot re-import), the jobs left
    are run in this process instead of hanging or failing the batch.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    done: set[int] = set()
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_init) as ex:
            # Batches of jobs per task keep inter-process overhead small next to ~20 ms of work per photo.
            size = max(1, min(16, len(jobs) // (workers * 8)))
            futures = [ex.submit(_work_many, jobs[i : i + size]) for i in range(0, len(jobs), size)]
            for fut in as_completed(futures):
                for idx, rec in fut.result():
                    done.add(idx)
                    yield idx, rec
    except (BrokenProcessPool, OSError):
        pass
    for job in jobs:
        if job[0] not in done:
            yield _work(job)


def _work_many(jobs: list[tuple]) -> list[tuple[int, dict[str, Any]]]:
    return [_work(j) for j in jobs]


# ------------------------------------------------------------------------------------------------------------------
# QC sheet


def qc_sheet(crops: Sequence[Path], landmarks: Sequence[np.ndarray], out: Path, labels: Sequence[str] = (),
             cols: int = 8, tile: int = 160) -> Path:
    """Write a grid of aligned crops with their 5 landmarks drawn (PNG). landmarks: (5, 2) crop px each."""
    import cv2

    n = len(crops)
    rows = max(1, (n + cols - 1) // cols)
    sheet = np.full((rows * tile, min(n, cols) * tile if n else tile, 3), 255, np.uint8)
    colours = [(230, 40, 40), (40, 200, 40), (40, 90, 230), (230, 180, 0), (200, 0, 200)]
    for i, (cp, lm) in enumerate(zip(crops, landmarks, strict=False)):
        img = cv2.imread(str(cp), cv2.IMREAD_COLOR)
        if img is None:
            continue
        img = img[:, :, ::-1]
        s = tile / img.shape[0]
        t = np.ascontiguousarray(cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA))
        for (x, y), c in zip(np.asarray(lm) * s, colours, strict=False):
            cv2.circle(t, (round(x), round(y)), 3, c, -1, lineType=cv2.LINE_AA)
        if i < len(labels) and labels[i]:
            t[tile - 16 :] = (t[tile - 16 :] * 0.4).astype(np.uint8)  # darkened strip keeps the caption legible
            cv2.putText(t, labels[i][:26], (4, tile - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                        cv2.LINE_AA)
        r, c = divmod(i, cols)
        sheet[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = t
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.ascontiguousarray(sheet[:, :, ::-1]))
    return out


def qc_order(aligned: pd.DataFrame) -> pd.DataFrame:
    """The aligned rows in the order a QC sheet shows them: flagged by the quality gate first, then by detector
    score, lowest first (the crops most likely to be wrong lead)."""
    from gsscreen.faces.quality import NOTE_TEXT, REASON_TEXT

    gate = set(REASON_TEXT) | set(NOTE_TEXT)
    flagged = [any(f in gate for f in str(x or "").split(";")) for x in aligned["flags"].fillna("")]
    key = aligned.assign(_flagged=flagged)
    return key.sort_values(["_flagged", "score"], ascending=[False, True], kind="stable").drop(columns="_flagged")


# ------------------------------------------------------------------------------------------------------------------
# Batch


def align_cohort(
    items: Any,
    out_dir: str | Path,
    cfg: AlignConfig | None = None,
    progress: bool = True,
) -> AlignmentResult:
    """Align every photo of ``items`` (a Cohort, a DataFrame with ``image``, or paths) into ``out_dir``.

    Writes ``crops/<stem>-<hash8>.png`` (cfg.size² RGB), ``landmarks.csv`` (its ``crop`` column relative to its
    own folder; the returned ``aligned`` table has absolute paths), ``failures.csv``, ``qc_sheet.png``
    (``cfg.qc_count`` crops with landmarks: flagged by the quality gate and lowest detector score first) and
    ``config.json``. Faces whose landmarks do not make an upright face (:data:`STUDY_GATE`) go to ``failures``
    with the plain reason. Uses ``cfg.workers`` processes and the
    cache (unless ``cfg.cache`` is False). Per-photo problems go to ``failures``; nothing raises for a bad photo.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    cfg = cfg or AlignConfig()
    paths = image_paths(items)
    out = Path(out_dir).resolve()  # the returned table holds absolute crop paths, whatever the working directory
    crops_dir = out / "crops"
    from gsscreen.fsperm import private_dir

    private_dir(crops_dir)  # children's face crops: owner-only
    save_config(cfg, out / "config.json")
    ckey = config_key(cfg)
    cache = FaceCache() if cfg.cache else None

    records: list[dict[str, Any] | None] = [None] * len(paths)
    crop_paths: list[Path | None] = [None] * len(paths)
    cached = [False] * len(paths)
    jobs = []
    cfg_dict = to_dict(cfg)
    for i, p in enumerate(paths):
        try:
            digest = sha256_file(p)
        except FileNotFoundError:
            records[i] = {"ok": False, "problem": "file not found"}
            continue
        except IsADirectoryError:
            records[i] = {"ok": False, "problem": "is a folder, not an image file"}
            continue
        except OSError as exc:
            records[i] = {"ok": False, "problem": f"cannot read: {exc.strerror or exc}"}
            continue
        key = f"{digest}-{ckey}"
        crop_paths[i] = crops_dir / f"{p.stem}-{digest[:8]}.png"
        hit = cache.get(key) if cache else None
        if hit is not None and not _current(hit[0]):
            hit = None  # aligned before the orientation check and its landmarks call for it: align again
        if hit is not None:
            rec, png = hit
            if png is not None:
                from gsscreen.fsperm import atomic_write_bytes

                atomic_write_bytes(crop_paths[i], png.read_bytes())
            records[i], cached[i] = _upgrade(rec, png), True
        else:
            jobs.append((i, str(p), key, str(crop_paths[i]), cfg_dict, str(cache.root) if cache else ""))

    if jobs:
        bar = tqdm(total=len(jobs), desc="aligning faces", unit="photo", disable=not progress)
        workers = max(1, min(int(cfg.workers), len(jobs)))
        if workers == 1:
            for job in jobs:
                idx, rec = _work(job)
                records[idx] = rec
                bar.update()
        else:
            for idx, rec in _run_pool(jobs, workers):
                records[idx] = rec
                bar.update()
        bar.close()

    ok_rows, fail_rows = [], []
    for i, (p, rec) in enumerate(zip(paths, records, strict=True)):
        assert rec is not None
        if not rec.get("ok"):
            fail_rows.append({"image": str(p), "problem": rec.get("problem", "unknown problem")})
            continue
        lm = np.asarray(rec["landmarks"], dtype=np.float64).reshape(-1)
        row: dict[str, Any] = {
            "image": str(p),
            "crop": str(crop_paths[i]),
            "score": rec["score"],
            "n_faces": rec["n_faces"],
            "flags": ";".join(rec["flags"]),
        }
        row.update(dict(zip(LANDMARK_COLUMNS, lm.tolist(), strict=True)))
        row.update(dict(zip(BOX_COLUMNS, rec["box"], strict=True)))
        row.update({"tilt_deg": rec["tilt_deg"], "iod": rec["iod"], "outside": rec.get("outside", float("nan")),
                    "cached": cached[i]})
        ok_rows.append(row)
    aligned = pd.DataFrame(ok_rows, columns=ALIGNED_COLUMNS)
    failures = pd.DataFrame(fail_rows, columns=FAILURE_COLUMNS)
    landmarks_csv = out / "landmarks.csv"
    failures_csv = out / "failures.csv"
    # On disk the crops are named relative to landmarks.csv's folder ("crops/…"), so the folder can be moved and
    # every reader (report, explain) resolves them the same way.
    on_disk = aligned.copy()
    on_disk["crop"] = [Path(c).relative_to(out).as_posix() for c in on_disk["crop"]]
    on_disk.to_csv(landmarks_csv, index=False)
    failures.to_csv(failures_csv, index=False)

    sheet = None
    if len(aligned) and cfg.qc_count > 0:
        head = qc_order(aligned).head(cfg.qc_count)
        lms = [r[LANDMARK_COLUMNS].to_numpy(np.float64).reshape(5, 2) for _, r in head.iterrows()]
        gate_flags = [next((f for f in str(x or "").split(";")[::-1] if f), "") for x in head["flags"].fillna("")]
        labels = [f"{Path(s).stem} {g}".strip() for s, g in zip(head["image"], gate_flags, strict=True)]
        sheet = qc_sheet([Path(c) for c in head["crop"]], lms, out / "qc_sheet.png", labels)
    return AlignmentResult(
        aligned=aligned,
        failures=failures,
        out_dir=out,
        crops_dir=crops_dir,
        landmarks_csv=landmarks_csv,
        failures_csv=failures_csv,
        qc_sheet=sheet,
        config_json=out / "config.json",
        n_cached=sum(cached),
        seconds=time.perf_counter() - t0,
    )
