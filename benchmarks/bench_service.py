"""The screening web service under concurrent load: throughput, p50 and p95 latency, errors.

Starts ``gsscreen serve`` on a loopback port (this checkout; and, with ``--old-src``, the code before request
batching) and runs 20 (then 50) concurrent clients, each posting ``--requests`` ds-kaggle photos (heatmaps on) to
``/api/screen`` one after the other (bounded loops); the new server also with ``regions=true`` (the facial-region
attributions, which the old code did not compute). Every server is measured in the same run, so the ratio means
something on a shared machine.

Goals: 20 clients with heatmaps ≥ 2× the old throughput and p95 ≤ 3 s; 50 clients without errors.

    .venv/bin/python benchmarks/bench_service.py --data ../shared/data --old-src /work/artifacts/speed/old/src
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_SRC = Path(__file__).resolve().parents[1] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(src: Path, tmp: Path, model: str | None, extra: list[str] | None = None,
                 ) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    cmd = [sys.executable, "-m", "gsscreen", "serve", "--port", str(port), "--audit-db", str(tmp / f"a{port}.db")]
    if model:
        cmd += ["--model", model]
    cmd += extra or []
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(src)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server from {src} exited with {proc.returncode}")
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


async def load(base: str, photos: list[bytes], clients: int, requests: int,
               params: dict[str, str] | None = None) -> dict[str, float]:
    import httpx

    lat: list[float] = []
    errors: list[str] = []

    async def client(k: int, c: httpx.AsyncClient) -> None:
        for r in range(requests):
            data = photos[(k * requests + r) % len(photos)]
            t = time.perf_counter()
            try:
                resp = await c.post("/api/screen", files={"photo": ("p.jpg", data, "image/jpeg")},
                                    params={"heatmap": "true", **(params or {})})
                if resp.status_code not in (200, 422):  # 422: no face in a web photo is an answer, not an error
                    errors.append(f"HTTP {resp.status_code}")
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
            lat.append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=clients + 5)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*[client(k, c) for k in range(clients)])
        wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=20)
    return {"n": len(lat), "rps": len(lat) / wall, "p50": statistics.median(lat), "p95": q[18],
            "errors": len(errors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO_SRC.parents[1] / "shared" / "data")
    ap.add_argument("--model", default=None)
    ap.add_argument("--old-src", type=Path, default=None)
    ap.add_argument("--old-model", default=None, help="model pack for the old server (default: its own demo model)")
    ap.add_argument("--sweep-max-batch", default="", help="also run the new server at these --max-batch values "
                    "(comma-separated), 20 clients each, to choose the default")
    ap.add_argument("--requests", type=int, default=4, help="requests per client at 20 clients")
    ap.add_argument("--photos", type=int, default=100)
    args = ap.parse_args()

    import httpx

    load0 = os.getloadavg()
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    files = sorted((args.data / "ds-kaggle" / "down").glob("*.jpg"))[: args.photos // 2]
    files += sorted((args.data / "ds-kaggle" / "healthy").glob("*.jpg"))[: args.photos // 2]
    photos = [f.read_bytes() for f in files]
    tmp = Path(tempfile.mkdtemp(prefix="bench_service_"))
    servers = [("new", REPO_SRC, [])] + ([("old", args.old_src, [])] if args.old_src else [])
    servers += [(f"new max_batch {v}", REPO_SRC, ["--max-batch", v]) for v in args.sweep_max_batch.split(",") if v]
    rows = []
    for name, src, extra in servers:
        proc, base = start_server(src, tmp, args.old_model if name == "old" else args.model, extra)
        try:
            for d in photos[:2]:  # warm: detector, allocator, worker processes
                httpx.post(base + "/api/screen", files={"photo": ("p.jpg", d, "image/jpeg")}, timeout=600)
            # the new service also with the facial-region bars asked for (regions=true: 5 more passes a photo)
            plans = [(20, args.requests, {})] + ([(50, 2, {}), (20, args.requests, {"regions": "true"})]
                                                 if name == "new" else [])
            for clients, reqs, params in plans:
                r = asyncio.run(load(base, photos, clients, reqs, params))
                label = name + (" +regions" if params else "")
                rows.append((label, clients, r))
                print(f"{label:<18} {clients:>3} clients × {reqs}: {r['rps']:.2f} req/s, p50 {r['p50']:.2f} s, "
                      f"p95 {r['p95']:.2f} s, errors {r['errors']}/{r['n']} (load {os.getloadavg()[0]:.2f})",
                      flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    by = {(n, c): r for n, c, r in rows}
    if ("old", 20) in by:
        for label in ("new", "new +regions"):
            print(f"throughput at 20 clients, {label} / old: {by[(label, 20)]['rps'] / by[('old', 20)]['rps']:.2f}x "
                  f"(goal >= 2x), p95 {by[(label, 20)]['p95']:.2f} s (goal <= 3 s)")
    load1 = os.getloadavg()
    print(f"load average at the end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


if __name__ == "__main__":
    main()
