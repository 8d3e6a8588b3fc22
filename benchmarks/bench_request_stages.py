"""Where one screening request's CPU time goes, stage by stage (core-seconds, not wall time).

Every stage of ``/api/screen`` with a heatmap (and with ``regions=true``) runs here on one thread each (torch and
ONNX Runtime, as the service runs them beside its two preparing workers), timed with ``time.process_time`` (CPU
time of all this process's threads, the side thread that runs the mirror view included), so a busy machine does
not inflate the figures. The model stages run once at batch 1 (a lone request) and once at ``--batch`` (a full
service batch), per photo. The sum bounds the service: on ``C`` cores it can serve at most ``C / sum`` requests
per second, and by Little's law ``k`` concurrent clients then wait ``k * sum / C`` seconds on average.

    .venv/bin/python benchmarks/bench_request_stages.py --data ../shared/data --n 16
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CAM = "CAM (forward + one backward)"
REGIONS = "regions (5 occluded views)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=16, help="photos (half Down syndrome, half controls)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--model", default=None)
    ap.add_argument("--cores", type=int, default=2, help="cores the service has, for the bound")
    ap.add_argument("--clients", type=int, default=20)
    args = ap.parse_args()
    load0 = os.getloadavg()
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)

    import cv2
    import numpy as np
    import torch
    from PIL import Image

    from gsscreen.explain_regions import pack_regions
    from gsscreen.faces.align import check_photo_shape
    from gsscreen.faces.io import DEFAULT_MAX_PIXELS, load_image_scaled
    from gsscreen.modelpack import load_model_pack
    from gsscreen.screening import demo_model_path

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    m = load_model_pack(args.model or demo_model_path())
    why = m.use_onnx(True, threads=1)
    print(f"model {m.model_id}: {len(m.models)} folds, CAM {m.cam.label()}, body on "
          f"{'ONNX Runtime' if not why else 'torch (' + why + ')'}")
    files = sorted((args.data / "ds-kaggle" / "down").glob("*.jpg"))[: args.n // 2]
    files += sorted((args.data / "ds-kaggle" / "healthy").glob("*.jpg"))[: args.n - len(files)]
    cost: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[], Any], per: int = 1) -> Any:
        t = time.process_time()
        out = fn()
        cost[stage] = cost.get(stage, 0.0) + (time.process_time() - t) / per
        return out

    # A service's workers load the detectors once (MTCNN, dlib's HOG for the orientation check): not per request.
    m._align(m._reduced(*load_image_scaled(files[0].read_bytes(), m.decode_max_side, DEFAULT_MAX_PIXELS))[0])
    preps = []
    for f in files:
        data = f.read_bytes()
        img, factor = timed("decode", lambda d=data: load_image_scaled(d, m.decode_max_side, DEFAULT_MAX_PIXELS,
                                                                       check_shape=check_photo_shape))
        img, factor = m._reduced(img, factor)
        face = timed("detect + align (MTCNN)", lambda i=img: m._align(i))
        preps.append(timed("quality gate + face boxes", lambda i=img, fa=face, fc=factor, nm=f.name:
                           m._prepared(i, fa, fc, None, nm, time.perf_counter())))
    n = len(preps)
    x_all = torch.from_numpy(np.stack([p.model_input for p in preps])).permute(0, 3, 1, 2).float().div_(255.0)
    m.explain_tensor(x_all[:1])  # warm-up (allocator, ONNX session)
    pack_regions(m, preps[:1])
    # as screen_prepared runs them: the regions compare with the plain view's P(GS) of the CAM's forward pass
    plain1: list[np.ndarray] = []
    for i in range(n):
        m.explain_tensor(x_all[i:i + 1], on_plain=lambda pp: plain1.append(pp.mean(axis=1)))
    p1 = np.concatenate(plain1)
    batch1: dict[str, float] = {}
    for i in range(n):  # a lone request: batch 1
        for stage, fn in ((CAM, lambda i=i: m.explain_tensor(x_all[i:i + 1])),
                          (REGIONS, lambda i=i: pack_regions(m, preps[i:i + 1], lambda i=i: p1[i:i + 1]))):
            t = time.process_time()
            fn()
            batch1[stage] = batch1.get(stage, 0.0) + (time.process_time() - t) / n
    results = []
    for i in range(0, n, args.batch):  # a full batch
        chunk = preps[i:i + args.batch]
        x = x_all[i:i + len(chunk)]
        got: list[np.ndarray] = []
        p, maps, flat = timed(CAM, lambda x=x, got=got: m.explain_tensor(
            x, on_plain=lambda pp: got.append(pp.mean(axis=1))), n)
        timed(REGIONS, lambda c=chunk, got=got: pack_regions(m, c, lambda: got[0]), n)
        for k, prep in enumerate(chunk):
            results.append(timed("overlay + result", lambda k=k, prep=prep, p=p, maps=maps, flat=flat:
                                 m._finish(prep, p[k], maps[:, k], flat[:, k], 0.0)))

    def png_b64(rgb: Any) -> str:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
        return base64.b64encode(buf.getvalue()).decode("ascii")

    for r in results:
        timed("heatmap PNG + JSON", lambda r=r: json.dumps({**r.to_dict(), "png": png_b64(r.overlay)}, default=str))
    per = {k: v / n for k, v in cost.items() if k not in batch1}
    model_b = {k: cost[k] for k in batch1}
    print(f"\n{n} ds-kaggle photos, core-milliseconds per request (one thread each)")
    print(f"  {'stage':<36} {'batch 1':>9} {'batch ' + str(args.batch):>9}")
    for k, v in per.items():
        print(f"  {k:<36} {1000 * v:9.1f} {1000 * v:9.1f}")
    for k in batch1:
        print(f"  {k:<36} {1000 * batch1[k]:9.1f} {1000 * model_b[k]:9.1f}")
    tot1 = sum(per.values()) + sum(batch1.values())
    totb = sum(per.values()) + sum(model_b.values())
    print(f"  {'total with regions (regions=true)':<36} {1000 * tot1:9.1f} {1000 * totb:9.1f}")
    tot1_plain, totb_plain = tot1 - batch1[REGIONS], totb - model_b[REGIONS]
    print(f"  {'total, heatmap only (the default)':<36} {1000 * tot1_plain:9.1f} {1000 * totb_plain:9.1f}")
    for name, tot in (("batch 1", tot1), (f"batch {args.batch}", totb), ("batch 1, no regions", tot1_plain),
                      (f"batch {args.batch}, no regions", totb_plain)):
        rps = args.cores / tot
        print(f"{name}: at most {rps:.2f} requests/s on {args.cores} cores; {args.clients} clients wait "
              f"~{args.clients / rps:.1f} s on average (p95 <= 3 s needs <= {args.cores * 3 / args.clients:.2f} "
              "core-s per request at the very best)")
    load1 = os.getloadavg()
    print(f"load average at the end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


if __name__ == "__main__":
    main()
