"""``vgg16``: the paper's network: VGG-16 initialised from VGG-Face, every conv followed by batch norm.

Architecture (Hong et al. 2021, after Simonyan & Zisserman 2015 and Parkhi et al. 2015):

- 13 convolutions 3×3 (stride 1, padding 1) in five groups of widths 64-64 | 128-128 | 256×3 | 512×3 | 512×3,
  each conv → BatchNorm → ReLU, a 2×2 max-pool closing each group. Each group is one body stage, so
  ``body[1:k+1]`` freezes / caches whole groups: ``body = [Normalize, group1, ..., group5]``.
- The fully connected layers become convolutions in :class:`~gsscreen.models.heads.ConvHead`: fc6 = 7×7 conv
  (512 → 4096), fc7 = 1×1 conv (4096 → 4096), each → BN → ReLU, 50% dropout, then a 1×1 conv to the classes.
  The embedding is fc7's output (4096-d, L2-normalised).
- Input 224×224 RGB. Normalisation is VGG-Face's (``vgg_face_dag`` metadata, MatConvNet release by Oxford VGG):
  RGB on 0–255 minus the average image colour (129.186279, 104.762383, 93.593964), std 1. In our 0–1 units:
  ``mean = those / 255`` and ``std = 1/255``.

Pretrained weights come only from a VGG-Face file the user imports (``gsscreen weights import-vggface FILE``,
see :mod:`gsscreen.models.vggface`); VGG-Face has no batch norm, so each BN starts as an exact identity that
carries the original conv bias (see :func:`set_identity_batchnorm`), and the network starts as VGG-Face in eval mode.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
from torch import nn

from gsscreen.models.heads import ConvHead
from gsscreen.models.registry import BackboneParts, BackboneSpec, register_backbone

log = logging.getLogger(__name__)

#: Conv widths per group (VGG-16, configuration "D").
VGG16_WIDTHS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
#: fc6 / fc7 width.
VGG16_FC = 4096
#: The ``vgg_face_dag`` average image colour, RGB, on 0–255 (its ``meta.normalization.averageImage``).
VGGFACE_MEAN_RGB_255 = (129.186279296875, 104.76238250732422, 93.59396362304688)
#: Keys of the neutral VGG-Face tensor file, in network order (conv weights OIHW taking RGB input).
VGGFACE_CONV_NAMES: tuple[str, ...] = tuple(
    f"conv{g + 1}_{i + 1}" for g, widths in enumerate(VGG16_WIDTHS) for i in range(len(widths))
)
BN_EPS = 1e-5


def vggface_weights_path() -> Path:
    """Where ``gsscreen weights import-vggface`` stores the converted VGG-Face weights."""
    from gsscreen.paths import weights_dir

    return weights_dir() / "vggface.safetensors"


def vgg16_stages(widths: Sequence[Sequence[int]] = VGG16_WIDTHS) -> list[nn.Sequential]:
    """The five conv groups: ``[conv3×3 (no bias) → BN → ReLU] × n → MaxPool 2×2`` each.

    Inside group g the conv of layer i is ``[3i]``, its BN ``[3i + 1]``, its ReLU ``[3i + 2]`` and the pool is last.
    ReLUs are not in-place so Grad-CAM hooks may sit on any of them.
    """
    stages = []
    c = 3
    for group in widths:
        layers: list[nn.Module] = []
        for w in group:
            # No conv bias: the BN that follows has its own; an imported VGG-Face bias goes into the BN bias.
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w, eps=BN_EPS), nn.ReLU()]
            c = w
        layers.append(nn.MaxPool2d(2, 2))
        stages.append(nn.Sequential(*layers))
    return stages


@torch.no_grad()
def set_identity_batchnorm(bn: nn.BatchNorm2d, bias: torch.Tensor | None = None) -> None:
    """Make ``bn`` an exact identity in eval mode, optionally adding ``bias``.

    ``running_var = 1 - eps`` (not 1) so that ``1 / sqrt(running_var + eps)`` is exactly 1 and the imported network
    reproduces VGG-Face bit-for-bit up to float rounding (with ``running_var = 1`` every layer would scale by
    ``1/sqrt(1 + 1e-5)``, a 0.0005% drift per layer that compounds over 15 layers).
    """
    bn.weight.fill_(1.0)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    if bias is None:
        bn.bias.zero_()
    else:
        bn.bias.copy_(bias.reshape(-1))
    bn.num_batches_tracked.zero_()


def _check_shape(name: str, tensor: torch.Tensor, expected: torch.Size, source: str) -> None:
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(
            f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, the network expects {tuple(expected)}; "
            "re-import the VGG-Face file with `gsscreen weights import-vggface FILE`"
        )


@torch.no_grad()
def load_vggface_convs(stages: Sequence[nn.Sequential], tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``conv*_*.weight`` into the convs and ``conv*_*.bias`` into the following identity BNs."""
    convs = [(m, s[i + 1]) for s in stages for i, m in enumerate(s) if isinstance(m, nn.Conv2d)]
    if len(convs) != len(VGGFACE_CONV_NAMES):
        raise ValueError(f"expected {len(VGGFACE_CONV_NAMES)} convs, the network has {len(convs)}")
    for name, (conv, bn) in zip(VGGFACE_CONV_NAMES, convs, strict=True):
        w, b = tensors[f"{name}.weight"], tensors[f"{name}.bias"]
        _check_shape(f"{name}.weight", w, conv.weight.shape, source)
        _check_shape(f"{name}.bias", b, bn.bias.shape, source)
        conv.weight.copy_(w)
        set_identity_batchnorm(bn, b)


@torch.no_grad()
def load_vggface_fc(head: ConvHead, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy fc6 / fc7 (already shaped as 7×7 / 1×1 convolutions) into the head's hidden convs + identity BNs."""
    for i, name in enumerate(("fc6", "fc7")):
        conv, bn = head.hidden[4 * i], head.hidden[4 * i + 1]
        w, b = tensors[f"{name}.weight"], tensors[f"{name}.bias"]
        _check_shape(f"{name}.weight", w, conv.weight.shape, source)
        _check_shape(f"{name}.bias", b, bn.bias.shape, source)
        conv.weight.copy_(w)
        set_identity_batchnorm(bn, b)


def _open(weights: Mapping[str, torch.Tensor] | Path) -> AbstractContextManager[Mapping[str, torch.Tensor]]:
    if isinstance(weights, Path):
        from gsscreen.models.weights_io import open_safetensors

        return open_safetensors(weights)
    return nullcontext(weights)


def vgg16_parts(
    weights: Mapping[str, torch.Tensor] | Path | None = None,
    widths: Sequence[Sequence[int]] = VGG16_WIDTHS,
    fc_dim: int = VGG16_FC,
) -> BackboneParts:
    """Stages + head factory, loading VGG-Face weights (neutral names, see :mod:`gsscreen.models.vggface`) when
    given: an in-memory mapping, or the path of a safetensors file, which is then read tensor by tensor (so the
    138 M parameters are never held twice). ``widths`` / ``fc_dim`` are only changed by tests that build small
    networks of the same layout."""
    source = str(weights) if isinstance(weights, Path) else "VGG-Face tensors"
    stages = vgg16_stages(widths)
    if weights is not None:
        with _open(weights) as tensors:
            load_vggface_convs(stages, tensors, source)
    last = widths[-1][-1]

    def make_head(num_classes: int, dropout: float) -> nn.Module:
        head = ConvHead(last, [(fc_dim, 7), (fc_dim, 1)], num_classes, dropout)
        if weights is not None:
            with _open(weights) as tensors:
                load_vggface_fc(head, tensors, source)
        return head

    return BackboneParts(
        stages=list(stages),
        make_head=make_head,
        pretrained_loaded=weights is not None,
        stage_names=[f"conv{g + 1}" for g in range(len(widths))],
    )


def _build(pretrained: bool) -> BackboneParts:
    path = vggface_weights_path()
    if pretrained and not path.is_file():
        log.warning(
            "vgg16: VGG-Face weights have not been imported (looked for %s), so the network starts from RANDOM "
            "init. Import them once with `gsscreen weights import-vggface FILE` (FILE = vgg_face_dag.pth, "
            "keras-vggface's rcmalli_vggface_tf_vgg16.h5 or deepface's vgg_face_weights.h5).",
            path,
        )
    return vgg16_parts(path if pretrained and path.is_file() else None)


VGG16 = register_backbone(
    BackboneSpec(
        name="vgg16",
        input_size=224,
        mean=tuple(m / 255.0 for m in VGGFACE_MEAN_RGB_255),  # type: ignore[arg-type]
        std=(1 / 255.0, 1 / 255.0, 1 / 255.0),
        weight_source="VGG-Face (Parkhi et al. 2015), imported by the user: gsscreen weights import-vggface FILE",
        # conv5_3's ReLU (14×14 at 224 input), just before the last max-pool: the usual VGG Grad-CAM layer, with
        # twice the resolution of the pooled 7×7 group output and the same semantics.
        cam_layer="body.5.8",
        embedding_dim=VGG16_FC,
        build=_build,
        description="the paper's VGG-16 + BN, conv head fc6 7x7 / fc7 1x1 (4096), 224x224, 15.5 GMACs",
        weights_available=lambda: vggface_weights_path().is_file(),
        weights_hint="gsscreen weights import-vggface FILE",
    )
)
