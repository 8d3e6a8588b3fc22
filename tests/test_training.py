"""Unit tests of the training side: augmentation, losses, config, feature cache."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gsscreen.training.augment import Augmenter, AugmentParams, apply_params, sample_params
from gsscreen.training.config import (
    AugmentConfig,
    StudyConfig,
    build_config,
    config_diff,
    config_hash,
    preset,
)
from gsscreen.training.data import CacheSpec, FeatureCache, derive_seed
from gsscreen.training.losses import StudyLoss, batch_hard_triplet_loss

# ----------------------------------------------------------------------------------------------- augmentation


def _images(n: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Smooth random images (so bilinear resampling is close to exact for sub-pixel shifts).
    small = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)


def _params(n: int, angle: float = 0.0, side: float = 1.0, flip: float = 0.0,
            frame: torch.Tensor | None = None) -> AugmentParams:
    """Fixed parameters for ``n`` images: rotation (radians), crop side share, mirror, grey bands (n, 4)."""
    z = torch.zeros(n)
    return AugmentParams(z + angle, z + side, z, z, z + flip, torch.ones(n, 3),
                         torch.zeros(n, 4) if frame is None else frame)


def test_identity_params_leave_images_unchanged() -> None:
    x = _images()
    n = len(x)
    assert torch.allclose(apply_params(x, _params(n), AugmentConfig()), x, atol=1e-5)


def test_flip_param_mirrors_and_crop_zooms() -> None:
    x = _images()
    n = len(x)
    flipped = apply_params(x, _params(n, flip=1.0), AugmentConfig())
    assert torch.allclose(flipped, torch.flip(x, dims=[3]), atol=1e-5)
    # A centred half-side crop resized back equals a 2x zoom of the centre.
    zoom = apply_params(x, _params(n, side=0.5), AugmentConfig())
    centre = F.interpolate(x[:, :, 8:24, 8:24], size=(32, 32), mode="bilinear", align_corners=False)
    assert (zoom - centre)[:, :, 2:-2, 2:-2].abs().max() < 0.02


def test_rotation_by_90_degrees_matches_rot90() -> None:
    x = _images(2)
    n = len(x)
    rot = apply_params(x, _params(n, angle=math.pi / 2), AugmentConfig())
    # One of the two quarter turns (the sign convention of image y pointing down decides which).
    best = min((rot - torch.rot90(x, k, dims=(2, 3))).abs().max().item() for k in (1, 3))
    assert best < 1e-4


def test_augmenter_is_seeded_bounded_and_varied() -> None:
    cfg = AugmentConfig(color_jitter=0.2)
    x = _images(8)
    aug = Augmenter(cfg)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert (a - x).abs().mean() > 0.01  # something happened
    p = sample_params(1000, cfg, torch.Generator().manual_seed(0))
    assert p.angle.abs().max() <= math.radians(cfg.rotation_deg) + 1e-6
    assert p.side.min() ** 2 >= cfg.crop_scale[0] - 1e-6 and p.side.max() <= 1
    assert 0.4 < p.flip.mean() < 0.6
    assert (p.tx.abs() <= 1 - p.side + 1e-6).all()
    assert not p.frame.any()  # grey frames are off by default


def test_grey_frames_cover_the_drawn_bands_only() -> None:
    x = _images(6)
    n = len(x)
    bands = torch.tensor([[0.25, 0, 0, 0], [0, 0.25, 0, 0], [0, 0, 0.25, 0], [0, 0, 0, 0.25], [0] * 4, [0.1] * 4])
    cfg = AugmentConfig(frame_p=1.0)
    out = apply_params(x, _params(n, frame=bands), cfg)
    grey = (out == 0.5).all(dim=1)  # (B, H, W): all three channels at the fill value
    assert grey[0, :8].all() and not grey[0, 8:].any()  # top quarter of 32 rows
    assert grey[1, 24:].all() and not grey[1, :24].any()
    assert grey[2, :, :8].all() and not grey[2, :, 8:].any()
    assert grey[3, :, 24:].all() and not grey[3, :, :24].any()
    assert not grey[4].any() and torch.allclose(out[4], x[4], atol=1e-5)
    assert grey[5].float().mean() == pytest.approx(1 - (1 - 2 * 0.1) ** 2, abs=0.1)
    # Drawn: about frame_p of the views get bands, each side within [0, frame_max].
    p = sample_params(2000, AugmentConfig(frame_p=0.5, frame_max=0.2), torch.Generator().manual_seed(1))
    assert 0.45 < p.frame.any(dim=1).float().mean() < 0.55 and p.frame.max() <= 0.2
    # Turning frames on leaves every other parameter's draws as they were.
    q = sample_params(2000, AugmentConfig(), torch.Generator().manual_seed(1))
    assert torch.equal(p.angle, q.angle) and torch.equal(p.flip, q.flip)


def test_per_item_augmentation_does_not_depend_on_the_batch() -> None:
    aug = Augmenter(AugmentConfig())
    x = _images(4)
    whole = aug.per_item(x, [11, 12, 13, 14])
    parts = torch.cat([aug.per_item(x[:2], [11, 12]), aug.per_item(x[2:], [13, 14])])
    assert torch.allclose(whole, parts, atol=1e-6)
    assert torch.equal(Augmenter(AugmentConfig(enabled=False))(x, torch.Generator()), x)


# ----------------------------------------------------------------------------------------------- losses


def _brute_force_triplet(emb: torch.Tensor, y: torch.Tensor, margin: float) -> float:
    e = F.normalize(emb, dim=1)
    losses = []
    for a in range(len(y)):
        pos = [float((e[a] - e[p]).norm()) for p in range(len(y)) if p != a and y[p] == y[a]]
        neg = [float((e[a] - e[n]).norm()) for n in range(len(y)) if y[n] != y[a]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("seed", range(5))
def test_batch_hard_triplet_matches_brute_force(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = 5 + seed * 3
    emb = torch.randn(n, 8, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    y[0] = 9  # an anchor without positives (skipped)
    for margin in (0.0, 0.3, 1.0):
        got = float(batch_hard_triplet_loss(emb, y, margin))
        assert got == pytest.approx(_brute_force_triplet(emb, y, margin), abs=1e-5)


def test_triplet_edge_cases_and_gradients() -> None:
    emb = torch.randn(4, 6, requires_grad=True)
    zero = batch_hard_triplet_loss(emb, torch.tensor([1, 1, 1, 1]), 0.3)  # no negatives anywhere
    assert zero.detach().item() == 0.0
    zero.backward()  # still differentiable
    emb2 = torch.randn(6, 6, requires_grad=True)
    loss = batch_hard_triplet_loss(emb2, torch.tensor([0, 0, 0, 1, 1, 1]), 0.5)
    loss.backward()
    assert torch.isfinite(emb2.grad).all() and emb2.grad.abs().sum() > 0


def test_study_loss_weighting() -> None:
    g = torch.Generator().manual_seed(0)
    logits, emb = torch.randn(8, 2, generator=g), torch.randn(8, 4, generator=g)
    y = torch.tensor([0, 1] * 4)
    ce = F.cross_entropy(logits, y)
    tri = batch_hard_triplet_loss(emb, y, 0.3)
    total0, parts0 = StudyLoss(0.0)(logits, emb, y)
    total2, parts2 = StudyLoss(2.0, 0.3)(logits, emb, y)
    assert float(total0) == pytest.approx(float(ce)) and parts0["triplet"] == 0.0
    assert float(total2) == pytest.approx(float(ce + 2 * tri)) and parts2["triplet"] == pytest.approx(float(tri))


# ----------------------------------------------------------------------------------------------- config


def test_presets_validate_and_differ() -> None:
    cfgs = {name: preset(name).validate() for name in ("default", "quick", "paper")}
    assert cfgs["default"].backbone == "facenet" and cfgs["default"].train.finetune.unfreeze_stages == 0
    assert cfgs["default"].train.optim == preset("default").train.optim
    assert cfgs["paper"].backbone == "vgg16" and cfgs["paper"].train.finetune.unfreeze_stages < 0
    assert cfgs["quick"].backbone == "tiny"
    assert cfgs["default"].folds == 5 and cfgs["default"].train.dropout == 0.5
    assert len({config_hash(c) for c in cfgs.values()}) == 3
    with pytest.raises(KeyError, match="unknown preset"):
        preset("fast")


def test_build_config_layers_file_and_overrides(tmp_path) -> None:
    f = tmp_path / "study.toml"
    f.write_text('seed = 7\n[train]\nepochs = 4\n[train.optim]\nlr = 0.01\n[augment]\nrotation_deg = 5\n')
    cfg = build_config("quick", f, {"folds": 4, "backbone": None})
    assert (cfg.seed, cfg.train.epochs, cfg.train.optim.lr, cfg.folds) == (7, 4, 0.01, 4)
    assert cfg.backbone == "tiny" and cfg.augment.rotation_deg == 5.0 and cfg.train.n_views == 2
    f.write_text("[train]\nepoch = 4\n")
    with pytest.raises(ValueError, match="epoch"):
        build_config("quick", f)
    with pytest.raises(ValueError, match="select_metric"):
        build_config("quick", None, {"train": {"select_metric": "accuracy"}})
    with pytest.raises(ValueError, match="frame_p"):
        build_config("quick", None, {"augment": {"frame_p": 1.5}})
    with pytest.raises(ValueError, match="frame_max"):
        build_config("quick", None, {"augment": {"frame_max": 0.5}})
    diff = config_diff({"a": 1, "t": {"b": 2}}, {"a": 1, "t": {"b": 3}})
    assert diff == ["t.b: 2 -> 3"]
    assert StudyConfig().train.optim.lr > 0


# ----------------------------------------------------------------------------------------------- feature cache


def _spec(keys: list[str], n_views: int = 2) -> CacheSpec:
    return CacheSpec("tiny", False, 3, 32, n_views, True, 0, {}, (4, 8, 8), "k")


def test_feature_cache_builds_resumes_and_serves(tmp_path) -> None:
    torch.manual_seed(0)
    prefix = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(4))
    crops = (torch.rand(5, 3, 32, 32) * 255).to(torch.uint8)
    keys = [f"k{i}" for i in range(5)]
    cache = FeatureCache(tmp_path / "c", _spec(keys), keys)
    assert not cache.complete
    cache.build(prefix, crops, AugmentConfig(), torch.device("cpu"), batch_size=2)
    assert cache.complete
    with torch.no_grad():
        want = prefix(crops.float() / 255)
        want_flip = prefix(torch.flip(crops.float() / 255, dims=[3]))
    plain, flip = cache.eval_batch(np.arange(5))
    assert torch.allclose(plain, want, atol=2e-3) and torch.allclose(flip, want_flip, atol=2e-3)
    views = cache.train_batch(np.arange(5), np.array([1, 2, 1, 2, 0]))
    assert not torch.allclose(views[0], plain[0], atol=1e-3)  # augmented views differ from the plain crop
    assert torch.allclose(views[4], plain[4])

    # Reopening with the same spec keeps the rows; a half-done cache only computes the missing rows.
    again = FeatureCache(tmp_path / "c", _spec(keys), keys)
    assert again.complete
    again.done[3:] = False
    saved = np.array(again.views[3:])
    again.views[3:] = 0
    again.build(prefix, crops, AugmentConfig(), torch.device("cpu"), batch_size=2)
    assert np.array_equal(np.array(again.views[3:]), saved)  # per-photo seeds: same views as the first build
    # A different spec (e.g. other augmentation) rebuilds from scratch.
    other = FeatureCache(tmp_path / "c", _spec(keys, n_views=1), keys)
    assert not other.complete


def test_derive_seed_is_stable_and_distinct() -> None:
    seeds = {derive_seed(0, "fold", f, "epoch", e) for f, e in itertools.product(range(5), range(20))}
    assert len(seeds) == 100 and derive_seed(1, "x") == derive_seed(1, "x") and derive_seed(1, "x") < 2**63


def test_threshold_methods_are_validated_like_choose_threshold() -> None:
    from gsscreen.evaluation.metrics import choose_threshold
    from gsscreen.training.config import build_config

    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.8, 0.9])
    for method in ("youden", "f1", "accuracy", "specificity@0.98", "sensitivity@0.9", "fixed_0.3"):
        cfg = build_config("default", None, {"threshold_method": method})
        assert 0.0 <= choose_threshold(y, p, cfg.threshold_method) <= 1.0
    for bad in ("bogus", "specificity@1.5", "youden2"):
        with pytest.raises(ValueError, match="threshold_method"):
            build_config("default", None, {"threshold_method": bad})
