"""Likely-same-child clusters: photos whose FaceNet embeddings are closer than two different children's usually are.

Web-collected cohorts rarely say which photos show the same child, and a child seen in training and again in test
inflates every metric (the model recognises the child, not the syndrome). This module finds such photos without
subject ids:

1. :func:`embed_crops` runs the offline FaceNet (VGGFace2, see :mod:`gsscreen.models.backbones.facenet`) on the
   aligned crops: ``(N, 3, S, S)`` uint8 → ``(N, 512)`` L2-normalised float32, cached per crop (sha1 of its bytes)
   under ``cache_dir("identity")`` so later studies on the same crops skip the network.
2. :func:`identity_groups` links every pair with cosine similarity ``>= threshold`` and returns the connected
   components (single linkage, one union-find): ``labels`` of shape ``(N,)``.
3. :func:`likely_same_child` does both for a cohort table (aligning through the shared face cache) and adds the
   column ``identity_cluster``; :func:`gsscreen.groups.split_groups` then keeps each cluster in one subset.
4. :func:`leakage_audit` counts test photos with a close neighbour in their own fold's training subsets.

The default threshold (:data:`DEFAULT_IDENTITY_THRESHOLD`) is calibrated in ``benchmarks/bench_identity.py`` on the
development photos: pairs known to differ (a Down-syndrome photo vs a healthy photo) give the false-match rate,
re-encoded / mirrored / re-cropped / recoloured copies of one photo give the true-match rate. Single linkage can
chain look-alikes into one larger group; that only costs some balance between subsets, never validity, while a
missed pair of one child costs validity: the threshold errs towards linking.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from gsscreen.groups import UnionFind

log = logging.getLogger(__name__)

EMBED_SIZE = 160  # FaceNet's input side
# Calibrated in benchmarks/bench_identity.py (table in docs/design.md): at 0.80 the false-match rate between Down-
# syndrome and healthy photos (different children) is 1.1e-5 per pair, the lowest threshold whose expected false
# links stay under 1 % of the links made within a class on ds-kaggle.
DEFAULT_IDENTITY_THRESHOLD = 0.80
AUDIT_THRESHOLDS = (0.8, 0.9)
_CACHE_VERSION = "facenet-vggface2-v1"


# ------------------------------------------------------------------------------------------------ embeddings


def _cache_folder(size: int) -> Path:
    from gsscreen.paths import cache_dir

    return cache_dir("identity", f"{_CACHE_VERSION}-s{size}")


def embed_crops(crops: torch.Tensor, keys: Sequence[str] | None = None, batch_size: int = 32,
                cache: bool = True) -> np.ndarray:
    """FaceNet embeddings of aligned crops.

    Args:
        crops: ``(N, 3, S, S)`` uint8 RGB (any S; resized to 160 antialiased when S differs).
        keys: one content key per crop (e.g. from :func:`gsscreen.training.data.load_crops`); with ``cache`` the
            embedding of each key is stored under ``cache_dir("identity")`` (per source size S) and reused.
        batch_size: crops per forward pass.

    Returns:
        ``(N, 512)`` float32, each row L2-normalised (so a dot product is the cosine similarity).

    Raises:
        RuntimeError: the pretrained FaceNet weights are not installed (nothing to compare faces with).
    """
    from gsscreen.models import facenet_embedding

    n = int(crops.shape[0])
    out = np.zeros((n, 512), dtype=np.float32)
    todo = list(range(n))
    folder = None
    if cache and keys is not None:
        if len(keys) != n:
            raise ValueError(f"{len(keys)} keys for {n} crops")
        folder = _cache_folder(int(crops.shape[-1]))
        todo = []
        for i, k in enumerate(keys):
            f = folder / f"{k}.npy"
            try:
                out[i] = np.load(f)
            except (OSError, ValueError):
                todo.append(i)
    for s in range(0, len(todo), 256):
        idx = todo[s : s + 256]
        x = crops[idx].float().div(255.0)
        if x.shape[-1] != EMBED_SIZE:
            x = torch.nn.functional.interpolate(x, size=(EMBED_SIZE, EMBED_SIZE), mode="bilinear",
                                                antialias=True, align_corners=False)
        emb = facenet_embedding(x, batch_size=batch_size).numpy().astype(np.float32)
        out[idx] = emb
        if folder is not None and keys is not None:
            for i, e in zip(idx, emb, strict=True):
                tmp = folder / f".{keys[i]}.tmp.npy"
                np.save(tmp, e)
                tmp.replace(folder / f"{keys[i]}.npy")
    return out


def embed_crop_files(paths: Sequence[str | Path], cache: bool = True) -> tuple[np.ndarray, list[int]]:
    """Embeddings of crop files (read at 160 px): ``((N_ok, 512), indices of the readable files)``."""
    from gsscreen.training.data import load_crops

    keys: list[str] = []
    crops, ok, failures = load_crops(list(paths), EMBED_SIZE, keys=keys)
    for p, problem in failures:
        log.warning("identity: %s: %s", p, problem)
    return embed_crops(crops, keys, cache=cache), ok


# ------------------------------------------------------------------------------------------------ clustering


def similar_pairs(embeddings: np.ndarray, threshold: float, block: int = 1024) -> np.ndarray:
    """Pairs ``(i, j, cosine)`` with ``i < j`` and cosine ``>= threshold``: float array ``(M, 3)``.

    ``embeddings`` ``(N, D)`` must be L2-normalised rows. Computed in blocks of rows (memory ``block × N``).
    """
    e = np.asarray(embeddings, dtype=np.float32)
    n = len(e)
    out = []
    for s in range(0, n, block):
        sim = e[s : s + block] @ e.T
        ii, jj = np.nonzero(sim >= threshold)
        ii = ii + s
        keep = jj > ii
        out.append(np.column_stack([ii[keep], jj[keep], sim[ii[keep] - s, jj[keep]]]))
    return np.concatenate(out) if out else np.zeros((0, 3))


def identity_groups(embeddings: np.ndarray, threshold: float = DEFAULT_IDENTITY_THRESHOLD) -> np.ndarray:
    """Cluster labels ``(N,)`` int: photos linked by a chain of pairs with cosine ``>= threshold`` share a label.

    Labels are numbered 0, 1, ... in order of each cluster's first photo (so they are stable for a given input).
    ``embeddings``: ``(N, D)``, L2-normalised rows.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold}: a cosine similarity, -1 to 1")
    e = np.asarray(embeddings, dtype=np.float32)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {e.shape}")
    uf = UnionFind()
    for i, j, _ in similar_pairs(e, threshold):
        uf.union(int(i), int(j))
    roots = [uf.find(i) for i in range(len(e))]
    first: dict[int, int] = {}
    return np.array([first.setdefault(r, len(first)) for r in roots], dtype=np.int64)


def cluster_table(labels: np.ndarray, images: Sequence[str], embeddings: np.ndarray) -> pd.DataFrame:
    """Clusters of two or more photos: columns ``cluster, size, min_cosine, images`` (``;``-joined), largest first.

    ``min_cosine`` is the lowest similarity inside the cluster (low values show a chain of look-alikes).
    """
    rows = []
    labels = np.asarray(labels)
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        if len(idx) < 2:
            continue
        e = embeddings[idx]
        sim = e @ e.T
        rows.append({"cluster": int(lab), "size": len(idx), "min_cosine": float(sim.min()),
                     "images": ";".join(str(images[i]) for i in idx)})
    df = pd.DataFrame(rows, columns=["cluster", "size", "min_cosine", "images"])
    return df.sort_values(["size", "cluster"], ascending=[False, True], kind="stable").reset_index(drop=True)


def likely_same_child(
    table: pd.DataFrame,
    threshold: float = DEFAULT_IDENTITY_THRESHOLD,
    align_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[pd.DataFrame, np.ndarray, list[str | None]]:
    """Add ``identity_cluster`` to a cohort table (a copy): photos of one likely child share a value.

    Each photo is aligned (MTCNN, through the shared face cache; crops written to ``align_dir``, a temporary folder
    when None) and embedded; a photo without a usable face gets its own cluster (it can only be grouped by subject
    id, bytes or perceptual hash). Returns ``(table, embeddings (N, 512) with zero rows for photos without a face,
    crop paths (None without a face; they exist only while ``align_dir`` does))``.

    Use before :func:`gsscreen.training.splits.assign_subsets`, which keeps each cluster in one subset.
    """
    import tempfile

    from gsscreen.faces.align import AlignConfig
    from gsscreen.faces.pipeline import align_cohort

    images = table["image"].astype(str).tolist()
    with tempfile.TemporaryDirectory(prefix="gsscreen-identity-") as tmp:
        res = align_cohort(images, Path(align_dir) if align_dir else Path(tmp), AlignConfig(), progress=progress)
        crop_of = {str(r["image"]): str(r["crop"]) for r in res.aligned.to_dict("records")
                   if isinstance(r["crop"], str)}
        have = [i for i, img in enumerate(images) if img in crop_of]
        emb_ok, ok = embed_crop_files([crop_of[images[i]] for i in have])
    emb = np.zeros((len(images), 512), dtype=np.float32)
    rows = [have[j] for j in ok]
    emb[rows] = emb_ok
    labels = np.full(len(images), -1, dtype=np.int64)
    labels[rows] = identity_groups(emb_ok, threshold)
    nxt = int(labels.max()) + 1 if len(rows) else 0
    for i in np.flatnonzero(labels < 0):  # no face: its own cluster
        labels[i] = nxt
        nxt += 1
    out = table.copy()
    out["identity_cluster"] = labels
    crops: list[str | None] = [None] * len(images)
    for i in rows:
        crops[i] = crop_of[images[i]]
    return out, emb, crops


def contact_sheet(clusters: pd.DataFrame, crop_of: dict[str, str], out: str | Path, max_clusters: int = 40,
                  max_per_row: int = 8, tile: int = 96) -> Path:
    """A PNG with one row per cluster (largest first): its crops with file names, the row's lowest cosine on the left.

    ``clusters``: :func:`cluster_table` output (``images`` ``;``-joined); ``crop_of``: image path -> crop path.
    """
    from PIL import Image, ImageDraw

    rows = clusters.head(max_clusters)
    label_w = 110
    sheet = Image.new("RGB", (label_w + max_per_row * tile, max(1, len(rows)) * (tile + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, rec in enumerate(rows.itertuples()):
        y = r * (tile + 14)
        draw.text((4, y + 4), f"cluster {rec.cluster}", fill="black")
        draw.text((4, y + 20), f"{rec.size} photos", fill="black")
        draw.text((4, y + 36), f"min cos {rec.min_cosine:.2f}", fill="black")
        for c, img in enumerate(str(rec.images).split(";")[:max_per_row]):
            x = label_w + c * tile
            crop = crop_of.get(img)
            if crop:
                try:
                    with Image.open(crop) as im:
                        sheet.paste(im.convert("RGB").resize((tile - 4, tile - 4)), (x + 2, y + 2))
                except OSError:
                    pass
            draw.text((x + 2, y + tile), Path(img).name[:15], fill="black")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


# ------------------------------------------------------------------------------------------------ leakage audit


def leakage_audit(
    embeddings: np.ndarray,
    subsets: np.ndarray,
    n_folds: int,
    thresholds: Sequence[float] = AUDIT_THRESHOLDS,
    valid: np.ndarray | None = None,
) -> dict[str, Any]:
    """Test photos with a close neighbour (cosine ``>= t``) in the training subsets of the fold that tests them.

    Args:
        embeddings: ``(N, D)`` L2-normalised.
        subsets: ``(N,)`` int subset of each photo (fold ``k`` tests subset ``k``; see
            :func:`gsscreen.training.splits.fold_roles`).
        n_folds: number of folds.
        thresholds: similarities to count at.
        valid: ``(N,)`` bool, photos with an embedding (others are neither counted nor neighbours).

    Returns:
        ``{"n_test": N_valid, "thresholds": {str(t): {"n": count, "share": count / N_valid, "per_fold": [...]}}}``.
    """
    from gsscreen.training.splits import fold_roles

    e = np.asarray(embeddings, dtype=np.float32)
    subsets = np.asarray(subsets)
    ok = np.ones(len(e), bool) if valid is None else np.asarray(valid, bool)
    best = np.full(len(e), -np.inf)
    for k in range(n_folds):
        train, _, test = fold_roles(k, n_folds)
        te = np.flatnonzero((subsets == test) & ok)
        tr = np.flatnonzero(np.isin(subsets, train) & ok)
        if len(te) and len(tr):
            best[te] = (e[te] @ e[tr].T).max(axis=1)
    n_valid = int(ok.sum())
    out: dict[str, Any] = {"n_test": n_valid, "thresholds": {}}
    for t in thresholds:
        hit = ok & (best >= t)
        out["thresholds"][f"{t:g}"] = {
            "n": int(hit.sum()), "share": float(hit.sum() / n_valid) if n_valid else float("nan"),
            "per_fold": [int((hit & (subsets == k)).sum()) for k in range(n_folds)],
        }
    out["nearest_train_cosine"] = best.tolist()
    return out


def study_grouping(
    table: pd.DataFrame, crops: torch.Tensor, keys: Sequence[str], likely_same_child: bool, threshold: float,
    audit: bool,
) -> tuple[pd.DataFrame, np.ndarray | None, dict[str, Any]]:
    """The study's hook: embeddings of its loaded crops and, when subject ids are missing, ``identity_cluster``.

    ``table`` rows match ``crops`` ``(N, 3, S, S)`` uint8 and ``keys``. Returns ``(table, embeddings or None,
    info)``; ``info`` (for ``metrics.json``) says whether clusters were used, why not, and their sizes.
    """
    info: dict[str, Any] = {"likely_same_child": likely_same_child, "threshold": threshold, "used": False}
    if not (likely_same_child or audit):
        info["reason"] = "off in the config"
        return table, None, info
    from gsscreen.models.backbones.facenet import facenet_weights_available

    if not facenet_weights_available():
        info["reason"] = "FaceNet weights not installed: photos not compared by face"
        log.warning("likely-same-child grouping and leakage audit skipped: %s", info["reason"])
        return table, None, info
    emb = embed_crops(crops, list(keys))
    sid = table["subject_id"] if "subject_id" in table.columns else pd.Series([None] * len(table))
    no_id = sid.isna() | (sid.astype(str).str.strip() == "")
    if "subject_inferred" in table.columns:
        no_id |= table["subject_inferred"].astype(bool).to_numpy()
    if not likely_same_child:
        info["reason"] = "off in the config"
    elif not no_id.any():
        info["reason"] = "every photo has a subject id"
    else:
        labels = identity_groups(emb, threshold)
        table = table.copy()
        table["identity_cluster"] = labels
        sizes = np.bincount(labels)
        info.update(used=True, n_clusters=int((sizes >= 2).sum()), n_photos_in_clusters=int(sizes[sizes >= 2].sum()),
                    largest_cluster=int(sizes.max()) if len(sizes) else 0)
        log.info("likely-same-child clusters at cosine >= %.2f: %d clusters of 2+ photos (%d photos, largest %d)",
                 threshold, info["n_clusters"], info["n_photos_in_clusters"], info["largest_cluster"])
    return table, emb, info
