"""VGG-Face import: files of the three public layouts, filled with random values, must give a network whose fc7
features equal a reference forward computed straight from the file's arrays (written here with plain functional
ops / numpy, independently of the model code).

Most tests use VGG-16's exact layer layout at reduced widths (the same code paths; a full-size file is 550 MB);
one test imports a full-size ``vgg_face_dag.pth`` and loads it through ``create_model("vgg16")``.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

# vgg_face_dag's meta.normalization.averageImage (RGB, 0–255); the Keras releases use the same values in BGR order.
MEAN_RGB = np.array([129.186279296875, 104.76238250732422, 93.59396362304688], dtype=np.float32)
SMALL_WIDTHS = ((4, 4), (8, 8), (8, 8, 8), (12, 12, 12), (16, 16, 16))
SMALL_FC = 24
N_IDS = 10


def _normal(rng: np.random.Generator, std: float, shape, dtype) -> np.ndarray:
    a = rng.standard_normal(shape, dtype=np.float32)  # float32 draws: 138 M values in ~1 s
    a *= std
    return a.astype(dtype, copy=False)


def _random_layers(widths, fc: int, n_ids: int, seed: int, dtype=np.float32):
    """He-scaled random weights in PyTorch layout: [(name, W (out, in, kh, kw) or (out, in), b)]."""
    rng = np.random.default_rng(seed)
    names = [f"conv{g + 1}_{i + 1}" for g, ws in enumerate(widths) for i in range(len(ws))]
    layers, c = [], 3
    for name, w in zip(names, [w for g in widths for w in g], strict=True):
        layers.append((name, _normal(rng, np.sqrt(2 / (9 * c)), (w, c, 3, 3), dtype), _normal(rng, 0.05, w, dtype)))
        c = w
    for name, n_in, n_out in (("fc6", c * 49, fc), ("fc7", fc, fc), ("fc8", fc, n_ids)):
        layers.append((name, _normal(rng, np.sqrt(2 / n_in), (n_out, n_in), dtype), _normal(rng, 0.05, n_out, dtype)))
    return layers


def _images(n: int = 2, size: int = 224, seed: int = 1) -> np.ndarray:
    """(n, size, size, 3) float RGB in 0–1: smooth random images (more like photos than white noise)."""
    rng = np.random.default_rng(seed)
    small = rng.random((n, 3, 14, 14), dtype=np.float32)
    return F.interpolate(torch.from_numpy(small), size=(size, size), mode="bilinear").permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------------------------------------------------------
# reference forwards, from the arrays as they are stored in each format


def _ref_torch_layout(layers, x_rgb01: np.ndarray, groups=SMALL_WIDTHS, dtype=torch.float64) -> np.ndarray:
    """vgg_face_dag: NCHW, RGB minus the mean on 0–255, fc6 reads pool5 flattened as (C, H, W)."""
    x = torch.from_numpy(x_rgb01 * 255 - MEAN_RGB).permute(0, 3, 1, 2).to(dtype)
    it = iter(layers)
    for g in groups:
        for _ in g:
            _, w, b = next(it)
            x = F.relu(F.conv2d(x, torch.from_numpy(w).to(dtype), torch.from_numpy(b).to(dtype), padding=1))
        x = F.max_pool2d(x, 2)
    x = x.reshape(x.shape[0], -1)
    for _ in range(2):
        _, w, b = next(it)
        x = F.relu(x @ torch.from_numpy(w).to(dtype).T + torch.from_numpy(b).to(dtype))
    return x.double().numpy()


def _conv_hwc(x: np.ndarray, k: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    """Channels-last cross-correlation: x (N, H, W, C), k (kh, kw, C, O) -> (N, H', W', O)."""
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = k.shape[:2]
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # (N, H', W', C, kh, kw)
    return np.einsum("nhwcij,ijco->nhwo", win, k, optimize=True) + b


def _pool_hwc(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _ref_keras(kernels, x_rgb01: np.ndarray, fc_as_conv: bool, bgr: bool, groups=SMALL_WIDTHS) -> np.ndarray:
    """Keras channels-last: conv kernels (kh, kw, in, out); fc6 either Dense over a (H, W, C) flatten or a 7×7 conv."""
    x = (x_rgb01 * 255 - MEAN_RGB).astype(np.float64)
    if bgr:
        x = x[..., ::-1]
    it = iter(kernels)
    for g in groups:
        for _ in g:
            k, b = next(it)
            x = np.maximum(_conv_hwc(x, k.astype(np.float64), b, 1), 0)
        x = _pool_hwc(x)
    (k6, b6), (k7, b7) = next(it), next(it)
    if fc_as_conv:
        x = np.maximum(_conv_hwc(x, k6.astype(np.float64), b6, 0), 0)
        x = np.maximum(_conv_hwc(x, k7.astype(np.float64), b7, 0), 0)
        return x.reshape(x.shape[0], -1)
    x = x.reshape(x.shape[0], -1)
    x = np.maximum(x @ k6 + b6, 0)
    return np.maximum(x @ k7 + b7, 0)


# ---------------------------------------------------------------------------------------------------------------
# writers of the three layouts


def _write_keras2(path, names_weights, extra_layers=()):
    """Keras 2 ``save_weights`` layout: root attr layer_names; per layer attr weight_names + nested datasets."""
    import h5py

    with h5py.File(path, "w") as f:
        names = []
        for name, arrays in names_weights:
            g = f.create_group(name)
            wn = [f"{name}/{suffix}".encode() for suffix in ("kernel:0", "bias:0")[: len(arrays)]]
            g.attrs["weight_names"] = np.array(wn)
            for n, a in zip(wn, arrays, strict=True):
                g.create_dataset(n.decode(), data=a)
            names.append(name)
        for name in extra_layers:  # layers without weights (padding, pooling, dropout, ...)
            g = f.create_group(name)
            g.attrs["weight_names"] = np.array([], dtype="S1")
            names.append(name)
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"


def _keras_vggface_kernels(layers, bgr: bool):
    """rcmalli layout from PyTorch-layout layers: conv (kh, kw, in, out), Dense (in, out), fc6 rows in (H, W, C)."""
    out = []
    for name, w, b in layers:
        if w.ndim == 4:
            k = w.transpose(2, 3, 1, 0)
            if name == "conv1_1" and bgr:
                k = k[:, :, ::-1, :]
            out.append((name, k.copy(), b))
        elif name == "fc6":
            c = w.shape[1] // 49
            k = w.reshape(w.shape[0], c, 7, 7).transpose(2, 3, 1, 0).reshape(49 * c, w.shape[0])  # (h, w, c) rows
            out.append((name, k.copy(), b))
        else:
            out.append((name, w.T.copy(), b))
    return out


def _deepface_kernels(layers):
    """deepface layout: every layer a conv kernel (kh, kw, in, out); fc6 a 7×7 conv, fc7 / fc8 1×1 convs."""
    out = []
    for name, w, b in layers:
        if name == "fc6":
            w = w.reshape(w.shape[0], -1, 7, 7)  # PyTorch flatten order (C, H, W) -> the conv's (out, C, kh, kw)
        elif w.ndim == 2:
            w = w[:, :, None, None]
        out.append((w.transpose(2, 3, 1, 0).copy(), b))
    return out


def _small_model(tensors):
    from gsscreen.models.backbones.vgg16 import VGG16, vgg16_parts
    from gsscreen.models.registry import GSNet

    return GSNet(VGG16, vgg16_parts(tensors, widths=SMALL_WIDTHS, fc_dim=SMALL_FC)).eval()


def _fc7(model, x_rgb01: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(x_rgb01)).permute(0, 3, 1, 2)
    with torch.no_grad():
        return model.head.hidden(model.body(x)).flatten(1).double().numpy()


def _assert_close(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape
    assert np.abs(ref).max() > 0.1, "reference activations collapsed: the test would prove nothing"
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


# ---------------------------------------------------------------------------------------------------------------


def test_pth_layout_matches_reference(tmp_path):
    from gsscreen.models.vggface import import_vggface
    from gsscreen.models.weights_io import load_state_file

    layers = _random_layers(SMALL_WIDTHS, SMALL_FC, N_IDS, seed=0)
    sd = {f"{n}.{p}": torch.from_numpy(a) for n, w, b in layers for p, a in (("weight", w), ("bias", b))}
    src = tmp_path / "vgg_face_dag.pth"
    torch.save(sd, src)
    dest = import_vggface(src, tmp_path / "out" / "vggface.safetensors", require_standard=False)
    meta = json.loads(dest.with_suffix(".json").read_text())
    assert meta["format"] == "pth" and meta["channel_order_in_file"] == "rgb"
    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["fc8_dropped"] == [N_IDS, SMALL_FC]
    tensors = load_state_file(dest)
    assert "fc8.weight" not in tensors and tensors["fc6.weight"].shape == (SMALL_FC, 16, 7, 7)
    x = _images()
    _assert_close(_fc7(_small_model(tensors), x), _ref_torch_layout(layers, x))


def test_keras_vggface_layout_bgr_and_hwc_flatten(tmp_path):
    from gsscreen.models.vggface import read_vggface

    layers = _random_layers(SMALL_WIDTHS, SMALL_FC, N_IDS, seed=2)
    kernels = _keras_vggface_kernels(layers, bgr=True)
    src = tmp_path / "rcmalli_vggface_tf_vgg16.h5"
    extra = ["input_1", "pool1", "flatten", "fc6/relu", "fc7/relu", "fc8/softmax"]
    _write_keras2(src, [(n, [k, b]) for n, k, b in kernels], extra)
    w = read_vggface(src)
    assert w.format == "keras-vggface" and w.channel_order == "bgr"
    x = _images(seed=3)
    ref = _ref_keras([(k, b) for _, k, b in kernels], x, fc_as_conv=False, bgr=True)
    _assert_close(_fc7(_small_model(w.tensors), x), ref)
    # a wrong channel order gives different features: the flip really matters
    w_rgb = read_vggface(src, channel_order="rgb")
    assert not np.allclose(_fc7(_small_model(w_rgb.tensors), x), ref, rtol=1e-3)


def test_keras_model_save_layout_with_model_weights_group(tmp_path):
    """A full ``model.save`` file keeps the weights under ``model_weights``."""
    import h5py

    from gsscreen.models.vggface import read_vggface

    layers = _random_layers(SMALL_WIDTHS, SMALL_FC, N_IDS, seed=4)
    kernels = _keras_vggface_kernels(layers, bgr=True)
    flat = tmp_path / "flat.h5"
    _write_keras2(flat, [(n, [k, b]) for n, k, b in kernels])
    src = tmp_path / "model.h5"
    with h5py.File(flat, "r") as fi, h5py.File(src, "w") as fo:
        g = fo.create_group("model_weights")
        for k, v in fi.attrs.items():
            g.attrs[k] = v
        for name in fi:
            fi.copy(name, g)
        fo.attrs["model_config"] = b"{}"
    x = _images(seed=5)
    ref = _ref_keras([(k, b) for _, k, b in kernels], x, fc_as_conv=False, bgr=True)
    _assert_close(_fc7(_small_model(read_vggface(src).tensors), x), ref)


def test_deepface_layout_maps_by_order_and_shape(tmp_path):
    from gsscreen.models.vggface import read_vggface

    layers = _random_layers(SMALL_WIDTHS, SMALL_FC, N_IDS, seed=6)
    kernels = _deepface_kernels(layers)
    src = tmp_path / "vgg_face_weights.h5"
    # generic Sequential names; note conv2d_10 sorts before conv2d_2 alphabetically: order must come from the file
    named = [(f"conv2d_{i + 1}", [k, b]) for i, (k, b) in enumerate(kernels)]
    _write_keras2(src, named, ["zero_padding2d_1", "max_pooling2d_1", "dropout_1", "flatten_1", "activation_1"])
    w = read_vggface(src)
    assert w.format == "deepface" and w.channel_order == "rgb"
    x = _images(seed=7)
    _assert_close(_fc7(_small_model(w.tensors), x), _ref_keras(kernels, x, fc_as_conv=True, bgr=False))


def test_keras3_weights_h5_layout(tmp_path):
    import h5py

    from gsscreen.models.vggface import read_vggface

    layers = _random_layers(SMALL_WIDTHS, SMALL_FC, N_IDS, seed=8)
    kernels = _deepface_kernels(layers)
    src = tmp_path / "vgg_face.weights.h5"
    with h5py.File(src, "w") as f:
        for i, (k, b) in enumerate(kernels):
            g = f.create_group(f"layers/{'conv2d' if i == 0 else f'conv2d_{i}'}/vars")
            g.create_dataset("0", data=k)
            g.create_dataset("1", data=b)
        f.create_group("layers/zero_padding2d/vars")
    x = _images(seed=9)
    _assert_close(_fc7(_small_model(read_vggface(src).tensors), x), _ref_keras(kernels, x, True, False))


def test_refuses_non_vggface_files_with_clear_messages(tmp_path):
    from gsscreen.models.vggface import import_vggface, read_vggface
    from gsscreen.models.weights_io import WeightsError

    other = tmp_path / "resnet.pth"
    torch.save({"layer1.weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsError, match=r"resnet\.pth.*missing conv1_1\.weight"):
        read_vggface(other)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not a weight file at all")
    with pytest.raises(WeightsError, match=r"junk\.h5"):
        read_vggface(junk)
    # a consistent but small network is refused by the real import (it could not load into vgg16)
    layers = _random_layers(SMALL_WIDTHS, SMALL_FC, N_IDS, seed=0)
    small = tmp_path / "small.pth"
    torch.save({f"{n}.{p}": torch.from_numpy(a) for n, w, b in layers for p, a in (("weight", w), ("bias", b))}, small)
    with pytest.raises(WeightsError, match="not the VGG-16 shapes"):
        import_vggface(small, tmp_path / "x.safetensors")
    with pytest.raises(FileNotFoundError):
        read_vggface(tmp_path / "absent.pth")


class _Payload:
    """Unpickling this object would create a folder: the proof that code from the file ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_objects_are_refused_and_never_executed(tmp_path):
    from gsscreen.models.vggface import import_vggface
    from gsscreen.models.weights_io import WeightsError, load_state_file

    whole = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), whole)
    with pytest.raises(WeightsError, match=r"whole_model\.pth.*state_dict\(\)"):
        import_vggface(whole, tmp_path / "x.safetensors")

    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pth"
    torch.save({"conv1_1.weight": _Payload(str(marker))}, evil)
    with pytest.raises(WeightsError, match="refused"):
        load_state_file(evil)
    assert not marker.exists()


def test_cli_import_vggface_reports_errors(tmp_path):
    from gsscreen.cli import app

    bad = tmp_path / "whole.pth"
    torch.save(torch.nn.Linear(2, 2), bad)
    res = CliRunner().invoke(app, ["weights", "import-vggface", str(bad)])
    assert res.exit_code == 2
    assert "state_dict" in res.output and "whole.pth" in res.output


@pytest.mark.slow
def test_full_size_vgg_face_dag_loads_into_create_model(tmp_path, caplog):
    """Real shapes (138 M parameters, stored as float16 to halve the file): import through the CLI, then
    ``create_model('vgg16')`` must reproduce the reference fc7 features and the network's other outputs."""
    from gsscreen.cli import app
    from gsscreen.models import create_model
    from gsscreen.models.backbones.vgg16 import VGG16_FC, VGG16_WIDTHS, vggface_weights_path

    layers = _random_layers(VGG16_WIDTHS, VGG16_FC, 2622, seed=11, dtype=np.float16)
    src = tmp_path / "vgg_face_dag.pth"
    torch.save({f"{n}.{p}": torch.from_numpy(a) for n, w, b in layers for p, a in (("weight", w), ("bias", b))}, src)
    assert not vggface_weights_path().exists()
    res = CliRunner().invoke(app, ["weights", "import-vggface", str(src)])
    assert res.exit_code == 0, res.output
    assert vggface_weights_path().is_file()
    model = create_model("vgg16", pretrained=True).eval()
    assert model.pretrained_loaded
    x = _images(n=1, seed=12)
    # float32 reference (float64 would triple the time of a 15-GMAC forward); the tolerance still holds
    ref = _ref_torch_layout([(n, w.astype(np.float32), b.astype(np.float32)) for n, w, b in layers], x,
                            groups=VGG16_WIDTHS, dtype=torch.float32)
    _assert_close(_fc7(model, x), ref)
    with torch.no_grad():
        logits, emb = model.forward_both(torch.from_numpy(x).permute(0, 3, 1, 2))
    assert logits.shape == (1, 2) and emb.shape == (1, VGG16_FC)
    np.testing.assert_allclose(emb.numpy()[0], ref[0] / np.linalg.norm(ref[0]), rtol=1e-4, atol=1e-6)
