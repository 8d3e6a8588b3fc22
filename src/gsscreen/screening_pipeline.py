"""``gsscreen screen`` at archive speed: a streaming, batched, parallel and resumable pipeline.

Stages (the same per-photo steps as :meth:`ScreeningModel.screen_file`, so results are equal to the one-photo path)::

    input order ─► worker processes: read + SHA-256, decode, detect, align, quality   (ScreeningModel.prepare_file)
                ─► this process: the model on batches, batched Grad-CAM             (ScreeningModel.screen_prepared)
                ─► a writer thread: heatmap PNGs, then results.jsonl + results.csv appended per batch (flush + fsync)

- **Streaming**: at most ``2 × batch_size`` photos are in flight (submitted to the workers or waiting for their
  batch), plus the batch being written, so memory does not grow with the number of photos.
- **Overlapped**: the writer thread writes batch *j* (PNG encoding releases the GIL) while the model runs batch
  *j + 1*; the command line starts the workers from the pack's verified metadata alone
  (:meth:`ScreeningModel.for_preparation`) and loads the networks in a thread meanwhile (``networks``), so photos
  are being prepared during the seconds of importing torch.
- **Deterministic batches**: batch *j* holds the photos with input positions ``[j·B, (j+1)·B)`` (those with a
  face), so a resumed run feeds the model exactly the same batches as an uninterrupted one.
- **Resumable**: every row of ``results.jsonl`` records the photo's SHA-256 and a hash of the settings that shape a
  result (model, heatmap, age, quality thresholds). A rerun with the same output folder keeps the rows whose file,
  content and settings still match, skips those photos (the workers hash a file before decoding it) and appends the
  rest. Rows are written a batch at a time, JSON lines first, each file flushed and fsynced, so a SIGKILL loses at
  most the batches in flight (the one the model is on and the one being written); a truncated last line is dropped
  and ``results.csv`` is rebuilt from the JSON lines before anything is appended. If the kept rows are not a prefix
  of the inputs in order (inputs changed), the tables are rewritten in input order at the end, so they equal an
  uninterrupted run's.
- **Workers** are "spawn" processes that hold a network-free copy of the model (:meth:`ScreeningModel.preprocessor`,
  no torch import) and exit by themselves when this process dies (:func:`gsscreen.procs.exit_with_parent`).
  ``workers=0`` runs everything in this process (the sequential path, for comparisons and where processes cannot
  start).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future

    import pandas as pd

    from gsscreen.screening import PreparedPhoto, ScreenConfig, ScreeningModel, ScreenResult

RESULTS_CSV = "results.csv"
RESULTS_JSONL = "results.jsonl"
RESULTS_JSON = "results.json"
#: ScreenConfig fields that do not change a result (left out of the settings hash that guards resumption).
_NOT_IN_SETTINGS = ("inputs", "out_dir", "batch_size", "workers")


#: model.json fields that do not change a result (when the pack was made, its card text).
_NOT_IN_PACK_SETTINGS = ("created", "holdout_note")


def settings_hash(model: ScreeningModel, cfg: ScreenConfig) -> str:
    """Hash (16 hex) of what shapes a row: the model id, the pack's settings, the decision in use (operating point,
    threshold, prevalence: ``--operating-point`` and ``--prevalence`` change the calls) and every result-relevant
    field of ``cfg``. The model id names the weights only; packs with the same weights can differ in mirror
    averaging, calibration, thresholds or quality limits (the demo pack did), so those are hashed too."""
    from gsscreen.config import to_dict

    d = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_IN_SETTINGS}
    pack = {k: v for k, v in model.info.items() if k not in _NOT_IN_PACK_SETTINGS}
    blob = json.dumps({"model": model.model_id, "pack": pack, "decision": model.decision.describe(), **d},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ workers


def model_threads(workers: int) -> int:
    """Torch threads for the model when ``workers`` processes prepare photos: the cores they leave, at least one.

    Measured on a loaded 2-core machine: the FaceNet body at batch 32 ran 3.5× faster on 1 thread than on 2 when the
    cores were busy (OpenMP's threads wait for each other at every layer), so the model never asks for cores the
    workers already use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - max(0, workers))


#: the workers' scheduling priority, below this process's (Unix niceness, added). They prepare up to two batches
#: ahead of the model, so when both want a core the model should have it: the model process's threads (the networks
#: loading, the CAM, the mirror view, the writer) are the pipeline's critical path, and a worker that waits only
#: uses up some of its lead. Measured on 2 cores, 100 photos with heatmaps, alternating runs: 10.5–13.4 s at
#: niceness 10 against 14.0–16.5 s at 0 (the networks started 2 s later at 0: their loading thread shared a core
#: with both workers).
WORKER_NICENESS = 10

_PREP: dict[str, Any] = {}


def _worker_init(light: ScreeningModel, done: dict[str, str], age: float | None, max_pixels: int | None,
                 ppid: int, pixels: bool = True) -> None:
    import cv2

    from gsscreen.procs import exit_with_parent

    cv2.setNumThreads(1)  # N single-threaded workers use N cores without oversubscribing them
    with contextlib.suppress(AttributeError, OSError):  # no os.nice on this platform: the normal priority
        os.nice(WORKER_NICENESS)
    _PREP.update(model=light, done=done, age=age, max_pixels=max_pixels, pixels=pixels)
    if os.getppid() != ppid:  # the parent died while this worker was starting
        os._exit(1)
    exit_with_parent()  # a SIGKILLed run must not leave its workers waiting on the task queue


def prepare_path(model: ScreeningModel, path: str, done: dict[str, str], age: float | None,
                 max_pixels: int | None = None) -> tuple[str | None, PreparedPhoto | ScreenResult | None]:
    """``(sha256, prepared photo or final result)`` of one file; ``(sha256, None)`` when ``done[path]`` already
    holds that hash (nothing decoded). Never raises: a failure becomes a result naming the problem."""
    t0 = time.perf_counter()
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None, model._empty(path, "file not found", "unreadable", t0)
    except IsADirectoryError:
        return None, model._empty(path, "is a folder, not an image file", "unreadable", t0)
    except OSError as exc:
        return None, model._empty(path, f"cannot read: {exc.strerror or exc}", "unreadable", t0)
    sha = hashlib.sha256(data).hexdigest()
    if done.get(path) == sha:
        return sha, None
    try:
        if not data:
            return sha, model._empty(path, "empty file (0 bytes)", "unreadable", t0)
        prep = model.prepare_file(data, age_months=age, max_pixels=max_pixels)
        prep.file = path
    except Exception as exc:  # one photo never stops the batch: its row says what happened
        prep = model._empty(path, f"{type(exc).__name__}: {exc}", "unreadable", t0)
    prep.seconds = time.perf_counter() - t0
    return sha, prep


def _without_pixels(item: tuple[str | None, Any]) -> tuple[str | None, Any]:
    # Without a heatmap the model needs only ``model_input``: the aligned crop and the boxed photo (~0.5 MB a photo,
    # for the heatmap PNGs) are not pickled back to the main process.
    prep = item[1]
    if prep is not None and hasattr(prep, "model_input"):
        prep.crop = None
        prep.faces_overlay = None
    return item


def _faces_png(item: tuple[str | None, Any]) -> tuple[str | None, Any]:
    # The boxed photo as PNG bytes, encoded here in the worker rather than in the model's process (whose threads are
    # the pipeline's critical path); the bytes are also about half the pixels' size to send back.
    prep = item[1]
    if prep is not None and getattr(prep, "faces_overlay", None) is not None and hasattr(prep, "faces_png"):
        prep.faces_png, prep.faces_overlay = _png_bytes(prep.faces_overlay), None
    return item


def _png_bytes(pixels: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)  # zlib's fastest: ~5x less time
    return buf.getvalue()


def _prepare_many(jobs: list[tuple[int, str]]) -> list[tuple[int, str | None, Any]]:
    m = _PREP["model"]
    out = []
    for i, p in jobs:
        item = prepare_path(m, p, _PREP["done"], _PREP["age"], _PREP["max_pixels"])
        out.append((i, *(_faces_png(item) if _PREP.get("pixels", True) else _without_pixels(item))))
    return out


# ------------------------------------------------------------------------------------------------ output files


def _row(res: ScreenResult, heatmap: str) -> dict[str, Any]:
    from gsscreen.screening import RESULT_COLUMNS

    face = res.face or {}
    row = {
        "file": res.file, "p_gs": res.p_gs, "outcome": res.outcome, "call": res.call,
        "reasons": ";".join(res.reasons), "threshold": res.threshold, "operating_point": res.operating_point,
        "flags": ";".join(res.flags), "problem": res.problem or "", "heatmap": heatmap,
        "iod_px": face.get("iod_px"), "yaw": face.get("yaw"), "roll_deg": face.get("roll_deg"),
        "n_faces": face.get("n_faces"), "fold_p_gs": ";".join(f"{v:.4f}" for v in res.fold_p_gs),
    }
    return {k: row.get(k) for k in RESULT_COLUMNS}


def _csv_text(rows: list[dict[str, Any]], header: bool = False) -> str:
    from gsscreen.screening import RESULT_COLUMNS

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(RESULT_COLUMNS), lineterminator="\n")
    if header:
        w.writeheader()
    w.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    return buf.getvalue()


def _append(path: Path, text: str) -> None:
    # One write per batch, flushed and fsynced: after a crash the file ends at a batch boundary or inside the last
    # line (which the reader drops), never with a row that looks complete but is not.
    with open(path, "a", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The complete records of a ``results.jsonl`` (a truncated or corrupt line ends the reading)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                return
            try:
                rec = json.loads(line)
            except ValueError:
                return
            if not isinstance(rec, dict) or "row" not in rec:
                return
            yield rec


class _Writer:
    """The output folder: resumable ``results.jsonl`` + ``results.csv``, heatmap PNGs.

    ``background``: :meth:`write` hands each batch to a thread of its own and returns (PNG encoding releases the
    GIL), so the model goes on with the next batch meanwhile; batches are written one at a time, in order, and
    :meth:`wait` raises the error of a failed one."""

    def __init__(self, out: Path, settings: str, inputs: list[str], background: bool = False) -> None:
        self.out, self.settings = out, settings
        self._pool: Any = None
        self._pending: Any = None
        if background:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="gsscreen-write")
        self.jsonl, self.csv = out / RESULTS_JSONL, out / RESULTS_CSV
        self.done: dict[str, str] = {}  # file -> sha256 of rows kept from an earlier run
        self.kept: list[str] = []  # their files, in the order of the tables
        self.used: set[str] = set()  # heatmap stems taken
        wanted = set(inputs)
        tmp_j, tmp_c = self.jsonl.with_suffix(".jsonl.tmp"), self.csv.with_suffix(".csv.tmp")
        # Rebuild both tables from the trusted JSON lines (streaming: one record at a time).
        with open(tmp_j, "w", encoding="utf-8") as fj, open(tmp_c, "w", encoding="utf-8", newline="") as fc:
            fc.write(_csv_text([], header=True))
            for rec in read_records(self.jsonl):
                f = rec["row"].get("file")
                if rec.get("settings") != settings or f not in wanted or f in self.done:
                    continue
                if rec.get("sha256") is None:  # a photo that could not be read: try it again
                    continue
                self.done[f] = rec["sha256"]
                self.kept.append(f)
                hm = rec["row"].get("heatmap") or ""
                if hm:
                    self.used.add(Path(hm).name.removesuffix("_gradcam.png"))
                fj.write(json.dumps(rec, default=str) + "\n")
                fc.write(_csv_text([rec["row"]]))
            for fh in (fj, fc):
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp_j, self.jsonl)
        os.replace(tmp_c, self.csv)
        self.n_new = 0
        self.in_order = True  # the tables are (so far) in input order
        self._next_kept = 0

    def skipped(self, file: str) -> None:
        """``file`` was found done; track whether the tables still follow the input order."""
        if self.n_new or self._next_kept >= len(self.kept) or self.kept[self._next_kept] != file:
            self.in_order = False
        self._next_kept += 1

    def heatmap(self, res: ScreenResult, faces_png: bytes | None = None) -> str:
        from gsscreen.explain import unique_stem

        if res.overlay is None:
            return ""
        d = self.out / "heatmaps"
        d.mkdir(exist_ok=True)
        stem = unique_stem(Path(res.file or 'photo').stem or 'photo', self.used)
        p = d / f"{stem}_gradcam.png"
        pngs = [(p, _png_bytes(res.overlay))]
        if faces_png is None and res.faces_overlay is not None:
            faces_png = _png_bytes(res.faces_overlay)
        if faces_png is not None:  # every face boxed on the photo, the scored one orange (beside it)
            pngs.append((d / f"{stem}_faces.png", faces_png))
        for q, data in pngs:
            tmp = q.with_name(q.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, q)
        if res.regions:  # the region bar chart beside the heatmap
            from gsscreen.explain_regions import region_bars

            region_bars(res.regions, d / f"{stem}_regions.png")
        return str(p.relative_to(self.out))

    def write(self, items: list[tuple[ScreenResult, str | None, bytes | None]]) -> None:
        """Append a batch's rows (heatmap PNGs first): now, or in the background thread after the batch before."""
        self.n_new += len(items)
        if self._pool is None:
            self._write(items)
            return
        self.wait()
        self._pending = self._pool.submit(self._write, items)

    def wait(self) -> None:
        """Until the batches handed to :meth:`write` are written (raises a failed one's error)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Finish the batch being written (a run stopped by an error keeps it) and end the thread."""
        if self._pool is not None:
            from concurrent.futures import wait

            if self._pending is not None:
                wait([self._pending])  # its error, if any, was not the one that stopped the run
            self._pool.shutdown(wait=True)
            self._pool = None

    def _write(self, items: list[tuple[ScreenResult, str | None, bytes | None]]) -> None:
        # items: (result, SHA-256 of the file, the boxed photo's PNG when the worker encoded it)
        recs = []
        for res, sha, faces_png in items:
            row = _row(res, self.heatmap(res, faces_png))
            recs.append({"row": row, "sha256": sha, "settings": self.settings, "result": {**res.to_dict(),
                                                                                          "heatmap": row["heatmap"]}})
        _append(self.jsonl, "".join(json.dumps(r, default=str) + "\n" for r in recs))
        _append(self.csv, _csv_text([r["row"] for r in recs]))

    def finish(self, inputs: list[str]) -> None:
        """Rewrite the tables in input order when resumption left them otherwise (inputs changed)."""
        if self.in_order and self._next_kept == len(self.kept):
            return
        latest = {r["row"]["file"]: r for r in read_records(self.jsonl)}
        tmp_j, tmp_c = self.jsonl.with_suffix(".jsonl.tmp"), self.csv.with_suffix(".csv.tmp")
        with open(tmp_j, "w", encoding="utf-8") as fj, open(tmp_c, "w", encoding="utf-8", newline="") as fc:
            fc.write(_csv_text([], header=True))
            for f in inputs:
                if f in latest:
                    fj.write(json.dumps(latest[f], default=str) + "\n")
                    fc.write(_csv_text([latest[f]["row"]]))
        os.replace(tmp_j, self.jsonl)
        os.replace(tmp_c, self.csv)

    def write_json(self, model: ScreeningModel, bad_inputs: list[tuple[str, str]]) -> None:
        """``results.json``: the model, the disclaimer and every result (streamed from the JSON lines)."""
        from gsscreen.screening import DISCLAIMER

        tmp = self.out / (RESULTS_JSON + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write('{\n"model": ' + json.dumps(model.summary(), default=str) + ',\n"disclaimer": '
                     + json.dumps(DISCLAIMER) + ',\n"input_problems": '
                     + json.dumps([{"input": e, "problem": p} for e, p in bad_inputs]) + ',\n"results": [\n')
            for k, rec in enumerate(read_records(self.jsonl)):
                fh.write((",\n" if k else "") + json.dumps(rec["result"], default=str))
            fh.write("\n]\n}\n")
        os.replace(tmp, self.out / RESULTS_JSON)


# ------------------------------------------------------------------------------------------------ the pipeline


def _start_workers(model: ScreeningModel, files: list[str], done: dict[str, str], cfg: ScreenConfig) -> Any:
    """The worker pool (None for ``workers=0`` or a single photo), its processes already starting: they import
    and unpickle while this process loads the ONNX body."""
    workers = max(0, int(cfg.workers))
    if workers == 0 or len(files) < 2:
        return None
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    n = min(workers, len(files))
    ex = ProcessPoolExecutor(n, mp_context=get_context("spawn"), initializer=_worker_init,
                             initargs=(model.preprocessor(), done, cfg.age_months, None, os.getpid(),
                                       bool(cfg.heatmap)))
    for _ in range(n):  # processes start on demand: ask for all of them now
        ex.submit(os.getpid)
    return ex


def _prepared_stream(model: ScreeningModel, files: list[str], done: dict[str, str], cfg: ScreenConfig,
                     window: int, ex: Any = None) -> Iterator[tuple[int, str | None, Any]]:
    """``(index, sha256, prepared or result or None)`` for every file, in input order, at most ``window`` ahead
    (in the processes of ``ex``, from :func:`_start_workers`; in this one when None)."""
    if ex is None:
        for i, f in enumerate(files):
            item = prepare_path(model, f, done, cfg.age_months)
            yield (i, *(item if cfg.heatmap else _without_pixels(item)))
        return
    from concurrent.futures import FIRST_COMPLETED, wait

    chunk = 4  # photos per task: small next to a batch, large enough to amortise the inter-process traffic
    try:
        pending: set[Any] = set()
        ready: dict[int, tuple[int, str | None, Any]] = {}
        nxt_submit = nxt_yield = 0
        while nxt_yield < len(files):
            while nxt_submit < len(files) and nxt_submit - nxt_yield < window:
                jobs = [(i, files[i]) for i in range(nxt_submit, min(nxt_submit + chunk, len(files)))]
                pending.add(ex.submit(_prepare_many, jobs))
                nxt_submit += len(jobs)
            while nxt_yield in ready:
                yield ready.pop(nxt_yield)
                nxt_yield += 1
                if nxt_submit < len(files) and nxt_submit - nxt_yield < window - chunk:
                    break  # top the workers up before handing out more
            if nxt_yield >= len(files) or nxt_yield in ready:
                continue
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                for item in fut.result():
                    ready[item[0]] = item
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _in_thread(fn: Callable[[], Any]) -> Future:
    """``fn()`` started in a thread of its own (a daemon: it never holds up the interpreter's exit)."""
    from concurrent.futures import Future

    fut: Future = Future()

    def run() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn())
        except BaseException as exc:  # handed to whoever waits on the future
            fut.set_exception(exc)

    threading.Thread(target=run, name="gsscreen-load", daemon=True).start()
    return fut


def run_screening(model: ScreeningModel, cfg: ScreenConfig, progress: bool = True,
                  networks: Callable[[], ScreeningModel] | None = None) -> pd.DataFrame:
    """Screen every photo of ``cfg.inputs`` into ``cfg.out_dir`` (see the module docstring) and return the table
    of ``results.csv``: one row per photo, in input order; a photo that fails has ``problem`` set, no ``p_gs``.

    ``networks``: with a preparation-only ``model`` (:meth:`ScreeningModel.for_preparation`), a function that
    loads the full model of the same pack. It runs in a thread while the workers already prepare photos, so the
    seconds of importing torch and building the networks are not spent with the photos waiting; its model must
    give the same settings hash (the same pack and decision), else :class:`ValueError`.
    """
    from concurrent.futures import wait

    from gsscreen.config import save_config
    from gsscreen.screening import CALL_NONE, ScreenResult, expand_inputs

    if int(cfg.batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.runtime not in ("auto", "torch"):
        raise ValueError(f"runtime must be 'auto' or 'torch', got {cfg.runtime!r}")
    if networks is None and not model.has_networks:
        raise ValueError("a preparation-only model needs `networks`, the function that loads the full model")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.json")
    files, bad_inputs = expand_inputs(cfg.inputs)
    settings = settings_hash(model, cfg)
    bad_names = [e for e, _ in bad_inputs]
    writer = _Writer(out, settings, bad_names + files, background=True)
    if bad_inputs:  # inputs that name nothing: rows first, as before (redone every run: no content to hash)
        writer.write([(ScreenResult(file=e, p_gs=None, suspected=None, call=CALL_NONE, threshold=model.threshold,
                                    model_id=model.model_id, flags=["unreadable"], problem=p), None, None)
                      for e, p in bad_inputs])
        writer.in_order = False
    b = int(cfg.batch_size)
    ex = _start_workers(model, files, writer.done, cfg)  # the workers start up while the model gets ready
    threads = model_threads(cfg.workers) if cfg.workers > 0 else None  # torch's, while the workers run

    def ready() -> ScreeningModel:  # the full model, its frozen body on the runtime asked for
        full = networks() if networks is not None else model
        if full is not model and settings_hash(full, cfg) != settings:
            raise ValueError(f"the model loaded from {full.path} is not the one its photos were prepared for")
        why = full.use_onnx(cfg.runtime == "auto", threads=threads or _torch_threads())
        if why and cfg.runtime == "auto" and progress:
            print(f"the frozen body runs on torch ({why})", file=sys.stderr)
        return full

    onnx_before = (getattr(model, "onnx_body", None), getattr(model, "onnx_front", None))
    torch_before: list[int] = []
    full: ScreeningModel | None = None
    loading = _in_thread(ready) if networks is not None else None
    bar = None
    block: list[tuple[int, str | None, Any]] = []

    def take_model() -> ScreeningModel:
        # In this thread: torch's thread count belongs to the thread that runs the model.
        m = loading.result() if loading is not None else ready()
        if threads is not None:
            torch_before.append(_torch_threads())
            _set_torch_threads(threads)
        return m

    def flush() -> None:
        nonlocal full
        prepared = [(k, item) for k, (_, _, item) in enumerate(block) if item is not None and
                    not isinstance(item, ScreenResult)]
        if prepared and full is None:
            full = take_model()
        done = full.screen_prepared([p for _, p in prepared], cfg.heatmap, cfg.regions) if prepared else []
        results = dict(zip([k for k, _ in prepared], done, strict=True))
        items = []
        for k, (_, sha, item) in enumerate(block):
            if item is None:
                writer.skipped(files[block[k][0]])
                continue
            items.append((results.get(k, item), sha, getattr(item, "faces_png", None)))
        if items:
            writer.write(items)
        bar.update(len(block))
        block.clear()

    try:
        if loading is None:  # the model is here: ready it before the first photo arrives
            full = take_model()
        from tqdm.auto import tqdm

        bar = tqdm(total=len(files), desc="screening", unit="photo", disable=not progress or len(files) < 2,
                   smoothing=0.05)
        for item in _prepared_stream(model, files, writer.done, cfg, window=2 * b, ex=ex):
            block.append(item)
            if item[0] % b == b - 1 or item[0] == len(files) - 1:  # batch j = input positions [j·b, (j+1)·b)
                flush()
        writer.wait()
        if loading is not None and full is None:
            loading.result()  # a pack that cannot load is an error even when no photo needed the networks
    finally:
        writer.close()
        if loading is not None:
            wait([loading])  # a loader still running must not outlive the run
        else:
            model.onnx_body, model.onnx_front = onnx_before
        if torch_before:
            _set_torch_threads(torch_before[0])
        if bar is not None:
            bar.close()
        if ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)
    writer.finish(bad_names + files)
    writer.write_json(model, bad_inputs)
    import pandas as pd  # here, not above: its import (~0.3 s) would hold up the workers' start

    return pd.read_csv(out / RESULTS_CSV, keep_default_na=True)


__all__ = ["RESULTS_CSV", "RESULTS_JSONL", "prepare_path", "read_records", "run_screening", "settings_hash"]
