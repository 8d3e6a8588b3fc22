"""ONNX Runtime vs torch for the frozen FaceNet body, side by side in one process (same inputs, same threads).

The frozen body (``base.body[:shared_upto]`` of the model pack: everything the fold models share) is exported with
``torch.onnx.export`` (needs the ``onnx`` package, which is not a gsscreen dependency) and run with onnxruntime's CPU
provider; torch runs it under ``inference_mode``. Rounds alternate (torch, ORT, torch, ORT, …) so load on the
shared machine hits both alike; the figure is the ratio of the medians. Also checks that the outputs agree.

    .venv/bin/python benchmarks/bench_onnx_body.py [--model M] [--batch 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 1])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op threads (both runtimes)")
    args = ap.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from gsscreen.modelpack import load_model_pack
    from gsscreen.screening import demo_model_path

    m = load_model_pack(args.model or demo_model_path())
    body = torch.nn.Sequential(*list(m.base.body)[: m.shared_upto]).eval()
    s = m.input_size
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(body, (torch.rand(2, 3, s, s),), buf, dynamo=False, input_names=["x"], output_names=["f"],
                          dynamic_axes={"x": {0: "b"}, "f": {0: "b"}}, opset_version=17)
    rng = np.random.default_rng(0)
    print(f"model {m.model_id} ({m.info['backbone']}), frozen body = body[:{m.shared_upto}], input {s}px, "
          f"torch {torch.__version__} / onnxruntime {ort.__version__}")
    for th, b in [(th, b) for th in args.threads for b in args.batch]:
        torch.set_num_threads(th)
        so = ort.SessionOptions()
        so.intra_op_num_threads = th
        sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
        x = rng.random((b, 3, s, s), dtype=np.float32)
        with torch.inference_mode():
            ref = body(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"x": x})[0]
        tt, to = [], []
        for _ in range(args.rounds):
            t = time.perf_counter()
            with torch.inference_mode():
                body(torch.from_numpy(x))
            tt.append(time.perf_counter() - t)
            t = time.perf_counter()
            sess.run(None, {"x": x})
            to.append(time.perf_counter() - t)
        a, o = statistics.median(tt), statistics.median(to)
        print(f"{th} thread(s), batch {b:>3}: torch {b / a:6.1f} photos/s, onnxruntime {b / o:6.1f} photos/s, "
              f"ORT/torch speed {a / o:.2f}x; max |diff| {np.abs(ref - got).max():.2e}")


if __name__ == "__main__":
    main()
