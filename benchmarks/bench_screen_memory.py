"""Peak memory of a long ``gsscreen screen`` run stays flat: RSS sampled over a run on ``--n`` (default 30,000)
photos, compared between the start and the end of the run.

The folder holds ``--n`` copies (each with its own bytes: a JPEG comment names the copy) of ``--distinct``
ds-kaggle photos reduced to ``--side`` px (kept outside the
repository, under ``--out``), so the run is long in photos but short in time on a shared 2-core machine. The model is
a small fabricated pack (the ``tiny`` backbone of the tests) unless ``--model`` is given: what could grow with the
number of photos is the pipeline's own state (queues, reorder buffer, tables, heatmap names), not the network.
RSS (main process + its worker processes, from /proc) is sampled every ``--every`` seconds together with the
number of rows written.

    .venv/bin/python benchmarks/bench_screen_memory.py --data ../shared/data --out /work/artifacts/speed/mem
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def build_folder(data: Path, out: Path, n: int, distinct: int, side: int) -> Path:
    from PIL import Image

    src = out / "distinct"
    src.mkdir(parents=True, exist_ok=True)
    files = sorted((data / "ds-kaggle" / "down").glob("*.jpg"))[: distinct // 2]
    files += sorted((data / "ds-kaggle" / "healthy").glob("*.jpg"))[: distinct - len(files)]
    small = []
    for f in files:
        t = src / f"{f.parent.name}_{f.stem}.jpg"
        if not t.exists():
            im = Image.open(f).convert("RGB")
            im.thumbnail((side, side))
            im.save(t, quality=90)
        small.append(t)
    folder = out / f"photos{n}"
    folder.mkdir(exist_ok=True)
    blobs = [p.read_bytes() for p in small]
    for k in range(n):
        dst = folder / f"{k:06d}.jpg"
        if dst.is_symlink():  # a folder from an older version of this benchmark
            dst.unlink()
        if not dst.exists():
            # Distinct bytes per copy (a JPEG comment naming the copy, right after SOI; the pixels are unchanged),
            # so every photo has its own SHA-256, as in a real archive.
            b = blobs[k % len(blobs)]
            com = f"gsscreen memory benchmark copy {k}".encode()
            dst.write_bytes(b[:2] + b"\xff\xfe" + (len(com) + 2).to_bytes(2, "big") + com + b[2:])
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=30_000)
    ap.add_argument("--distinct", type=int, default=60)
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--model", default=None)
    ap.add_argument("--every", type=float, default=1.0)
    ap.add_argument("--heatmap", action="store_true")
    ap.add_argument("--window", type=int, default=2000, help="photos at the start / end compared")
    args = ap.parse_args()

    load0 = os.getloadavg()
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    folder = build_folder(args.data, args.out, args.n, args.distinct, args.side)
    model = args.model
    if model is None:
        sys.path.insert(0, str(REPO / "tests"))
        from screen_support import fabricate_run

        from gsscreen.modelpack import ExportConfig, export_model_pack

        pack = args.out / "tiny.gss"
        if not pack.exists():
            export_model_pack(fabricate_run(args.out / "run", folds=3, unfreeze_from=5), pack,
                              ExportConfig(name="tiny-memory-bench"))
        model = str(pack)
    res_dir = args.out / "run_out"
    import shutil

    shutil.rmtree(res_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "gsscreen", "screen", str(folder), "--model", model, "-o", str(res_dir)]
    if not args.heatmap:
        cmd.append("--no-heatmap")
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO / "src")}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    jl = res_dir / "results.jsonl"
    samples = []
    t0 = time.monotonic()
    while proc.poll() is None:
        kids = _children(proc.pid)
        done = jl.read_bytes().count(b"\n") if jl.is_file() else 0
        samples.append({"t": round(time.monotonic() - t0, 1), "rows": done, "main_kb": _rss_kb(proc.pid),
                        "workers_kb": sum(_rss_kb(k) for k in kids)})
        time.sleep(args.every)
    (args.out / "samples.json").write_text(json.dumps(samples))
    if proc.returncode != 0:
        raise SystemExit(f"screen exited with {proc.returncode}")
    w = args.window
    first = [s for s in samples if w // 4 <= s["rows"] <= w and s["main_kb"]]
    last = [s for s in samples if s["rows"] >= args.n - w and s["main_kb"]]

    def peak(ss: list[dict], k: str) -> float:
        return max(s[k] for s in ss) / 1024 if ss else float("nan")

    load1 = os.getloadavg()
    print(f"{args.n} photos (distinct bytes each) in {samples[-1]['t']:.0f} s ({len(samples)} RSS samples); load "
          f"average at the end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    for k in ("main_kb", "workers_kb"):
        a, b = peak(first, k), peak(last, k)
        print(f"  {k[:-3]:<8} peak RSS over photos {w // 4}-{w}: {a:7.1f} MB; over the last {w}: {b:7.1f} MB "
              f"(ratio {b / a:.3f})")
    print(f"  whole run: main {peak(samples, 'main_kb'):.1f} MB, workers {peak(samples, 'workers_kb'):.1f} MB")


if __name__ == "__main__":
    main()
