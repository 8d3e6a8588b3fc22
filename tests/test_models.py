"""Registry, the paper's VGG-16 (shapes, parameter count, freezing by stage), the conv head, safe weight loading
and `gsscreen weights list`."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gsscreen.models import DEFAULT_BACKBONE, create_model, get_spec, list_backbones
from gsscreen.models.heads import ConvHead


def test_registry_lists_backbones_with_complete_specs():
    names = list_backbones()
    assert {"tiny", "vgg16", "facenet"} <= set(names)
    assert DEFAULT_BACKBONE == "facenet"
    for name in names:
        spec = get_spec(name)
        assert spec.name == name and spec.input_size > 0 and spec.embedding_dim > 0
        assert len(spec.mean) == 3 and all(s > 0 for s in spec.std)
        assert spec.weight_source and spec.description and spec.cam_layer.startswith("body.")
    with pytest.raises(KeyError, match=r"registered: .*vgg16"):
        get_spec("vgg19")


def test_vgg16_normalisation_is_vgg_face_mean_on_0_255():
    from gsscreen.models.registry import Normalize

    spec = get_spec("vgg16")
    x = torch.full((1, 3, 4, 4), 0.5)
    # VGG-Face (vgg_face_dag) takes RGB on 0–255 minus (129.186, 104.762, 93.594), std 1
    expected = torch.tensor([127.5 - 129.186279296875, 127.5 - 104.76238250732422, 127.5 - 93.59396362304688])
    torch.testing.assert_close(Normalize(spec.mean, spec.std)(x)[0, :, 0, 0], expected, rtol=0, atol=1e-4)
    assert spec.input_size == 224 and spec.embedding_dim == 4096


def _vgg16_param_count(num_classes: int) -> int:
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    conv_w, c = 0, 3
    for w in widths:
        conv_w += 9 * c * w
        c = w
    conv_b = sum(widths)
    assert conv_w + conv_b == 14_714_688  # the classic VGG-16 conv part (weights + biases, no BN)
    body = conv_w + 2 * conv_b  # convs have no bias; each BN has weight + bias
    head = 512 * 4096 * 49 + 2 * 4096 + 4096 * 4096 + 2 * 4096 + 4096 * num_classes + num_classes
    return body + head


def test_vgg16_shapes_parameters_and_stage_freezing(caplog):
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING):
        model = create_model("vgg16", pretrained=True)  # nothing imported in the test cache -> random + warning
    assert not model.pretrained_loaded
    assert "import-vggface" in caplog.text and "RANDOM" in caplog.text
    assert sum(p.numel() for p in model.parameters()) == _vgg16_param_count(2) == 134_281_154
    # 13 convs 3×3, each followed by BN and ReLU; one max-pool per group
    convs = [m for m in model.body.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.body.modules()) == 13
    assert len(model.body) == 6  # Normalize + 5 groups

    model.eval()
    x = torch.rand(1, 3, 224, 224)
    shapes, outs = [], []
    with torch.no_grad():
        h = x
        for stage in model.body:
            h = stage(h)
            shapes.append(tuple(h.shape[1:]))
            outs.append(h)
        logits, emb = model.head(h)
        full = model(x)
        # what the training code does: cache body[:4]'s output, run only the rest
        from_cache = model.head(model.body[4:](outs[3]))[0]
    assert shapes[1:] == [(64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)]
    assert logits.shape == (1, 2) and emb.shape == (1, 4096)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(1))
    torch.testing.assert_close(full, logits)  # head(body(x)) is the whole network
    torch.testing.assert_close(from_cache, logits)
    # cam layer: conv5_3's ReLU, 14×14
    cam = model.get_submodule(get_spec("vgg16").cam_layer)
    assert isinstance(cam, nn.ReLU)


def test_identity_batchnorm_is_exact():
    from gsscreen.models.backbones.vgg16 import set_identity_batchnorm

    bn = nn.BatchNorm2d(8).eval()
    bias = torch.randn(8)
    set_identity_batchnorm(bn, bias)
    x = torch.randn(3, 8, 5, 5) * 100
    torch.testing.assert_close(bn(x), x + bias.view(1, 8, 1, 1), rtol=0, atol=1e-4)
    # with running_var = 1 the output would be scaled by 1/sqrt(1 + eps): measurably off at these magnitudes
    bn.running_var.fill_(1.0)
    assert not torch.allclose(bn(x), x + bias.view(1, 8, 1, 1), rtol=0, atol=1e-4)


def test_conv_head_embedding_ignores_dropout_but_logits_use_it():
    torch.manual_seed(0)
    head = ConvHead(16, [(32, 1)], num_classes=2, dropout=0.5).train()
    feats = torch.randn(8, 16, 1, 1)
    (l1, e1), (l2, e2) = head(feats), head(feats)
    torch.testing.assert_close(e1, e2)  # the embedding is the pre-dropout activation
    assert not torch.allclose(l1, l2)  # the classifier still sees dropout in training
    head.eval()
    la, ea = head(feats)
    lb, _ = head(feats)
    torch.testing.assert_close(la, lb)
    assert ea.shape == (8, 32) and la.shape == (8, 2)


def test_tiny_model_end_to_end_backward():
    model = create_model("tiny", num_classes=2)
    x = torch.rand(4, 3, 64, 64)
    logits, emb = model.forward_both(x)
    (logits.sum() + emb.sum()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    probs = model.predict_proba(x)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(4))


def test_safe_loader_reads_safetensors_and_unwraps_checkpoints(tmp_path):
    from gsscreen.models.weights_io import WeightsError, load_state_file, open_safetensors, save_safetensors

    t = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    save_safetensors(t, tmp_path / "w.safetensors", {"note": "x"})
    got = load_state_file(tmp_path / "w.safetensors")
    torch.testing.assert_close(got["a"], t["a"])
    assert (tmp_path / "w.json").read_text().strip().startswith("{")
    with open_safetensors(tmp_path / "w.safetensors") as lazy:
        assert sorted(lazy) == ["a", "b"] and len(lazy) == 2
        torch.testing.assert_close(lazy["b"], t["b"])
    torch.save({"epoch": 3, "state_dict": t}, tmp_path / "ckpt.pth")
    assert set(load_state_file(tmp_path / "ckpt.pth")) == {"a", "b"}
    torch.save({"a": t["a"], "note": "text"}, tmp_path / "mixed.pth")
    with pytest.raises(WeightsError, match=r"mixed\.pth.*non-tensor entries: note"):
        load_state_file(tmp_path / "mixed.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match=r"bad\.safetensors"):
        load_state_file(tmp_path / "bad.safetensors")
    torch.save(nn.Linear(2, 2), tmp_path / "model.pth")
    with pytest.raises(WeightsError, match=r"model\.pth: refused.*torch\.save\(m\.state_dict\(\)"):
        load_state_file(tmp_path / "model.pth")


def test_cli_weights_list():
    from gsscreen.cli import app

    res = CliRunner().invoke(app, ["weights", "list"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:4] == ["name", "input", "weights", "source"]
    rows = {ln.split()[0]: ln for ln in lines[1:] if ln and not ln.startswith(" ")}
    assert "facenet" in rows and "(default)" in rows["facenet"] and "160x160" in rows["facenet"]
    assert "224x224" in rows["vgg16"] and rows["vgg16"].split()[2] == "no"  # nothing imported in the test cache
    assert "gsscreen weights import-vggface FILE" in res.output
