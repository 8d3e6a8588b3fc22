"""Which heatmap to show, measured: on-face count, deletion/insertion areas and the randomisation check.

With the shipped demo model (``demo_model.gss``) on a fixed subset of its *held-out* ds-kaggle GS photos (the
split of ``scripts/train_demo_model.py``, seed 0; the first ``--n`` by file name), each candidate map is
computed for the 5-fold ensemble (each fold's map scaled to 0–1, then averaged; and, as ``gsscreen screen`` shows
it, the one map of the ensemble's summed logit) and scored by:

- on the face: the share of the map's mass inside :func:`gsscreen.explain.face_region_mask` (landmarks widened to
  forehead and chin); a map is "mainly on the face" when that share exceeds 0.5 (our statement of the paper's rule);
- deletion / insertion (Petsiuk et al. 2018): the ensemble's P(GS) (plain view) as the most salient pixels are
  greyed out / revealed on a blurred copy of the photo (Petsiuk et al.'s canvas: this model calls a flat grey
  image GS, so a grey canvas tells nothing), area under the curve over the fraction 0–1 (deletion: lower is
  better; insertion: higher is better);
- randomisation (Adebayo et al. 2018): Spearman rank correlation between fold 0's maps and the maps of fold 0
  with its trained head replaced by random weights (the body is the frozen pretrained FaceNet): a faithful map
  changes (low correlation).

Random maps (8×8 noise, upsampled) are the floor every real map must beat.

    .venv/bin/python benchmarks/bench_faithfulness.py [--data ../shared/data] [--n 48] [--steps 12] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

CANDIDATES = {
    "last stage: Grad-CAM block8 (3x3)": ("gradcam", ("body.7",)),
    "before: Grad-CAM block17 (8x8)": ("gradcam", ("body.4",)),
    "HiResCAM block17 (8x8)": ("hirescam", ("body.4",)),
    "HiResCAM block35+block17 (17x17+8x8)": ("hirescam", ("body.2", "body.4")),
    "Layer-CAM block35+block17 (17x17+8x8)": ("layercam", ("body.2", "body.4")),
    # what screening shows: one map of the ensemble's summed logit, from one backward pass (the rows above are
    # the mean of the folds' own maps, one backward pass each)
    "HiResCAM block35+block17, ensemble logit": ("hirescam", ("body.2", "body.4"), "ensemble"),
}


def held_out_gs(data: Path, out: Path, n: int) -> list[str]:
    sys.path.insert(0, str(REPO / "scripts"))
    from train_demo_model import build_split

    # the demo model's split: seed 0, likely-same-child threshold 0.80 (scripts/train_demo_model.py defaults)
    _, held, _ = build_split(data, out, seed=0, threshold=0.80)
    gs = sorted(held[(held["set"] == "ds-kaggle") & (held["label"] == "GS")]["image"].astype(str))
    return gs[:n] if n else gs


def aligned(sm, photos: list[str]) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    from gsscreen.faces.align import NoFaceError, align_face
    from gsscreen.faces.io import load_image_scaled

    crops, lms, names = [], [], []
    for p in photos:
        try:
            img, _ = load_image_scaled(p, sm.decode_max_side)
            face = align_face(img, sm.align_config)
        except (NoFaceError, OSError, ValueError) as exc:
            print(f"skipped {Path(p).name}: {exc}")
            continue
        crops.append(face.image)
        lms.append(np.asarray(face.landmarks, dtype=np.float64))
        names.append(p)
    return crops, lms, names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--pack", type=Path, default=REPO / "src" / "gsscreen" / "assets" / "demo_model.gss")
    ap.add_argument("--n", type=int, default=24, help="held-out GS photos (first N by name; 0 = all 240)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-faithfulness")
    args = ap.parse_args(argv)
    if not (args.data / "ds-kaggle").is_dir():
        print(f"skipped: development data not found at {args.data}")
        return 0
    import torch

    from gsscreen.explain import face_region_mask, on_face_share
    from gsscreen.explain_cam import CamSpec, ensemble_cams, model_cams
    from gsscreen.explain_faith import curve_auc, deletion_insertion, map_rank_correlation, random_maps, randomised_copy
    from gsscreen.explain_regions import REGIONS, region_attributions, region_summary, summary_sentence
    from gsscreen.modelpack import load_model_pack

    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    sm = load_model_pack(args.pack)
    photos = held_out_gs(args.data, args.out, args.n)
    crops, lms, names = aligned(sm, photos)
    s = sm.input_size
    x = torch.cat([sm.to_tensor(c) for c in crops])
    imgs = (x.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)  # the model's own input, (N, S, S, 3)
    scale = s / crops[0].shape[0]
    masks = [face_region_mask(lm * scale, (s, s)) for lm in lms]

    def predict(batch: np.ndarray) -> np.ndarray:
        xb = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
        return sm.predict_tensor_views(xb).mean(axis=1)

    import cv2

    canvas = np.stack([cv2.GaussianBlur(im, (0, 0), sigmaX=s / 16) for im in imgs])
    grey = np.full((1, s, s, 3), 128, np.uint8)
    print(f"{len(imgs)} photos aligned ({time.perf_counter() - t0:.0f} s); mean P(GS) {predict(imgs).mean():.3f}, "
          f"blurred {predict(canvas).mean():.3f}, all-grey image {predict(grey)[0]:.3f}", flush=True)
    maps: dict[str, np.ndarray] = {}
    for label, (method, layers, *combine) in CANDIDATES.items():
        spec = CamSpec(method, layers)
        per = []
        for i in range(0, len(x), 16):
            _, m, _ = ensemble_cams(sm.models, x[i:i + 16], spec, shared_upto=sm.shared_upto,
                                    combine=combine[0] if combine else "folds")
            per.append(m)
        mean = np.concatenate(per, axis=1).mean(axis=0)
        maps[label] = mean / np.maximum(mean.reshape(len(mean), -1).max(axis=1), 1e-12)[:, None, None]
    maps["random maps (8x8 noise)"] = random_maps(len(x), (s, s), cells=8, seed=0)

    rows = []
    for label, m in maps.items():
        shares = np.array([on_face_share(mi, mk) if mi.any() else np.nan for mi, mk in zip(m, masks, strict=True)])
        dele, ins = deletion_insertion(predict, imgs, m, steps=args.steps, canvas=canvas)
        rows.append({"map": label, "n": len(m), "on_face": int(np.nansum(shares > 0.5)),
                     "mean_on_face_share": float(np.nanmean(shares)),
                     "deletion_auc": float(curve_auc(dele).mean()), "deletion_sd": float(curve_auc(dele).std()),
                     "insertion_auc": float(curve_auc(ins).mean()), "insertion_sd": float(curve_auc(ins).std())})
        print(f"{label:45s} on face {rows[-1]['on_face']:3d}/{len(m)}  deletion AUC {rows[-1]['deletion_auc']:.3f}"
              f"  insertion AUC {rows[-1]['insertion_auc']:.3f}", flush=True)

    # Model randomisation: fold 0 with its trained head redrawn.
    sanity = {}
    m0 = sm.models[0]
    rnd = randomised_copy(m0, ("head.",), seed=1)
    for label, (method, layers, *combine) in CANDIDATES.items():
        if label.startswith("last stage") or combine:  # one model: the ensemble map is the fold's own
            continue
        spec = CamSpec(method, layers)
        _, a, _ = model_cams(m0, x, spec, batch_size=16)
        _, b, _ = model_cams(rnd, x, spec, batch_size=16)
        sanity[label] = float(np.nanmean(map_rank_correlation(a, b)))
        print(f"randomisation check {label:45s} Spearman(trained, random head) {sanity[label]:.3f}", flush=True)

    regions = region_attributions(predict, crops_at(imgs), [lm * scale for lm in lms], names=names)
    summ = region_summary(regions)
    print("region attributions, held-out GS photos (mean drop in P(GS) / mean share of the evidence):")
    for r in REGIONS:
        print(f"  {r:11s} {summ['delta'][r]:+.3f}  {summ['share'][r]:.0%}")
    print(summary_sentence(summ, "held-out GS photos"))
    regions.to_csv(args.out / "regions.csv", index=False)
    (args.out / "faithfulness.json").write_text(json.dumps(
        {"n": len(x), "steps": args.steps, "table": rows, "randomisation_spearman": sanity, "regions": summ,
         "wall_s": time.perf_counter() - t0}, indent=2), encoding="utf-8")
    print(f"wall time {(time.perf_counter() - t0) / 60:.1f} min; written {args.out / 'faithfulness.json'}")
    return 0


def crops_at(imgs: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(i) for i in imgs]


if __name__ == "__main__":
    sys.exit(main())
