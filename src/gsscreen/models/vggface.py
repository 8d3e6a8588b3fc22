"""Import VGG-Face (Parkhi et al. 2015) weights from the common public distributions into gsscreen's VGG-16.

Supported files (detected from their content, not their name):

``pth``: the PyTorch port of Oxford's MatConvNet ``vgg_face_dag`` (``vgg_face_dag.pth``): a state dict with
    ``conv1_1.weight`` (64, 3, 3, 3) … ``conv5_3.bias``, ``fc6.weight`` (4096, 25088), ``fc7.weight`` (4096, 4096),
    ``fc8.weight`` (2622, 4096) and biases. fc6 flattens pool5 in PyTorch order (C, H, W). Input: RGB.
``keras-vggface``: rcmalli's keras-vggface HDF5 (``rcmalli_vggface_tf_vgg16.h5``, TensorFlow dim ordering):
    layers ``conv1_1`` … ``conv5_3``, ``fc6``, ``fc7``, ``fc8``; conv kernels (kh, kw, in, out), Dense kernels
    (in, out), and fc6 flattens pool5 channels-last (H, W, C). Input: **BGR** (its ``preprocess_input`` flips
    RGB to BGR, and the weights come from the Caffe release, which is BGR).
``deepface``: deepface's ``vgg_face_weights.h5``: a Keras Sequential of ZeroPadding2D / Conv2D layers with
    generic names (``conv2d_1`` …), where fc6 / fc7 / fc8 already are 7×7 / 1×1 / 1×1 convolutions. Layers are
    matched by order and shape. Input: RGB (converted from the MatConvNet release, whose images are RGB).

The channel order each format's first conv expects is the default above and can be overridden
(``channel_order="rgb" | "bgr"``); gsscreen always feeds RGB, so BGR files get conv1_1's input channels reversed.
fc6 / fc7 are reshaped into the 7×7 / 1×1 convolutions of :class:`~gsscreen.models.heads.ConvHead`, fc8 (the 2622
VGG-Face identities) is dropped. The result is stored in neutral names (``conv1_1.weight`` OIHW, ``fc6.weight``
(4096, 512, 7, 7), …) as ``weights_dir()/vggface.safetensors`` with a JSON note of the source file's SHA-256 and
format. Nothing is unpickled: ``.pth`` files are read with ``torch.load(weights_only=True)`` and HDF5 with h5py.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsscreen.models.backbones.vgg16 import VGG16_FC, VGG16_WIDTHS, VGGFACE_CONV_NAMES, vggface_weights_path
from gsscreen.models.weights_io import WeightsError, load_state_file, save_safetensors
from gsscreen.paths import sha256_file

FORMATS = ("pth", "keras-vggface", "deepface")
DEFAULT_CHANNEL_ORDER = {"pth": "rgb", "keras-vggface": "bgr", "deepface": "rgb"}
_N_CONV = len(VGGFACE_CONV_NAMES)


@dataclass
class VGGFaceWeights:
    """VGG-Face tensors in neutral names, float32, conv1_1 taking RGB input.

    ``tensors``: ``conv{g}_{i}.weight`` (out, in, 3, 3) / ``.bias``, ``fc6.weight`` (F, C, k, k), ``fc7.weight``
    (F, F, 1, 1) and their biases. ``info``: what was read (format, channel order, fc8 size, …).
    """

    tensors: dict[str, torch.Tensor]
    format: str
    channel_order: str
    info: dict[str, Any] = field(default_factory=dict)


def _f32(a: Any) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
    return t.detach().to(torch.float32).contiguous()


def _check_chain(path: Path, convs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """13 convs of 3×3, the first taking 3 channels, each taking the previous one's output."""
    c = 3
    for name, (w, b) in zip(VGGFACE_CONV_NAMES, convs, strict=True):
        if w.ndim != 4 or tuple(w.shape[1:]) != (c, 3, 3) or b.shape != (w.shape[0],):
            raise WeightsError(
                f"{path}: {name} has weight {tuple(w.shape)} / bias {tuple(b.shape)}; expected (out, {c}, 3, 3)"
                " after conversion: the file is not a VGG-16 VGG-Face model"
            )
        c = w.shape[0]


def _conv_dict(convs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, (w, b) in zip(VGGFACE_CONV_NAMES, convs, strict=True):
        out[f"{name}.weight"], out[f"{name}.bias"] = w, b
    return out


def _fc_from_dense(path: Path, name: str, w: torch.Tensor, in_channels: int, order: str) -> torch.Tensor:
    """Dense weight (out, in) -> conv weight (out, C, k, k); ``order`` = how the input was flattened ("chw"/"hwc")."""
    out, n_in = w.shape
    k = round((n_in / in_channels) ** 0.5)
    if k * k * in_channels != n_in:
        raise WeightsError(f"{path}: {name} takes {n_in} inputs, not {in_channels}×k×k for a square k")
    if order == "chw":
        return w.reshape(out, in_channels, k, k)
    return w.reshape(out, k, k, in_channels).permute(0, 3, 1, 2)


def _read_pth(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = load_state_file(path)
    # tolerate a "module." prefix (DataParallel) or any other common prefix in front of the layer names
    sd = {re.sub(r"^(.*\.)?(conv\d_\d|fc\d)\.", r"\2.", k): v for k, v in sd.items()}
    need = [f"{n}.{p}" for n in (*VGGFACE_CONV_NAMES, "fc6", "fc7") for p in ("weight", "bias")]
    missing = [k for k in need if k not in sd]
    if missing:
        raise WeightsError(
            f"{path}: not a vgg_face_dag state dict: missing {', '.join(missing[:6])}"
            f"{' …' if len(missing) > 6 else ''} (found keys: {', '.join(list(sd)[:6])} …)"
        )
    convs = [(_f32(sd[f"{n}.weight"]), _f32(sd[f"{n}.bias"])) for n in VGGFACE_CONV_NAMES]
    _check_chain(path, convs)
    out = _conv_dict(convs)
    c = convs[-1][0].shape[0]
    w6, w7 = _f32(sd["fc6.weight"]), _f32(sd["fc7.weight"])
    out["fc6.weight"] = w6 if w6.ndim == 4 else _fc_from_dense(path, "fc6", w6, c, "chw")
    out["fc7.weight"] = w7 if w7.ndim == 4 else w7[:, :, None, None]
    out["fc6.bias"], out["fc7.bias"] = _f32(sd["fc6.bias"]), _f32(sd["fc7.bias"])
    info = {"fc8": list(sd["fc8.weight"].shape) if "fc8.weight" in sd else None}
    return out, info


def _natural_key(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _h5_layers(path: Path) -> list[tuple[str, list[np.ndarray]]]:
    """``[(layer name, [arrays in weight order])]`` for the layers that have weights, in model order.

    Reads the Keras 2 layout (root or ``model_weights`` group with a ``layer_names`` attribute and per-layer
    ``weight_names``) and the Keras 3 ``.weights.h5`` layout (``layers/<name>/vars/<i>``, ordered naturally by name).
    """
    import h5py

    def text(x: Any) -> str:
        return x.decode("utf-8") if isinstance(x, bytes) else str(x)

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with f:
        root = f.get("model_weights", f)
        layers: list[tuple[str, list[np.ndarray]]] = []
        if "layer_names" in root.attrs:
            for name in map(text, root.attrs["layer_names"]):
                g = root[name]
                arrays = [np.asarray(g[text(w)]) for w in g.attrs.get("weight_names", [])]
                if arrays:
                    layers.append((name, arrays))
        elif "layers" in root:
            for name in sorted(root["layers"], key=_natural_key):
                g = root["layers"][name]
                if "vars" in g and len(g["vars"]):
                    layers.append((name, [np.asarray(g["vars"][k]) for k in sorted(g["vars"], key=_natural_key)]))
        else:
            raise WeightsError(f"{path}: HDF5 file without Keras weights (no 'layer_names' attribute, no 'layers')")
    return layers


def _read_h5(path: Path) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    layers = _h5_layers(path)
    if len(layers) < _N_CONV + 2:
        raise WeightsError(
            f"{path}: found {len(layers)} layers with weights ({', '.join(n for n, _ in layers[:5])} …); "
            f"VGG-16 has {_N_CONV} convolutions + fc6, fc7, fc8"
        )
    kernels, biases = [], []
    for name, arrays in layers:
        ks = [a for a in arrays if a.ndim >= 2]
        bs = [a for a in arrays if a.ndim == 1]
        if len(ks) != 1 or len(bs) != 1:
            raise WeightsError(f"{path}: layer {name!r} holds {[a.shape for a in arrays]}, expected a kernel + bias")
        kernels.append(ks[0])
        biases.append(bs[0])
    first = kernels[0]
    if first.ndim == 4 and first.shape[1] == 3 and first.shape[-1] == 3 and first.shape[0] != 3:
        raise WeightsError(
            f"{path}: conv kernels are in Theano / channels-first layout {first.shape}; use the TensorFlow "
            "(channels-last) release of the file (e.g. rcmalli_vggface_tf_vgg16.h5)"
        )
    convs = []
    for k, b in zip(kernels[:_N_CONV], biases[:_N_CONV], strict=True):
        if k.ndim != 4:
            raise WeightsError(f"{path}: expected {_N_CONV} convolution kernels first, found a kernel {k.shape}")
        convs.append((_f32(k).permute(3, 2, 0, 1).contiguous(), _f32(b)))  # (kh, kw, in, out) -> (out, in, kh, kw)
    _check_chain(path, convs)
    out = _conv_dict(convs)
    c = convs[-1][0].shape[0]
    k6, k7 = kernels[_N_CONV], kernels[_N_CONV + 1]
    if k6.ndim == 2:  # keras-vggface: Flatten (channels-last) + Dense
        fmt = "keras-vggface"
        out["fc6.weight"] = _fc_from_dense(path, "fc6", _f32(k6).t(), c, "hwc").contiguous()
        out["fc7.weight"] = _f32(k7).t().contiguous()[:, :, None, None]
    elif k6.ndim == 4:  # deepface: fc6 / fc7 are convolutions already
        fmt = "deepface"
        out["fc6.weight"] = _f32(k6).permute(3, 2, 0, 1).contiguous()
        out["fc7.weight"] = _f32(k7).permute(3, 2, 0, 1).contiguous()
    else:
        raise WeightsError(f"{path}: fc6 kernel has shape {k6.shape}; expected a Dense (in, out) or conv kernel")
    out["fc6.bias"], out["fc7.bias"] = _f32(biases[_N_CONV]), _f32(biases[_N_CONV + 1])
    fc8 = list(kernels[_N_CONV + 2].shape) if len(kernels) > _N_CONV + 2 else None
    return out, fmt, {"fc8": fc8, "layers": [n for n, _ in layers]}


def _check_fc(path: Path, t: dict[str, torch.Tensor]) -> None:
    c = t["conv5_3.weight"].shape[0]
    w6, w7 = t["fc6.weight"], t["fc7.weight"]
    f = w6.shape[0]
    if w6.ndim != 4 or w6.shape[1] != c or w6.shape[2] != w6.shape[3] or t["fc6.bias"].shape != (f,):
        raise WeightsError(f"{path}: fc6 has shape {tuple(w6.shape)} after conversion; expected ({f}, {c}, k, k)")
    if tuple(w7.shape) != (f, f, 1, 1) or t["fc7.bias"].shape != (f,):
        raise WeightsError(f"{path}: fc7 has shape {tuple(w7.shape)} after conversion; expected ({f}, {f}, 1, 1)")


def read_vggface(path: str | Path, channel_order: str | None = None) -> VGGFaceWeights:
    """Read a VGG-Face file of any supported format (see module doc) into neutral tensors; nothing is written.

    Args:
        path: the ``.pth`` / ``.h5`` file.
        channel_order: the input channel order the file's first conv expects, ``"rgb"`` or ``"bgr"``; None = the
            format's known default (:data:`DEFAULT_CHANNEL_ORDER`). BGR weights are reordered to take RGB.

    Raises:
        WeightsError: the file is not a supported VGG-Face file (the message says what was found), or it is a
            pickled whole model (refused, with how to convert it).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"VGG-Face file not found: {p}")
    with open(p, "rb") as fh:
        magic = fh.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":
        tensors, fmt, info = _read_h5(p)
    else:
        tensors, info = _read_pth(p)
        fmt = "pth"
    _check_fc(p, tensors)
    order = (channel_order or DEFAULT_CHANNEL_ORDER[fmt]).lower()
    if order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', not {channel_order!r}")
    if order == "bgr":
        tensors["conv1_1.weight"] = tensors["conv1_1.weight"].flip(1).contiguous()
    return VGGFaceWeights(tensors=tensors, format=fmt, channel_order=order, info=info)


def is_standard_vgg16(tensors: dict[str, torch.Tensor]) -> bool:
    """True when the tensors have exactly the shapes of gsscreen's ``vgg16`` backbone."""
    c = 3
    widths = [w for g in VGG16_WIDTHS for w in g]
    for name, w in zip(VGGFACE_CONV_NAMES, widths, strict=True):
        if tuple(tensors[f"{name}.weight"].shape) != (w, c, 3, 3):
            return False
        c = w
    return tuple(tensors["fc6.weight"].shape) == (VGG16_FC, c, 7, 7) and tuple(tensors["fc7.weight"].shape) == (
        VGG16_FC,
        VGG16_FC,
        1,
        1,
    )


def import_vggface(
    path: str | Path, dest: str | Path | None = None, channel_order: str | None = None, require_standard: bool = True
) -> Path:
    """Convert a VGG-Face file into ``dest`` (default ``weights_dir()/vggface.safetensors``) + ``dest.json``.

    The JSON note records the source file's name, size and SHA-256, the detected format and channel order, fc8's
    shape (dropped) and the import time. ``require_standard`` refuses files whose shapes differ from VGG-16's
    (tests turn it off to exercise the conversion on small networks of the same layout). Returns ``dest``.
    """
    src = Path(path)
    w = read_vggface(src, channel_order)
    if require_standard and not is_standard_vgg16(w.tensors):
        shapes = {k: tuple(v.shape) for k, v in w.tensors.items() if k.endswith("weight")}
        raise WeightsError(f"{src}: not the VGG-16 shapes gsscreen's vgg16 needs: {shapes}")
    out = Path(dest) if dest is not None else vggface_weights_path()
    meta = {
        "source_file": str(src.resolve()),
        "source_size": src.stat().st_size,
        "source_sha256": sha256_file(src),
        "format": w.format,
        "channel_order_in_file": w.channel_order,
        "fc8_dropped": w.info.get("fc8"),
        "tensors": {k: list(v.shape) for k, v in w.tensors.items()},
        "imported_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    save_safetensors(w.tensors, out, meta)
    return out
