"""Helpers for the screening tests: a run folder in the training engineer's layout, made in a second.

``fabricate_run`` writes what ``gsscreen study`` writes for the files export reads (``config.json``,
``metrics.json``, ``versions.json``, ``folds/fold_k/{checkpoint.safetensors, result.json, predictions.csv}``), with
``tiny`` models whose trained part is perturbed per fold (so fold models differ). ``test_modelpack`` also checks
the export against a real ``run_study`` output (marked slow).
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np


def fabricate_run(run_dir: Path, folds: int = 3, unfreeze_from: int = 4, seed: int = 0) -> Path:
    """A finished study of the ``tiny`` backbone: ``body[unfreeze_from:]`` and the head are 'trained' per fold.

    ``unfreeze_from=4`` puts the Grad-CAM layer (``body.4``) in the trained part; ``5`` keeps the whole body frozen
    (CAM layer in the shared part). Fold k has threshold ``0.45 + 0.02 k`` and validation AUC ``0.6 + 0.1 k``.
    """
    import pandas as pd
    import torch

    from gsscreen.models.registry import create_model
    from gsscreen.training import run_folder as rf

    run_dir = Path(run_dir)
    init_seed = 1234 + seed
    torch.manual_seed(init_seed)
    base = create_model("tiny", pretrained=False, dropout=0.5)
    n_body = len(base.body)
    prefixes = ("head.", *(f"body.{i}." for i in range(unfreeze_from, n_body)))
    rng = np.random.default_rng(seed)
    for k in range(folds):
        d = rf.fold_dir(run_dir, k)
        d.mkdir(parents=True, exist_ok=True)
        m = copy.deepcopy(base)
        g = torch.Generator().manual_seed(seed * 100 + k)
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name.startswith(prefixes):
                    p.add_(0.3 * torch.randn(p.shape, generator=g))
            for name, b in m.named_buffers():
                if name.startswith(prefixes) and name.endswith("running_mean"):
                    b.add_(0.1 * torch.randn(b.shape, generator=g))
        meta = {"backbone": "tiny", "pretrained": False, "dropout": 0.5, "init_seed": init_seed,
                "unfreeze_from": unfreeze_from, "fold": k, "epoch": 1, "image_size": None}
        rf.save_weights(d / rf.CHECKPOINT, rf.trainable_state(m, prefixes), meta)
        thr = 0.45 + 0.02 * k
        rf.atomic_write_json(d / rf.RESULT, {
            "fold": k, "epochs_run": 1, "best_epoch": 1, "best_val": {"auc": 0.6 + 0.1 * k, "loss": 0.6},
            "threshold": thr, "threshold_method": "youden", "test": {"auc": 0.7 + 0.01 * k}})
        y = np.array([0, 1] * 4)
        p = np.clip(0.5 + 0.15 * (y - 0.5) + rng.normal(0, 0.1, len(y)), 0, 1)
        pd.DataFrame({"set": ["val"] * 8 + ["test"] * 2, "row": np.arange(10), "y": [*y, 0, 1],
                      "p_gs": [*p, 0.3, 0.7], "call": 0}).to_csv(d / rf.FOLD_PREDICTIONS, index=False)
    cfg = {"backbone": "tiny", "pretrained": False, "folds": folds, "align": False, "threshold_method": "youden",
           "train": {"tta_flip": True}, "_run": {"config_hash": "x", "cohort_fingerprint": "y"}}
    (run_dir / "config.json").write_text(json.dumps(cfg))
    metrics = {"n_photos": 40, "n_gs": 20, "n_control": 20, "n_failures": 1, "folds": folds, "backbone": "tiny",
               "pretrained_loaded": False,
               "model": {"summary": {"auc": {"mean": 0.81, "sd": 0.04}, "accuracy": {"mean": 0.75, "sd": 0.05},
                                     "recall": {"mean": 0.7, "sd": 0.1}, "specificity": {"mean": 0.8, "sd": 0.1}},
                         "pooled_roc": {"auc": 0.8, "auc_ci_bootstrap": [0.7, 0.9]}}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "versions.json").write_text(json.dumps({"gsscreen": "0.1.0", "torch": torch.__version__}))
    return run_dir


def encode(image: np.ndarray, fmt: str = "JPEG", **kw: object) -> bytes:
    """An RGB array as image-file bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` pixels, with an empty image stream (a decompression-bomb probe:
    it must be refused from the header, before any decoding)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
