"""``tiny``: a small random-init CNN for tests, smoke runs and the quick demo on machines without imported weights.

Not face-pretrained; it exists so every stage of the pipeline can be exercised in seconds on a CPU.
"""

from __future__ import annotations

from torch import nn

from gsscreen.models.heads import ConvHead
from gsscreen.models.registry import BackboneParts, BackboneSpec, register_backbone


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)
    )


def _build(pretrained: bool) -> BackboneParts:
    # 64 -> 32 -> 16 -> 8 -> 4: a 4×4×64 map, then a 1×1 conv head.
    stages = [_block(3, 16), _block(16, 32), _block(32, 64), _block(64, 64)]
    return BackboneParts(
        stages=stages, make_head=lambda n, p: ConvHead(64, [(64, 1)], n, p), pretrained_loaded=False
    )


TINY = register_backbone(
    BackboneSpec(
        name="tiny",
        input_size=64,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        weight_source="random init (test/smoke backbone)",
        cam_layer="body.4",
        embedding_dim=64,
        build=_build,
        description="4-block CNN, 64x64 input, random init: for tests and smoke runs only",
    )
)
