"""The paper's training loss: softmax cross-entropy + λ · triplet loss on the embedding.

The triplet term uses batch-hard mining (for each anchor, the farthest same-class and the nearest other-class
embedding in the batch), on L2-normalised embeddings with Euclidean distance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """``(B, B)`` Euclidean distances between the rows of ``emb`` ``(B, D)``.

    Computed from the Gram matrix; squared distances are clamped at 1e-12 before the square root so the gradient
    stays finite on the diagonal (whose entries are masked out by the callers anyway).
    """
    sq = (emb * emb).sum(dim=1)
    d2 = sq[:, None] - 2 * emb @ emb.t() + sq[None, :]
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss.

    Args:
        emb: ``(B, D)`` embeddings (L2-normalised here, so the caller may pass raw ones).
        labels: ``(B,)`` integer classes.
        margin: required gap between the hardest negative and the hardest positive distance.

    Returns:
        Scalar: mean over valid anchors of ``relu(max_pos_dist - min_neg_dist + margin)``. An anchor without a
        positive (another photo of its class) or without a negative is skipped; with no valid anchor the loss is
        0 (still connected to ``emb`` so ``backward`` works).
    """
    emb = F.normalize(emb.float(), dim=1)
    dist = pairwise_distances(emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos = same & ~eye
    neg = ~same
    valid = pos.any(dim=1) & neg.any(dim=1)
    if not valid.any():
        return emb.sum() * 0.0
    hardest_pos = dist.masked_fill(~pos, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(~neg, float("inf")).amin(dim=1)
    per_anchor = F.relu(hardest_pos - hardest_neg + margin)
    return per_anchor[valid].mean()


class StudyLoss(nn.Module):
    """``CE(logits, y) + triplet_weight · batch_hard_triplet(embedding, y)``.

    ``forward(logits (B, C), embedding (B, D), y (B,)) -> (total, {"ce": float, "triplet": float})``.
    With ``triplet_weight == 0`` the triplet term is not computed at all.
    """

    def __init__(self, triplet_weight: float = 1.0, margin: float = 0.3) -> None:
        super().__init__()
        self.triplet_weight = float(triplet_weight)
        self.margin = float(margin)

    def forward(
        self, logits: torch.Tensor, embedding: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        ce = F.cross_entropy(logits.float(), y)
        if self.triplet_weight == 0:
            return ce, {"ce": float(ce.detach()), "triplet": 0.0}
        tri = batch_hard_triplet_loss(embedding, y, self.margin)
        return ce + self.triplet_weight * tri, {"ce": float(ce.detach()), "triplet": float(tri.detach())}
