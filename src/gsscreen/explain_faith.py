"""Is a heatmap faithful to the model? Deletion/insertion curves and the model-randomisation check.

- :func:`deletion_insertion` (Petsiuk et al. 2018, RISE): grey out the most salient pixels first and watch P(GS)
  fall (deletion: a faithful map makes it fall fast, small area under the curve), or start from a grey image and
  reveal the most salient pixels first (insertion: a faithful map makes it rise fast, large area).
- :func:`map_rank_correlation` + :func:`randomised_copy` (Adebayo et al. 2018, "Sanity checks for saliency
  maps"): a map that barely changes when the trained weights are replaced by random ones shows the input (edges,
  contrast), not what the model learned.

Shapes: images ``(N, H, W, 3)`` uint8 RGB; maps ``(N, H, W)`` float (any scale, higher = more salient), the
images' resolution; ``predict`` takes ``(N, H, W, 3)`` uint8 and returns ``(N,)`` P(GS).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn

__all__ = ["curve_auc", "deletion_insertion", "map_rank_correlation", "random_maps", "randomised_copy"]


def _orders(maps: np.ndarray, seed: int) -> np.ndarray:
    """Pixel indices of each map, most salient first; ties (flat regions of an upsampled map) in a fixed random
    order, so a coarse map is not favoured or penalised by the raster order of its plateaus."""
    rng = np.random.default_rng(seed)
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    jitter = rng.random(flat.shape) * 1e-9 * (np.abs(flat).max(axis=1, keepdims=True) + 1e-12)
    return np.argsort(-(flat + jitter), axis=1, kind="stable")


def deletion_insertion(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    maps: np.ndarray,
    steps: int = 16,
    fill: int = 128,
    seed: int = 0,
    batch: int = 64,
    canvas: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """P(GS) curves ``(deletion, insertion)``, each ``(N, steps + 1)``, at fractions ``0, 1/steps, ..., 1`` of the
    pixels greyed out (deletion) or revealed on a grey image (insertion), most salient first.

    canvas: ``(N, H, W, 3)`` uint8 the insertion starts from instead of grey (Petsiuk et al. use a blurred copy
    of the photo, for models that call a flat grey image anything but neutral)."""
    imgs = np.asarray(images)
    m = np.asarray(maps, dtype=np.float64)
    if imgs.ndim != 4 or imgs.shape[3] != 3 or imgs.dtype != np.uint8:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got {imgs.dtype} {imgs.shape}")
    if m.shape != imgs.shape[:3]:
        raise ValueError(f"maps must be (N, H, W) = {imgs.shape[:3]}, got {m.shape}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n, h, w = m.shape
    order = _orders(m, seed)
    if canvas is not None and np.shape(canvas) != imgs.shape:
        raise ValueError(f"canvas must be {imgs.shape}, got {np.shape(canvas)}")
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(int)
    views = np.empty((2, n, steps + 1, h, w, 3), dtype=np.uint8)
    for i in range(n):
        for t, c in enumerate(counts):
            hit = np.zeros(h * w, dtype=bool)
            hit[order[i, :c]] = True
            hit = hit.reshape(h, w)
            views[0, i, t] = imgs[i]
            views[0, i, t][hit] = fill
            views[1, i, t] = fill if canvas is None else canvas[i]
            views[1, i, t][hit] = imgs[i][hit]
    flat = views.reshape(-1, h, w, 3)
    p = np.concatenate([np.asarray(predict(flat[k:k + batch]), dtype=np.float64).reshape(-1)
                        for k in range(0, len(flat), batch)])
    p = p.reshape(2, n, steps + 1)
    return p[0], p[1]


def curve_auc(curves: np.ndarray) -> np.ndarray:
    """Area under each ``(N, T)`` curve over the fraction 0–1 (trapezoid): ``(N,)``."""
    c = np.asarray(curves, dtype=np.float64)
    x = np.linspace(0.0, 1.0, c.shape[1])
    return np.trapezoid(c, x, axis=1) if hasattr(np, "trapezoid") else np.trapz(c, x, axis=1)


def random_maps(n: int, shape: tuple[int, int], cells: int = 8, seed: int = 0) -> np.ndarray:
    """``(n, H, W)`` random maps with the same blob size as a ``cells``×``cells`` CAM (uniform noise on the grid,
    upsampled bilinearly): the baseline a real map must beat."""
    import cv2

    rng = np.random.default_rng(seed)
    return np.stack([cv2.resize(rng.random((cells, cells)).astype(np.float32), (shape[1], shape[0]),
                                interpolation=cv2.INTER_LINEAR) for _ in range(n)])


def map_rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps ``a[i]``, ``b[i]`` (``(N, H, W)`` each): ``(N,)``; NaN where a
    map is constant."""
    from scipy.stats import spearmanr

    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"map sets differ in shape: {a.shape} vs {b.shape}")
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        if np.ptp(a[i]) > 0 and np.ptp(b[i]) > 0:
            out[i] = float(spearmanr(a[i], b[i]).statistic)
    return out


def randomised_copy(model: nn.Module, prefixes: Sequence[str] = ("",), seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` whose parameters under the dotted ``prefixes`` (``""`` = all; e.g. ``("head.",)``
    for the trained head of a frozen-body model) are redrawn: weights N(0, std of the trained tensor), biases and
    other 1-D parameters keep their shape with values N(0, their std). Buffers (batch-norm statistics) are kept."""
    import torch

    clone = copy.deepcopy(model)
    g = torch.Generator().manual_seed(int(seed))
    hit = 0
    with torch.no_grad():
        for name, p in clone.named_parameters():
            if not any(name.startswith(pre) for pre in prefixes):
                continue
            std = float(p.detach().float().std()) if p.numel() > 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=g).to(p.dtype) * max(std, 1e-3))
            hit += 1
    if not hit:
        raise ValueError(f"no parameter of {type(model).__name__} starts with {list(prefixes)}")
    return clone
