"""Networks: the backbone registry, the paper's VGG-16, the offline FaceNet backbone, and the conv head."""

from gsscreen.models.registry import BackboneSpec, GSNet, create_model, get_spec, list_backbones

__all__ = ["BackboneSpec", "GSNet", "create_model", "get_spec", "list_backbones"]
