"""Batching concurrent screening requests, off the event loop.

A request's photo is decoded, searched for a face, aligned and quality-checked in a small pool of worker processes
(:meth:`ScreeningModel.prepare_file` on a network-free copy of the model), so a slow or pathological photo holds one
worker, never the event loop, the model or the other requests' photos. Prepared photos meet in one queue; one model
thread takes the first, waits up to ``max_wait_ms`` for more (up to ``max_batch``), and runs them as one batch
(:meth:`ScreeningModel.screen_prepared`, with a batched Grad-CAM for those that asked for a heatmap). Under load the
queue fills while a batch runs, so batches grow by themselves and the CPU does the batched forward it is fastest
at; a lone request waits at most ``max_wait_ms`` extra.

The batcher is loop-agnostic (it hands out :class:`concurrent.futures.Future` objects wrapped for whichever event
loop awaits them) and thread-safe.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gsscreen.screening import PreparedPhoto, ScreeningModel, ScreenResult


@dataclass
class BatcherConfig:
    """Settings of :class:`ScreenBatcher`.

    Attributes:
        workers: processes that decode, detect and align (0 = threads of this process, for tests / debugging).
        max_batch: most photos per model batch.
        max_wait_ms: how long the first photo of a batch waits for company, ms.
        max_pixels: largest accepted pixel count (decompression-bomb guard, read from the header).
        runtime: "auto" lets :meth:`ScreenBatcher.warm_up` put the shared frozen body on ONNX Runtime; "torch".
        prepare_timeout_s: longest a photo's preparation may take, s (worker start-up included). Past it the
            request gets an "unreadable" answer saying so, and the pool, whose worker may be stuck, is replaced.
    """

    workers: int = 2
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_pixels: int | None = None
    runtime: str = "auto"
    prepare_timeout_s: float = 60.0


def _prepare_bytes(data: bytes, age: float | None) -> tuple[str, Any]:
    # Runs in a worker process (the model copy comes from screening_pipeline's initializer).
    from gsscreen.screening_pipeline import _PREP

    t0 = time.perf_counter()
    m = _PREP["model"]
    sha = hashlib.sha256(data).hexdigest()
    try:
        prep = m.prepare_file(data, age_months=age, max_pixels=_PREP["max_pixels"])
    except Exception as exc:  # the request gets a clear "unreadable" answer, the worker lives on
        prep = m._empty(None, f"{type(exc).__name__}: {exc}", "unreadable", t0)
    return sha, prep


_STOP = object()


class ScreenBatcher:
    """``await batcher.screen(photo_bytes, age_months, heatmap)`` → ``(ScreenResult, sha256)`` (see the module
    docstring). Call :meth:`close` when done (the worker processes also exit by themselves if this process dies)."""

    def __init__(self, model: ScreeningModel, cfg: BatcherConfig | None = None) -> None:
        self.model = model
        self.cfg = cfg or BatcherConfig()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        #: sizes of the batches run so far (the last 1000), for tests and the benchmark
        self.batch_sizes: list[int] = []

    # --- stage 1: per-photo work in the pool
    def _get_pool(self) -> ProcessPoolExecutor:
        from multiprocessing import get_context

        from gsscreen.screening_pipeline import _worker_init

        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.cfg.workers, mp_context=get_context("spawn"), initializer=_worker_init,
                    initargs=(self.model.preprocessor(), {}, None, self.cfg.max_pixels, os.getpid()))
            return self._pool

    def warm_up(self) -> None:
        """Start the worker processes now rather than on the first request, give the model the cores they leave
        and (``runtime="auto"``) the ONNX body: process-wide changes, for the server, not a host application."""
        import torch

        from gsscreen.screening_pipeline import model_threads

        if self.cfg.workers > 0:
            torch.set_num_threads(model_threads(self.cfg.workers))
            pool = self._get_pool()
            for f in [pool.submit(os.getpid) for _ in range(self.cfg.workers)]:
                f.result()
        if self.cfg.runtime == "auto":  # the shared body on ONNX Runtime when it can (P(GS) of the mirror view, …)
            self.model.use_onnx(True, threads=torch.get_num_threads())
        self._ensure_thread()

    async def _prepare(self, data: bytes, age: float | None) -> tuple[str, PreparedPhoto | ScreenResult]:
        if self.cfg.workers <= 0:
            return await asyncio.to_thread(self._prepare_here, data, age)
        for attempt in (0, 1):
            pool = self._get_pool()
            try:
                # No wait without an end: a worker that never answers (a stuck decoder, a pool whose processes
                # could not start) must not hold the request, and its client, for ever.
                return await asyncio.wait_for(asyncio.wrap_future(pool.submit(_prepare_bytes, data, age)),
                                              timeout=self.cfg.prepare_timeout_s)
            except TimeoutError:
                self._discard_pool(pool, kill=True)
                sha = hashlib.sha256(data).hexdigest()
                return sha, self.model._empty(
                    None, f"preparing the photo took longer than {self.cfg.prepare_timeout_s:g} s and was stopped",
                    "unreadable", time.perf_counter())
            except BrokenProcessPool:
                # A worker died (a decoder crash, the OOM killer): start a fresh pool; the photo gets one more try.
                self._discard_pool(pool, kill=False)
                if attempt:
                    sha = hashlib.sha256(data).hexdigest()
                    return sha, self.model._empty(None, "the photo could not be decoded (the decoder crashed)",
                                                  "unreadable", time.perf_counter())
        raise AssertionError("unreachable")

    def _discard_pool(self, pool: ProcessPoolExecutor, kill: bool) -> None:
        """Forget ``pool`` (the next request starts a fresh one); ``kill`` its processes too when one may be stuck
        in native code, where no cancellation reaches. Other requests in that pool get a broken pool and retry."""
        with self._lock:
            if self._pool is pool:
                self._pool = None
        processes = list((getattr(pool, "_processes", None) or {}).values()) if kill else []
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            if proc.is_alive():
                proc.kill()

    def _prepare_here(self, data: bytes, age: float | None) -> tuple[str, PreparedPhoto | ScreenResult]:
        return hashlib.sha256(data).hexdigest(), self.model.prepare_file(data, age_months=age,
                                                                          max_pixels=self.cfg.max_pixels)

    # --- stage 2: the model on batches, in one thread
    def _ensure_thread(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="gsscreen-batcher", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        wait = self.cfg.max_wait_ms / 1000.0
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = time.monotonic() + wait
            stop = False
            while len(batch) < self.cfg.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[tuple[PreparedPhoto, tuple[bool, bool], Future]]) -> None:
        self.batch_sizes = [*self.batch_sizes[-999:], len(batch)]
        # One model call per kind of answer asked for: (heatmap, regions).
        for kind in sorted({b[1] for b in batch}, reverse=True):
            group = [b for b in batch if b[1] == kind]
            try:
                results = self.model.screen_prepared([p for p, _, _ in group], heatmap=kind[0], regions=kind[1])
            except Exception as exc:  # every request of the batch hears about it; the thread lives on
                for _, _, fut in group:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, _, fut), res in zip(group, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    async def screen(self, data: bytes, age_months: float | None = None, heatmap: bool = True,
                     regions: bool | None = None) -> tuple[ScreenResult, str]:
        """Screen one photo given as file bytes: ``(result, sha256 of the bytes)``. A photo that cannot be
        screened gives a result with ``problem`` set (as :meth:`ScreeningModel.screen_file`). ``regions``: the
        facial-region attributions too (None = with the heatmap, as :meth:`ScreeningModel.screen_prepared`)."""
        from gsscreen.screening import ScreenResult, regions_wanted

        self._ensure_thread()
        t0 = time.perf_counter()
        sha, prep = await self._prepare(data, age_months)
        if isinstance(prep, ScreenResult):
            prep.seconds = time.perf_counter() - t0
            return prep, sha
        fut: Future = Future()
        self._queue.put((prep, (bool(heatmap), regions_wanted(heatmap, regions)), fut))
        res = await asyncio.wrap_future(fut)
        res.seconds = time.perf_counter() - t0
        return res, sha

    def close(self) -> None:
        """Stop the model thread (after the batches queued) and the worker processes."""
        with self._lock:
            self._closed = True
            thread, pool, self._pool = self._thread, self._pool, None
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout=30)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["BatcherConfig", "ScreenBatcher"]
