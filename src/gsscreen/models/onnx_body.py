"""The frozen body of a model pack on ONNX Runtime: the part every fold model shares, run without autograd.

Measured side by side on the shared 2-core machine (``benchmarks/bench_onnx_body.py``, FaceNet body at 160 px, one
thread each): ONNX Runtime 7.8 photos/s vs torch 4.5 at batch 32 (1.73×), 7.6 vs 3.3 at batch 1; outputs within
1e-6. So folder screening runs the shared body there when it can (``ScreenConfig.runtime = "auto"``); Grad-CAM still
needs torch's autograd and uses torch.

The body is exported once per pack into the cache (``cache_dir("onnx")``), keyed by the pack's weights hash, the
shared depth and the input size. Exporting needs the ``onnx`` package (not a gsscreen dependency; running a cached
export needs only ``onnxruntime``). Before use, the ONNX body is checked against torch on a fixed input: outputs
must agree within :data:`TOLERANCE`, otherwise torch is used and a warning says why.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from gsscreen.screening import ScreeningModel

log = logging.getLogger(__name__)

#: largest |difference| allowed between the ONNX body's features and torch's on the check input
TOLERANCE = 1e-4
OPSET = 17


#: rows per ONNX Runtime call: measured with the FaceNet body on one thread (core-ms per photo): 22 at 8–16 rows,
#: 24 at 32, 31 at 96 (a large batch's activations fall out of the cache), 26–30 at 1
CHUNK = 16


class OnnxBody:
    """Callable ``(B, 3, S, S)`` float32 tensor → the shared body's output tensor, on ONNX Runtime (in runs of at
    most :data:`CHUNK` rows, its fastest)."""

    def __init__(self, session: Any, path: Path) -> None:
        self.session, self.path = session, path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        a = np.ascontiguousarray(x.detach().float().cpu().numpy())
        outs = [self.session.run(None, {"x": a[i:i + CHUNK]})[0] for i in range(0, max(len(a), 1), CHUNK)]
        return torch.from_numpy(outs[0] if len(outs) == 1 else np.concatenate(outs))


def cache_path(model: ScreeningModel, upto: int | None = None) -> Path:
    """Where the export of the pack's first ``upto`` body stages (default: the shared body) lives in the cache."""
    from gsscreen.paths import cache_dir

    upto = model.shared_upto if upto is None else int(upto)
    blob = json.dumps({"weights": model.info.get("weights_sha256"), "upto": upto,
                       "size": model.input_size, "backbone": model.info.get("backbone"), "opset": OPSET},
                      sort_keys=True)
    return cache_dir("onnx") / f"body-{hashlib.sha256(blob.encode()).hexdigest()[:20]}.onnx"


def export_body(model: ScreeningModel, path: Path, upto: int | None = None) -> Path:
    """Export ``model.base.body[:upto]`` (default: the shared body, ``shared_upto`` stages) to ``path``
    (atomically; needs the ``onnx`` package)."""
    import torch

    upto = model.shared_upto if upto is None else int(upto)
    body = torch.nn.Sequential(*list(model.base.body)[:upto]).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    s = model.input_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(body, (torch.rand(2, 3, s, s),), str(tmp), dynamo=False, input_names=["x"],
                          output_names=["f"], dynamic_axes={"x": {0: "batch"}, "f": {0: "batch"}},
                          opset_version=OPSET)
    os.replace(tmp, path)
    return path


def load_onnx_body(model: ScreeningModel, threads: int = 1, upto: int | None = None) -> tuple[OnnxBody | None, str]:
    """``(the ONNX body, "")`` when it can be used, else ``(None, why not)``.

    ``upto``: the number of leading body stages it runs (default: the shared frozen body; at most that many, as
    only frozen stages have the same weights in every fold). Exports into the cache on first use (when ``onnx`` is
    installed), then checks the outputs against torch."""
    import torch

    upto = model.shared_upto if upto is None else int(upto)
    if model.shared_upto < 1:
        return None, "the model shares no frozen body"
    if not 1 <= upto <= model.shared_upto:
        raise ValueError(f"upto must be 1..{model.shared_upto} (the shared frozen stages), got {upto}")
    if importlib.util.find_spec("onnxruntime") is None:
        return None, "onnxruntime is not installed"
    path = cache_path(model, upto)
    if not path.is_file():
        if importlib.util.find_spec("onnx") is None:
            return None, "exporting the body needs the `onnx` package (pip install onnx)"
        try:
            export_body(model, path, upto)
        except Exception as exc:  # an exporter gap must not stop screening: torch runs the body
            return None, f"export failed: {type(exc).__name__}: {exc}"
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    try:
        body = OnnxBody(ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]), path)
    except Exception as exc:  # a damaged cache file: export again next time
        path.unlink(missing_ok=True)
        return None, f"could not load {path.name}: {exc}"
    s = model.input_size
    x = torch.from_numpy(np.random.default_rng(0).random((2, 3, s, s), dtype=np.float32))
    with torch.inference_mode():
        ref = model._run(model.base, x, 0, upto)
    diff = float((body(x) - ref).abs().max())
    if not diff <= TOLERANCE:
        return None, f"ONNX body differs from torch by {diff:.2e} (> {TOLERANCE:g})"
    return body, ""
