"""Batched random augmentation: rotation, crop resized back, horizontal flip, optional colour jitter and grey
frames.

Works on ``(B, 3, H, W)`` float tensors in 0–1 on any device. Rotation, crop and flip are folded into one affine
matrix per image and applied with a single ``grid_sample`` (one resampling, no intermediate blur). Random
parameters come from an explicit ``torch.Generator`` on the CPU, so results depend only on the seed, not on the
device or on any global RNG; :func:`sample_params` and :func:`apply_params` are separate so a caller can draw
parameters per photo (e.g. from a per-photo seed) and still apply them as one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gsscreen.training.config import AugmentConfig


@dataclass
class AugmentParams:
    """Per-image random parameters, each a CPU tensor of shape ``(B,)`` (``jitter``: ``(B, 3)``).

    ``angle`` in radians, ``side`` = crop side as a fraction of the image side, ``tx``/``ty`` crop centre in
    normalised coordinates (−1..1), ``flip`` 1.0 for mirrored, ``jitter`` brightness/contrast/saturation factors,
    ``frame`` ``(B, 4)`` grey band widths (top, bottom, left, right) as fractions of the side, 0 = no band.
    """

    angle: torch.Tensor
    side: torch.Tensor
    tx: torch.Tensor
    ty: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    frame: torch.Tensor

    @staticmethod
    def cat(parts: list[AugmentParams]) -> AugmentParams:
        return AugmentParams(*(torch.cat([getattr(p, f) for p in parts]) for f in AugmentParams.__dataclass_fields__))


def sample_params(n: int, cfg: AugmentConfig, generator: torch.Generator) -> AugmentParams:
    """Draw parameters for ``n`` images from ``generator`` (a CPU generator)."""

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*(shape or (n,)), generator=generator)

    angle = u(-1.0, 1.0) * math.radians(cfg.rotation_deg)
    lo, hi = cfg.crop_scale
    side = torch.sqrt(u(lo, hi))  # area share -> side share (square crop)
    # Crop centre anywhere that keeps the (unrotated) crop inside the image.
    tx = u(-1.0, 1.0) * (1 - side)
    ty = u(-1.0, 1.0) * (1 - side)
    flip = (torch.rand(n, generator=generator) < cfg.hflip_p).float()
    s = cfg.color_jitter
    jitter = u(1 - s, 1 + s, n, 3) if s > 0 else torch.ones(n, 3)
    frame = torch.zeros(n, 4)
    if cfg.frame_p > 0:  # drawn last, so the other parameters do not depend on whether frames are on
        on = (torch.rand(n, generator=generator) < cfg.frame_p).float()
        frame = u(0.0, cfg.frame_max, n, 4) * on[:, None]
    return AugmentParams(angle, side, tx, ty, flip, jitter, frame)


def affine_matrices(p: AugmentParams) -> torch.Tensor:
    """``(B, 2, 3)`` matrices mapping output to input normalised coordinates (``affine_grid`` convention)."""
    c, s = torch.cos(p.angle), torch.sin(p.angle)
    fx = 1 - 2 * p.flip  # -1 mirrors the output x axis
    theta = torch.zeros(len(p.angle), 2, 3)
    # input = centre + side * R(angle) @ diag(fx, 1) @ output
    theta[:, 0, 0] = p.side * c * fx
    theta[:, 0, 1] = -p.side * s
    theta[:, 1, 0] = p.side * s * fx
    theta[:, 1, 1] = p.side * c
    theta[:, 0, 2] = p.tx
    theta[:, 1, 2] = p.ty
    return theta


def _jitter(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    # Brightness, contrast (around each image's mean grey), saturation (around each pixel's grey).
    b, c, s = (f[:, i].view(-1, 1, 1, 1) for i in range(3))
    x = x * b
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    mean_grey = grey.mean(dim=(2, 3), keepdim=True)
    x = (x - mean_grey) * c + mean_grey
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - grey) * s + grey
    return x.clamp(0, 1)


def _grey_frame(x: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    # Bands of flat grey (0.5, the value alignment fills outside the photo with) on each side: a photo cropped
    # tightly by its source looks like this after alignment, and either class may come from such a source.
    h, w = x.shape[-2:]
    rows = (torch.arange(h, device=x.device, dtype=torch.float32) + 0.5) / h
    cols = (torch.arange(w, device=x.device, dtype=torch.float32) + 0.5) / w
    f = frame.to(device=x.device, dtype=torch.float32)
    keep_r = (rows[None] >= f[:, 0:1]) & (rows[None] <= 1 - f[:, 1:2])  # (B, H)
    keep_c = (cols[None] >= f[:, 2:3]) & (cols[None] <= 1 - f[:, 3:4])  # (B, W)
    keep = (keep_r[:, :, None] & keep_c[:, None, :])[:, None]
    return torch.where(keep, x, torch.full_like(x, 0.5))


def apply_params(x: torch.Tensor, p: AugmentParams, cfg: AugmentConfig) -> torch.Tensor:
    """Apply ``p`` to ``x`` ``(B, 3, H, W)`` 0–1; returns the same shape, dtype and device."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(x.shape)}")
    theta = affine_matrices(p).to(device=x.device, dtype=torch.float32)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode=cfg.padding, align_corners=False)
    if cfg.color_jitter > 0:
        out = _jitter(out, p.jitter.to(x.device))
    if cfg.frame_p > 0:
        out = _grey_frame(out, p.frame)
    return out.to(x.dtype)


class Augmenter:
    """Callable augmentation: ``Augmenter(cfg)(x, generator) -> x_aug``; identity when ``cfg.enabled`` is False."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.cfg.enabled:
            return x
        return apply_params(x, sample_params(len(x), self.cfg, generator), self.cfg)

    def per_item(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """Augment image ``i`` with parameters drawn from its own seed ``seeds[i]`` (batch-independent)."""
        if not self.cfg.enabled:
            return x
        parts = [sample_params(1, self.cfg, torch.Generator().manual_seed(int(s))) for s in seeds]
        return apply_params(x, AugmentParams.cat(parts), self.cfg)
