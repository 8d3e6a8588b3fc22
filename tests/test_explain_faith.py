"""CAM specs and ensemble maps (gsscreen.explain_cam), and their faithfulness (gsscreen.explain_faith): the model
randomisation sanity check on a small trained model, deletion/insertion curves on a model with a known answer."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from planted_blob import train_on_blobs
from torch import nn

from gsscreen.explain import compute_cams
from gsscreen.explain_cam import (
    CamSpec,
    cam_for_pack,
    default_cam,
    ensemble_cams,
    model_cams,
    no_grad_stages,
)
from gsscreen.explain_faith import curve_auc, deletion_insertion, map_rank_correlation, random_maps, randomised_copy
from gsscreen.models import create_model


class BodyHead(nn.Module):
    """A small GSNet-shaped CNN (``body`` then ``head``) for 32×32 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
            nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@pytest.fixture(scope="module")
def trained_blob_model() -> tuple[BodyHead, torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only fight each other on a loaded machine
    try:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        model = BodyHead()
        pos = train_on_blobs(model, rng)
        yield model.eval(), pos
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------ CAM specs


def test_cam_spec_parse_roundtrip_and_errors() -> None:
    s = CamSpec.parse("layercam:body.2, body.4")
    assert s == CamSpec("layercam", ("body.2", "body.4"))
    assert CamSpec.from_dict(s.to_dict()) == s
    assert CamSpec.from_dict({"method": "gradcam", "layers": "body.4"}).layers == ("body.4",)
    assert s.label() == "layercam:body.2,body.4"
    with pytest.raises(ValueError, match="unknown CAM method"):
        CamSpec("smoothgrad", ("body.1",))
    with pytest.raises(ValueError, match="at least one layer"):
        CamSpec("gradcam", ())
    with pytest.raises(ValueError, match="METHOD:LAYER"):
        CamSpec.parse("body.4")


def test_defaults_and_pack_fallback() -> None:
    assert default_cam("facenet") == CamSpec("hirescam", ("body.2", "body.4"))
    assert default_cam("vgg16").layers == ("body.5.8",)  # conv5_3, 14×14, as the paper
    tiny = create_model("tiny", pretrained=False)
    assert default_cam("tiny") == CamSpec("gradcam", (tiny.spec.cam_layer,))
    # A pack without a "cam" entry (made before packs recorded one) gets its backbone's measured default; one with
    # it uses what it recorded.
    assert cam_for_pack({}, tiny) == default_cam("tiny")
    assert cam_for_pack({}, create_model("facenet", pretrained=False)) == CamSpec("hirescam", ("body.2", "body.4"))
    assert cam_for_pack({"cam": {"method": "layercam", "layers": ["body.2"]}}, tiny).method == "layercam"


# ------------------------------------------------------------------------------------------------ ensemble maps


def test_gradcam_equals_compute_cams() -> None:
    torch.manual_seed(0)
    m = create_model("tiny", pretrained=False).eval()
    x = torch.rand(3, 3, 64, 64)
    ref = compute_cams(m, x, layer="body.3")
    p, maps, flat = ensemble_cams([m], x, CamSpec("gradcam", ("body.3",)))
    np.testing.assert_allclose(maps[0], ref.maps, atol=1e-6)
    np.testing.assert_allclose(p[:, 0], ref.probs[:, 1], atol=1e-6)
    assert (flat[0] == ref.flat).all()


def _two_folds(shared: int, seed: int) -> tuple[nn.Module, nn.Module]:
    """Two tiny fold models that differ in their weights but share their first ``shared`` body stages (the module
    objects, as a model pack does); the torch seed is set to ``seed`` first."""
    torch.manual_seed(seed)
    a = create_model("tiny", pretrained=False).eval()
    b = copy.deepcopy(a)
    for q in b.parameters():
        q.data.add_(torch.randn_like(q) * 0.3)
    for i in range(shared):
        b.body[i] = a.body[i]
    return a, b


@pytest.mark.parametrize("layers,shared", [(("body.2", "body.3"), 5), (("body.2", "body.4"), 3), (("body.1",), 0)])
def test_shared_body_maps_equal_each_fold_alone(layers: tuple[str, ...], shared: int) -> None:
    """Folds that share their first stages (a pack's frozen body) get the same maps as each model run alone, with
    the CAM layers before, across and after the shared part."""
    a, b = _two_folds(shared, seed=0)
    x = torch.rand(4, 3, 64, 64)
    spec = CamSpec("layercam", layers)
    p, maps, _ = ensemble_cams([a, b], x, spec, shared_upto=shared)
    for k, m in enumerate((a, b)):
        pk, mk, _ = ensemble_cams([m], x, spec)
        np.testing.assert_allclose(maps[k], mk[0], atol=1e-5)
        np.testing.assert_allclose(p[:, k], pk[:, 0], atol=1e-6)
    assert all(q.grad is None for q in a.parameters())


def _summed_logit_map(models: list[nn.Module], x: torch.Tensor, layers: tuple[str, ...]) -> np.ndarray:
    """Reference HiResCAM of the sum of the models' GS logits, computed the long way: each model run alone,
    d(sum of logits)/d(activation) times the activation summed over channels and over the models (a shared layer
    is one tensor seen by every model, so its terms add up the same way), ReLU, upsampled, each layer scaled to
    0–1, the layers averaged and scaled again."""
    import torch.nn.functional as F

    from gsscreen.explain import normalise_cams

    models = [copy.deepcopy(m) for m in models]  # unshared copies: one hook per model sees that model's pass only
    acts: dict[tuple[int, str], torch.Tensor] = {}

    def keep(k: int, n: str):
        def hook(_m: nn.Module, _a: object, out: torch.Tensor) -> torch.Tensor:
            acts[(k, n)] = out
            return out.clone()  # the in-place ReLU after the layer must not overwrite it

        return hook

    handles = [m.get_submodule(n).register_forward_hook(keep(k, n)) for k, m in enumerate(models) for n in layers]
    try:
        with torch.enable_grad():
            score = sum(m(x)[:, 1].sum() for m in models)
            keys = list(acts)
            grads = dict(zip(keys, torch.autograd.grad(score, [acts[k] for k in keys]), strict=True))
    finally:
        for h in handles:
            h.remove()
    per_layer = []
    for n in layers:
        signed = sum((grads[(k, n)] * acts[(k, n)]).sum(dim=1, keepdim=True) for k in range(len(models)))
        up = F.interpolate(torch.relu(signed).detach(), size=x.shape[2:], mode="bilinear", align_corners=False)
        per_layer.append(normalise_cams(up[:, 0].numpy())[0])
    return normalise_cams(np.mean(per_layer, axis=0))[0]


@pytest.mark.parametrize("layers,shared", [(("body.2", "body.3"), 5), (("body.2", "body.4"), 3), (("body.1",), 0)])
def test_ensemble_map_is_the_cam_of_the_summed_logits(layers: tuple[str, ...], shared: int) -> None:
    """combine="ensemble": one map per photo, from one backward pass, equal to the CAM of the folds' summed GS
    logit computed model by model; P(GS) stays each fold's own."""
    a, b = _two_folds(shared, seed=1)
    x = torch.rand(3, 3, 64, 64)
    spec = CamSpec("hirescam", layers)
    p, maps, flat = ensemble_cams([a, b], x, spec, shared_upto=shared, combine="ensemble")
    assert maps.shape == (1, 3, 64, 64) and flat.shape == (1, 3)
    np.testing.assert_allclose(maps[0], _summed_logit_map([a, b], x, layers), atol=1e-5)
    p_folds, maps_folds, _ = ensemble_cams([a, b], x, spec, shared_upto=shared)
    np.testing.assert_allclose(p, p_folds, atol=1e-6)
    assert maps_folds.shape == (2, 3, 64, 64)
    assert all(q.grad is None for q in a.parameters())
    # one model: the ensemble map is that model's map
    _, one, _ = ensemble_cams([a], x, spec, combine="ensemble")
    np.testing.assert_allclose(one, ensemble_cams([a], x, spec)[1], atol=1e-6)
    with pytest.raises(ValueError, match="combine"):
        ensemble_cams([a], x, spec, combine="average")


def test_no_backward_pass_below_the_earliest_cam_layer() -> None:
    """When the earliest CAM layer is a whole shared stage, that stage runs without autograd (no backward pass
    through its layers), the maps stay those of the long way, and ``front`` (the same stages computed elsewhere,
    e.g. on ONNX Runtime) gives the same result."""
    a, b = _two_folds(3, seed=2)
    x = torch.rand(3, 3, 64, 64)
    spec = CamSpec("hirescam", ("body.2", "body.4"))
    assert no_grad_stages(a, spec, 3) == 3  # body.0-1 below the layer, body.2 the layer itself
    assert no_grad_stages(a, spec, 2) == 2  # body.2 is a fold's own stage: it needs its parameters' graph
    assert no_grad_stages(a, CamSpec("hirescam", ("body.2.1", "body.4")), 3) == 2  # a layer inside the stage
    assert no_grad_stages(a, CamSpec("hirescam", ("body.2", "body.2.1")), 3) == 2  # two layers in that stage
    assert no_grad_stages(a, CamSpec("gradcam", ("body.1",)), 0) == 0
    backward_in_stage: list[int] = []
    hook = a.body[2][0].register_full_backward_hook(lambda *_: backward_in_stage.append(1))
    try:
        p, maps, _ = ensemble_cams([a, b], x, spec, shared_upto=3, combine="ensemble")
    finally:
        hook.remove()
    assert backward_in_stage == []
    np.testing.assert_allclose(maps[0], _summed_logit_map([a, b], x, spec.layers), atol=1e-5)
    twin = copy.deepcopy(a.body[:3])  # the same layers, other objects: as an ONNX copy would be
    calls: list[tuple[int, ...]] = []

    def front(t: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(t.shape))
        return twin(t)

    p2, maps2, _ = ensemble_cams([a, b], x, spec, shared_upto=3, combine="ensemble", front=front)
    assert calls == [(3, 3, 64, 64)]
    np.testing.assert_allclose(maps2, maps, atol=1e-6)
    np.testing.assert_allclose(p2, p, atol=1e-6)


def test_unshared_bodies_are_refused_and_layers_checked() -> None:
    a = create_model("tiny", pretrained=False).eval()
    b = copy.deepcopy(a)
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="do not share"):
        ensemble_cams([a, b], x, CamSpec("gradcam", ("body.4",)), shared_upto=3)
    with pytest.raises(ValueError, match="inside the body"):
        ensemble_cams([a], x, CamSpec("gradcam", ("head.0",)))
    with pytest.raises(ValueError, match="float tensor"):
        ensemble_cams([a], torch.zeros(1, 3, 64, 64, dtype=torch.uint8), CamSpec("gradcam", ("body.4",)))


# ------------------------------------------------------------------------------------------------ sanity check


@pytest.mark.parametrize("spec", [CamSpec("gradcam", ("body.2",)), CamSpec("hirescam", ("body.1", "body.2"))])
def test_model_randomisation_sanity_check(trained_blob_model, spec: CamSpec) -> None:
    """Adebayo et al. 2018: maps must change when the trained weights are replaced by random ones. Two runs of the
    trained model agree (rank correlation 1); the trained and a randomised model's maps must agree far less."""
    model, pos = trained_blob_model
    _, a, _ = model_cams(model, pos, spec)
    _, again, _ = model_cams(model, pos, spec)
    same = np.nanmean(map_rank_correlation(a, again))
    assert same > 0.999
    for seed in (1, 2):
        rnd = randomised_copy(model, ("",), seed=seed)
        _, b, _ = model_cams(rnd, pos, spec)
        r = np.nanmean(map_rank_correlation(a, b))
        assert r < 0.5, f"{spec.label()}: maps barely change under random weights (rank correlation {r:.2f})"
    # And the trained maps find the planted evidence (top-left 12×12 corner) while the random ones do not.
    region = np.zeros((32, 32), bool)
    region[:14, :14] = True
    share = np.mean([m[region].sum() / max(m.sum(), 1e-12) for m in a])
    assert share > 0.6, share


def test_randomised_copy_only_touches_the_prefix() -> None:
    m = BodyHead()
    r = randomised_copy(m, ("head.",), seed=0)
    for (n, p), (_, q) in zip(m.named_parameters(), r.named_parameters(), strict=True):
        assert torch.equal(p, q) == (not n.startswith("head."))
    with pytest.raises(ValueError, match="no parameter"):
        randomised_copy(m, ("nothing.",))


# ------------------------------------------------------------------------------------------------ deletion/insertion


def _corner_model(images: np.ndarray) -> np.ndarray:
    """P(GS) = brightness of the top-left 8×8 corner's red channel (the only evidence)."""
    return images[:, :8, :8, 0].astype(np.float64).mean(axis=(1, 2)) / 255.0


def test_deletion_insertion_reward_the_map_that_points_at_the_evidence() -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 60, size=(6, 32, 32, 3)).astype(np.uint8)
    imgs[:, :8, :8, 0] = 250
    right = np.zeros((6, 32, 32))
    right[:, :8, :8] = 1.0
    wrong = np.zeros((6, 32, 32))
    wrong[:, -8:, -8:] = 1.0
    d_r, i_r = deletion_insertion(_corner_model, imgs, right, steps=8)
    d_w, i_w = deletion_insertion(_corner_model, imgs, wrong, steps=8)
    assert d_r.shape == (6, 9)
    # Both start from the photo (deletion) / grey (insertion) and end at grey / the photo.
    np.testing.assert_allclose(d_r[:, 0], _corner_model(imgs))
    np.testing.assert_allclose(i_r[:, -1], _corner_model(imgs))
    np.testing.assert_allclose(d_r[:, -1], 128 / 255)
    assert curve_auc(d_r).mean() < curve_auc(d_w).mean() - 0.2
    assert curve_auc(i_r).mean() > curve_auc(i_w).mean() + 0.2
    rnd = random_maps(6, (32, 32), cells=4, seed=0)
    assert curve_auc(deletion_insertion(_corner_model, imgs, rnd, steps=8)[0]).mean() > curve_auc(d_r).mean()


def test_deletion_insertion_checks_shapes() -> None:
    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="maps must be"):
        deletion_insertion(_corner_model, imgs, np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="uint8"):
        deletion_insertion(_corner_model, imgs.astype(float), np.zeros((2, 8, 8)))
    np.testing.assert_allclose(curve_auc(np.ones((2, 5))), [1.0, 1.0])
    assert np.isnan(map_rank_correlation(np.ones((1, 4, 4)), np.random.default_rng(0).random((1, 4, 4)))[0])

