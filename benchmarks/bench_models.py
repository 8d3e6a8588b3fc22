"""Inference speed of each backbone on this CPU, as photos/s and as a share of the machine's fp32 matmul peak.

    .venv/bin/python benchmarks/bench_models.py                      # vgg16 @224 + facenet @160, batch 1 and 32
    .venv/bin/python benchmarks/bench_models.py --backbones facenet --batches 32 --variants eager jit --json out.json

For every (backbone, batch, variant) the script times the whole screening network (body + head, random init: the
speed does not depend on the weights) and counts its multiply-accumulates with forward hooks on Conv2d / Linear
(VGG-16: 15.5 GMACs per 224×224 photo). The peak is a large ``torch.mm`` measured in the same run (before and after
the models) and, because other processes may share the cores, also right before and after every timed model call:

  % local peak  each call's MAC rate / the matmul rate measured next to it (median over calls): robust to load drift
  % best peak   the median MAC rate / the best matmul rate seen anywhere in the run

The load average is printed; on a loaded machine both shares are noisy (and the best peak is underestimated).

Variants:
  eager     model.eval(), torch.no_grad(), NCHW (the default way the rest of gsscreen runs models)
  cl        torch.inference_mode() + channels_last weights and input (oneDNN's preferred layout)
  jit       torch.jit.trace + torch.jit.freeze + optimize_for_inference (folds BN into convs, pre-packs oneDNN
            weights), channels_last
  freeze    torch.jit.trace + torch.jit.freeze only (BN folded, no oneDNN layout conversion), channels_last
  compile   torch.compile (inductor); slow to compile on 2 cores, so only when asked for
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

DEFAULT_SIZES = {"vgg16": 224, "facenet": 160, "tiny": 64}


def matmul_peak_gmacs(n: int = 2048, seconds: float = 2.0) -> float:
    """Best sustained fp32 ``torch.mm`` rate (GMAC/s) on an n×n×n product, over ~``seconds``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)  # warm-up
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        best = max(best, n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward of ``model`` on ``x`` (Conv2d + Linear; the rest is negligible)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return total


class MatmulProbe:
    """A fixed fp32 matmul used as the machine's peak, timed right next to each model call (see ``measure``)."""

    def __init__(self, n: int = 2048) -> None:
        self.a, self.b, self.c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
        self.macs = n**3
        torch.mm(self.a, self.b, out=self.c)

    def rate(self, seconds: float) -> float:
        """GMAC/s of back-to-back matmuls over about ``seconds`` (at least 2 calls; best call counted)."""
        best, n, t_end = 0.0, 0, time.perf_counter() + seconds
        while n < 2 or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            torch.mm(self.a, self.b, out=self.c)
            best = max(best, self.macs / (time.perf_counter() - t0) / 1e9)
            n += 1
        return best


def measure(run: Callable[[], object], probe: MatmulProbe, min_reps: int = 2, min_seconds: float = 3.0) -> dict:
    """Time ``run`` (already warmed up), alternating each call with a matmul probe of similar length.

    Other processes share the cores, so the available compute drifts within seconds; comparing each model call with
    the matmul rate measured just before and after it keeps the ratio honest. Returns ``{"times": [s per call],
    "probes": [GMAC/s]}`` with one more probe than calls.
    """
    times: list[float] = []
    probes: list[float] = []
    t_end = time.perf_counter() + min_seconds
    while len(times) < min_reps or time.perf_counter() < t_end:
        probes.append(probe.rate(min(1.0, max(0.2, times[-1] if times else 0.5))))
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        if len(times) >= 30:
            break
    probes.append(probe.rate(0.5))
    return {"times": times, "probes": probes}  # probes[i] / probes[i + 1] bracket times[i]


def prepare(variant: str, model: nn.Module, x: torch.Tensor) -> tuple[Callable[[], object], torch.Tensor]:
    """A zero-argument callable running ``variant`` of ``model`` on ``x``."""
    model = model.eval()
    if variant == "eager":
        def run() -> object:
            with torch.no_grad():
                return model(x)
        return run, x
    xc = x.contiguous(memory_format=torch.channels_last)
    mc = model.to(memory_format=torch.channels_last)
    if variant == "cl":
        def run_cl() -> object:
            with torch.inference_mode():
                return mc(xc)
        return run_cl, xc
    if variant in ("jit", "freeze"):
        with torch.no_grad():
            traced = torch.jit.trace(mc, xc, check_trace=False)
            frozen = torch.jit.freeze(traced)
            if variant == "jit":
                frozen = torch.jit.optimize_for_inference(frozen)

        def run_jit() -> object:
            with torch.no_grad():
                return frozen(xc)
        return run_jit, xc
    if variant == "compile":
        compiled = torch.compile(mc)

        def run_compile() -> object:
            with torch.inference_mode():
                return compiled(xc)
        return run_compile, xc
    raise ValueError(f"unknown variant {variant!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbones", nargs="+", default=["vgg16", "facenet"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--variants", nargs="+", default=["eager", "cl", "jit"],
                    choices=["eager", "cl", "jit", "freeze", "compile"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=3.0, help="minimum timed seconds per measurement")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    from gsscreen.models import create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    peak0 = matmul_peak_gmacs()
    probe = MatmulProbe()
    all_probes: list[float] = []
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}; load average {load_before[0]:.1f}")
    print(f"fp32 matmul peak (2048^3 torch.mm): {peak0:.1f} GMAC/s")
    rows = []
    for name in args.backbones:
        size = DEFAULT_SIZES.get(name, 224)
        base = create_model(name, pretrained=False).eval()
        macs = count_macs(base, torch.rand(1, 3, size, size))
        print(f"\n{name} @ {size}x{size}: {macs / 1e9:.2f} GMACs per photo")
        for batch in args.batches:
            x = torch.rand(batch, 3, size, size)
            for variant in args.variants:
                model = create_model(name, pretrained=False).eval()
                model.load_state_dict(base.state_dict())
                t_prep = time.perf_counter()
                try:
                    run, _ = prepare(variant, model, x)
                    run()  # first call: tracing / compilation / oneDNN primitive creation
                    prep = time.perf_counter() - t_prep
                    m = measure(run, probe, min_seconds=args.min_seconds)
                    all_probes.extend(m["probes"])
                except Exception as exc:  # a variant that does not work here is reported, not fatal
                    print(f"  batch {batch:>3} {variant:<8} failed: {type(exc).__name__}: {exc}"[:300])
                    continue
                sec = statistics.median(m["times"])
                rate = macs * batch / sec / 1e9
                # each call against the better of the two probes around it
                local = [max(a, b) for a, b in zip(m["probes"][:-1], m["probes"][1:], strict=True)]
                share = statistics.median(macs * batch / t / 1e9 / p for t, p in zip(m["times"], local, strict=True))
                row = {"backbone": name, "size": size, "batch": batch, "variant": variant,
                       "seconds_per_batch": sec, "photos_per_s": batch / sec, "gmacs_per_s": rate,
                       "gmacs_per_photo": macs / 1e9, "local_peak_gmacs": statistics.median(local),
                       "share_of_local_peak": share, "calls": len(m["times"]), "setup_s": prep}
                rows.append(row)
                print(f"  batch {batch:>3} {variant:<8} {batch / sec:8.2f} photos/s  {rate:6.1f} GMAC/s  "
                      f"{100 * share:5.1f}% of the matmul rate next to it ({statistics.median(local):.0f} GMAC/s)  "
                      f"[{sec * 1000:.0f} ms/batch, {len(m['times'])} calls; setup + first call {prep:.1f} s]",
                      flush=True)
                del model, run
    peak1 = matmul_peak_gmacs()
    # the best matmul rate seen anywhere in the run (start, end, and every probe): the machine's peak as far as
    # this run could see it; on a loaded machine it is an underestimate, which makes "% of best peak" optimistic
    peak = max(peak0, peak1, *(r["local_peak_gmacs"] for r in rows), *all_probes)
    load_after = os.getloadavg()
    print(f"\nfp32 matmul peak again: {peak1:.1f} GMAC/s; using {peak:.1f}. "
          f"Load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} "
          f"({os.cpu_count()} logical CPUs{'; the machine was loaded' if load_before[0] > args.threads else ''})")
    print(f"\n{'backbone':<9}{'batch':>6}  {'variant':<8}{'photos/s':>10}{'% local peak':>14}{'% best peak':>13}")
    for r in rows:
        r["share_of_best_peak"] = r["gmacs_per_s"] / peak
        print(f"{r['backbone']:<9}{r['batch']:>6}  {r['variant']:<8}{r['photos_per_s']:>10.2f}"
              f"{100 * r['share_of_local_peak']:>13.1f}%{100 * r['share_of_best_peak']:>12.1f}%")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"peak_gmacs": peak, "peaks": [peak0, peak1], "load": [load_before, load_after],
                       "threads": args.threads, "torch": torch.__version__, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
