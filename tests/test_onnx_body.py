"""The shared frozen body on ONNX Runtime: exported once into the cache, outputs equal to torch's within 1e-4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from screen_support import fabricate_run

from gsscreen.modelpack import ExportConfig, export_model_pack, load_model_pack
from gsscreen.models import onnx_body
from gsscreen.screening import ScreenConfig, ScreeningModel
from gsscreen.screening_pipeline import run_screening


@pytest.fixture(scope="module", params=[4, 5], ids=["cam-in-trained-part", "cam-in-frozen-body"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ScreeningModel:
    d = tmp_path_factory.mktemp("pack")
    run = fabricate_run(d / "run", folds=3, unfreeze_from=request.param)
    return load_model_pack(export_model_pack(run, d / "m.gss", ExportConfig(name="onnx")))


def test_onnx_body_equals_torch(model: ScreeningModel, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.from_numpy(np.random.default_rng(1).random((5, 3, model.input_size, model.input_size),
                                                        dtype=np.float32))
    model.use_onnx(False)
    p_torch = model.predict_tensor(x)
    with torch.inference_mode():
        f_torch = model._run(model.base, x, 0, model.shared_upto)
    assert model.use_onnx(True) == ""
    try:
        assert onnx_body.cache_path(model).is_file()
        np.testing.assert_allclose(model.onnx_body(x).numpy(), f_torch.numpy(), atol=1e-4)
        np.testing.assert_allclose(model.predict_tensor(x), p_torch, atol=1e-4)
        # the export is cached: enabling again does not export
        monkeypatch.setattr(onnx_body, "export_body", lambda *_a: pytest.fail("exported twice"))
        assert model.use_onnx(True) == ""
        # the network-free copy for the workers carries no session
        assert model.preprocessor().onnx_body is None
    finally:
        model.use_onnx(False)


def test_a_body_that_disagrees_is_not_used(model: ScreeningModel, monkeypatch: pytest.MonkeyPatch) -> None:
    assert model.use_onnx(True) == ""
    real = onnx_body.OnnxBody.__call__
    monkeypatch.setattr(onnx_body.OnnxBody, "__call__", lambda self, x: real(self, x) + 1e-3)
    why = model.use_onnx(True)
    assert "differs from torch" in why and model.onnx_body is None


def test_screening_with_onnx_equals_torch(model: ScreeningModel, tmp_path: Path, astronaut: np.ndarray,
                                          grace_hopper: np.ndarray) -> None:
    from screen_support import encode

    d = tmp_path / "photos"
    d.mkdir()
    (d / "a.jpg").write_bytes(encode(astronaut))
    (d / "g.jpg").write_bytes(encode(grace_hopper))
    a = run_screening(model, ScreenConfig(inputs=[str(d)], out_dir=str(tmp_path / "a"), workers=0, heatmap=False,
                                          runtime="auto"), progress=False)
    b = run_screening(model, ScreenConfig(inputs=[str(d)], out_dir=str(tmp_path / "b"), workers=0, heatmap=False,
                                          runtime="torch"), progress=False)
    np.testing.assert_allclose(a["p_gs"], b["p_gs"], atol=1e-4)
    assert getattr(model, "onnx_body", None) is None  # the run leaves the model as it found it


def test_regions_beside_the_cam_equal_the_torch_ones(model: ScreeningModel, astronaut: np.ndarray,
                                                     grace_hopper: np.ndarray,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With the body on ONNX Runtime the occluded views run on a second thread while torch computes the CAM
    (only when every CAM layer lies in the shared body, which torch's hooks then never see); the results equal
    the all-torch ones."""
    import threading

    from gsscreen import explain_regions

    preps = [model.prepare(img) for img in (astronaut, grace_hopper)]
    real = explain_regions.pack_regions
    tta = model.tta_flip
    try:
        # mirror averaged (the plain view runs with the occluded ones) or not (its P(GS) comes from the CAM)
        for model.tta_flip in (True, False):
            model.use_onnx(False)
            ref = model.screen_prepared(preps, heatmap=True)
            where: list[str] = []

            def spy(*a, **kw):
                where.append(threading.current_thread().name)  # noqa: B023 (called before the loop moves on)
                return real(*a, **kw)

            monkeypatch.setattr(explain_regions, "pack_regions", spy)
            assert model.use_onnx(True) == ""
            got = model.screen_prepared(preps, heatmap=True)
            monkeypatch.setattr(explain_regions, "pack_regions", real)
            model.use_onnx(False)
            in_frozen_body = model.shared_upto > 4  # the tiny backbone's CAM layer is body.4
            assert len(where) == 1 and where[0].startswith("gsscreen-side") == in_frozen_body
            for r, g in zip(ref, got, strict=True):
                assert r.regions is not None and g.regions is not None and set(g.regions) == set(r.regions)
                np.testing.assert_allclose([g.regions[k] for k in r.regions], [r.regions[k] for k in r.regions],
                                           atol=2e-4)
                np.testing.assert_allclose(g.fold_p_gs, r.fold_p_gs, atol=1e-4)
                np.testing.assert_allclose(g.heatmap, r.heatmap, atol=1e-4)
    finally:
        model.tta_flip = tta
        model.use_onnx(False)


def test_mirror_view_beside_the_cam_equals_the_torch_one(model: ScreeningModel, astronaut: np.ndarray,
                                                         grace_hopper: np.ndarray,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The mirror view's P(GS) needs no gradient: with the body on ONNX Runtime (and every CAM layer inside it) it
    runs on the side thread while torch computes the CAM; P(GS) and the map equal the all-torch ones."""
    import threading

    preps = [model.prepare(img) for img in (astronaut, grace_hopper)]
    tta = model.tta_flip
    real = ScreeningModel.predict_tensor_views
    where: list[str] = []

    def spy(self: ScreeningModel, x: torch.Tensor) -> np.ndarray:
        where.append(threading.current_thread().name)
        return real(self, x)

    try:
        model.tta_flip = True
        model.use_onnx(False)
        ref = model.screen_prepared(preps, heatmap=True, regions=False)
        monkeypatch.setattr(ScreeningModel, "predict_tensor_views", spy)
        assert model.use_onnx(True) == ""
        got = model.screen_prepared(preps, heatmap=True, regions=False)
    finally:
        monkeypatch.setattr(ScreeningModel, "predict_tensor_views", real)
        model.tta_flip = tta
        model.use_onnx(False)
    in_frozen_body = model.shared_upto > 4  # the tiny backbone's CAM layer is body.4
    assert len(where) == 1 and where[0].startswith("gsscreen-side") == in_frozen_body
    for r, g in zip(ref, got, strict=True):
        assert g.regions is None
        np.testing.assert_allclose(g.fold_p_gs, r.fold_p_gs, atol=1e-4)
        np.testing.assert_allclose(g.heatmap, r.heatmap, atol=1e-4)


@pytest.mark.parametrize("layers", [("body.2", "body.4"), ("body.3",)])
def test_cam_stages_without_autograd_run_on_onnx_too(model: ScreeningModel, astronaut: np.ndarray,
                                                      grace_hopper: np.ndarray, layers: tuple[str, ...]) -> None:
    """The stages an ensemble CAM runs without autograd (below its earliest layer, and that layer's own stage when
    the layer is the whole stage) run on ONNX Runtime too, from an export of just those stages (or the body itself
    when they are all of it); P(GS) and the map equal the all-torch ones."""
    from gsscreen.explain_cam import CamSpec, no_grad_stages

    spec = CamSpec("hirescam", layers)
    front = no_grad_stages(model.base, spec, model.shared_upto)
    preps = [model.prepare(img) for img in (astronaut, grace_hopper)]
    cam, calls = model.cam, []
    try:
        model.cam = spec
        model.use_onnx(False)
        ref = model.screen_prepared(preps, heatmap=True, regions=False)
        assert model.use_onnx(True) == "" and model.onnx_front is not None
        assert (model.onnx_front is model.onnx_body) == (front == model.shared_upto)
        assert onnx_body.cache_path(model, front).is_file()
        real = model.onnx_front
        model.onnx_front = lambda x: calls.append(len(x)) or real(x)
        got = model.screen_prepared(preps, heatmap=True, regions=False)
    finally:
        model.cam = cam
        model.use_onnx(False)
    assert calls == [2]
    for a, b in zip(got, ref, strict=True):
        assert a.p_gs == pytest.approx(b.p_gs, abs=1e-5)
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-3)
