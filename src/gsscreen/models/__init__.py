"""Networks: the backbone registry, the paper's VGG-16, the offline FaceNet backbone, and the conv head."""

import torch

from gsscreen.models.registry import (
    DEFAULT_BACKBONE,
    BackboneSpec,
    GSNet,
    create_model,
    get_spec,
    list_backbones,
)


def facenet_embedding(crops: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Pretrained FaceNet embedding ``(B, 3, 160, 160)`` 0–1 RGB → ``(B, 512)`` L2-normalised (see
    :func:`gsscreen.models.backbones.facenet.facenet_embedding`)."""
    from gsscreen.models.backbones.facenet import facenet_embedding as _impl

    return _impl(crops, batch_size=batch_size)


__all__ = [
    "DEFAULT_BACKBONE",
    "BackboneSpec",
    "GSNet",
    "create_model",
    "facenet_embedding",
    "get_spec",
    "list_backbones",
]
