"""Benchmark: the photos an attacker (or a careless scanner) sends to ``gsscreen serve`` (not a test: prints numbers).

    .venv/bin/python benchmarks/bench_hostile_photos.py [--model PACK] [--timeout 120]

Each photo is screened through :meth:`ScreeningModel.screen_file` (the path ``POST /api/screen`` takes, heatmap on)
in a fresh child process that first loads the model and screens a normal photo once. The peak-RSS mark is then
reset (``/proc/self/clear_refs``), so "extra MB" = peak RSS during this photo - RSS before it: the memory this one
photo needs on top of a loaded model. Prints wall time, the process's CPU time (the work, all threads; wall time
also counts waiting for a busy CPU), extra MB, and the answer (P(GS) or the refusal's reason).

Photos (PNG bytes built here, flat grey like the audit's few-hundred-byte files; plus a noise strip, which gives
the detector the most candidates): 10000×1, 1×6000, 1600×40 (flat and noise), 40000×1000 (40 MP, the service's
pixel limit), and the astronaut portrait (a normal photo). Goal (issue #11): ≤ 2 s and ≤ 300 MB extra each.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _png(w: int, h: int, noise: bool = False) -> bytes:
    import numpy as np
    from PIL import Image

    if noise:
        a = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        a = np.full((h, w, 3), 128, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _normal() -> bytes:
    from gsscreen.examples import example_path

    return example_path("astronaut").read_bytes()


CASES = {
    "10000x1 flat": lambda: _png(10000, 1),
    "1x6000 flat": lambda: _png(1, 6000),
    "1600x40 flat": lambda: _png(1600, 40),
    "1600x40 noise": lambda: _png(1600, 40, noise=True),
    "40000x1000 flat (40 MP)": lambda: _png(40000, 1000),
    "6300x6300 flat (40 MP)": lambda: _png(6300, 6300),
    "6000x1000 noise (6:1)": lambda: _png(6000, 1000, noise=True),
    "astronaut JPEG (normal)": _normal,
}


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak() -> int:
    """Reset the peak-RSS mark (Linux) and return the current RSS, KiB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def _child(name: str, model_path: str | None, q: mp.Queue) -> None:  # type: ignore[type-arg]
    from gsscreen.modelpack import load_model_pack
    from gsscreen.screening import resolve_model

    path, _ = resolve_model(model_path)
    model = load_model_pack(path)
    model.screen_file(_normal(), heatmap=True)  # warm-up: every buffer of a normal screening is in the baseline
    data = CASES[name]()
    base = _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        res = model.screen_file(data, heatmap=True, max_pixels=40_000_000)
        answer = f"P(GS)={res.p_gs:.3f}" if res.ok else f"refused: {res.problem}"
    except Exception as exc:  # what the service turned into a 500 before the fix
        answer = f"CRASH {type(exc).__name__}: {' '.join(str(exc).split())}"
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_kib("VmHWM")
    q.put((len(data), dt, cpu, (peak - base) / 1024, answer))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model pack (default: the shipped demo model)")
    ap.add_argument("--timeout", type=float, default=120.0, help="give up on one photo after this many seconds")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    print(f"{'photo':<28} {'bytes':>8} {'wall s':>7} {'CPU s':>6} {'extra MB':>9}  answer")
    worst_t = worst_c = worst_m = 0.0
    for name in CASES:
        q = ctx.Queue()
        p = ctx.Process(target=_child, args=(name, args.model, q))
        p.start()
        p.join(args.timeout + 60)  # model load + warm-up come on top of the photo's own time
        if p.is_alive():
            p.kill()
            p.join()
            print(f"{name:<28} {'':>8} {'>' + str(int(args.timeout)):>7} {'?':>6} {'?':>9}  killed (no answer)")
            worst_t = float("inf")
            continue
        if q.empty():
            print(f"{name:<28} {'':>8} {'':>7} {'':>6} {'':>9}  crashed (exit code {p.exitcode})")
            continue
        n, dt, cpu, mb, answer = q.get()
        worst_t, worst_c, worst_m = max(worst_t, dt), max(worst_c, cpu), max(worst_m, mb)
        print(f"{name:<28} {n:>8} {dt:>7.2f} {cpu:>6.2f} {mb:>9.1f}  {answer[:90]}")
    print(f"worst: {worst_t:.2f} s wall, {worst_c:.2f} s CPU, {worst_m:.0f} MB extra peak RSS "
          "(goal: <= 2 s of work, <= 300 MB; wall time includes waiting for a busy CPU)")


if __name__ == "__main__":
    main()
