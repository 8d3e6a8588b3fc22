"""The web app's batcher: concurrent requests share model batches and each gets its own result."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from screen_support import encode, fabricate_run
from test_screen_pipeline import _variants

from gsscreen.modelpack import ExportConfig, export_model_pack, load_model_pack
from gsscreen.screening import ScreeningModel
from gsscreen.web.batcher import BatcherConfig, ScreenBatcher
from gsscreen.web.screen_app import ScreenAppConfig, create_app


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ScreeningModel:
    d = tmp_path_factory.mktemp("pack")
    run = fabricate_run(d / "run", folds=3, unfreeze_from=5)
    return load_model_pack(export_model_pack(run, d / "m.gss", ExportConfig(name="batch")))


@pytest.fixture(scope="module")
def photos(astronaut: np.ndarray, grace_hopper: np.ndarray) -> list[bytes]:
    return [encode(img) for img in _variants(astronaut, grace_hopper, 6)]


@pytest.mark.parametrize("workers", [0, 2], ids=["threads", "processes"])
def test_concurrent_photos_get_their_own_results(model: ScreeningModel, photos: list[bytes], workers: int) -> None:
    blank = encode(np.full((90, 90, 3), 128, np.uint8), "PNG")
    inputs = [*photos, blank, photos[0][:900]]
    heat = [k % 2 == 0 for k in range(len(inputs))]
    # a long collection window makes the batching certain, whatever the machine's load
    b = ScreenBatcher(model, BatcherConfig(workers=workers, max_batch=8, max_wait_ms=1500))

    async def go() -> list:
        return await asyncio.gather(*[b.screen(d, None, h) for d, h in zip(inputs, heat, strict=True)])

    try:
        got = asyncio.run(go())
    finally:
        b.close()
    assert max(b.batch_sizes) > 1  # requests were screened together
    for data, h, (res, sha) in zip(inputs, heat, got, strict=True):
        one = model.screen_file(data, heatmap=h)
        assert sha == hashlib.sha256(data).hexdigest()
        assert res.problem == one.problem and res.flags == one.flags
        if one.ok:
            assert res.p_gs == pytest.approx(one.p_gs, abs=1e-6)
            assert (res.overlay is not None) == h
            if h:
                np.testing.assert_allclose(res.heatmap, one.heatmap, atol=1e-4)
    assert not got[-2][0].ok and "no_face" in got[-2][0].flags and not got[-1][0].ok


def test_app_answers_concurrent_requests_each_with_its_own_photo(model: ScreeningModel, photos: list[bytes],
                                                                 tmp_path: Path) -> None:
    app = create_app(ScreenAppConfig(audit_db=str(tmp_path / "a.sqlite"), batch_wait_ms=1000), model)

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            return await asyncio.gather(*[
                c.post("/api/screen", files={"photo": (f"p{k}.jpg", d, "image/jpeg")},
                       params={"heatmap": "true" if k % 2 else "false"}) for k, d in enumerate(photos)])

    try:
        responses = asyncio.run(go())
    finally:
        app.state.batcher.close()
    assert [r.status_code for r in responses] == [200] * len(photos), responses[0].text
    assert max(app.state.batcher.batch_sizes) > 1
    for k, (d, r) in enumerate(zip(photos, responses, strict=True)):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["photo_sha256"] == hashlib.sha256(d).hexdigest()
        assert body["p_gs"] == pytest.approx(model.screen_file(d, heatmap=False).p_gs, abs=1e-6)
        assert (body["heatmap_png_base64"] is not None) == bool(k % 2)


def test_warm_up_puts_the_body_on_onnx_runtime(model: ScreeningModel, photos: list[bytes]) -> None:
    pytest.importorskip("onnx")
    b = ScreenBatcher(model, BatcherConfig(workers=0, runtime="auto"))
    try:
        b.warm_up()
        assert model.onnx_body is not None
        res, _ = asyncio.run(b.screen(photos[0], None, False))
    finally:
        b.close()
        model.use_onnx(False)
    assert res.p_gs == pytest.approx(model.screen_file(photos[0], heatmap=False).p_gs, abs=1e-4)


def test_a_preparation_that_does_not_answer_times_out_and_the_pool_is_replaced(model: ScreeningModel,
                                                                              photos: list[bytes]) -> None:
    # A fresh pool cannot start its workers, let alone prepare a photo, in a millisecond: the wait ends with a
    # plain answer instead of lasting for ever, the possibly stuck workers are killed, and the next photo is
    # prepared by a new pool.
    b = ScreenBatcher(model, BatcherConfig(workers=1, prepare_timeout_s=0.001))
    try:
        first_pool = b._get_pool()
        res, sha = asyncio.run(b.screen(photos[0], None, False))
        assert not res.ok and "unreadable" in res.flags and "longer than 0.001 s" in (res.problem or "")
        assert sha == hashlib.sha256(photos[0]).hexdigest()
        assert b._pool is None
        b.cfg.prepare_timeout_s = 120.0
        res, _ = asyncio.run(b.screen(photos[0], None, False))
        assert b._pool is not None and b._pool is not first_pool
    finally:
        b.close()
    assert res.ok and res.p_gs == pytest.approx(model.screen_file(photos[0], heatmap=False).p_gs, abs=1e-6)


def test_api_gives_region_attributions_only_when_asked(model: ScreeningModel, photos: list[bytes],
                                                       tmp_path: Path) -> None:
    # The API answers with the outcome and its reasons, and with the region bars only for regions=true: they cost
    # five more model passes a photo. Requests of both kinds meet in one batch and each gets what it asked for.
    app = create_app(ScreenAppConfig(audit_db=str(tmp_path / "a.sqlite"), batch_wait_ms=1000), model)
    asks = [{"regions": "true"}, {}, {"regions": "false"}, {"regions": "true", "heatmap": "false"}]

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            return await asyncio.gather(*[
                c.post("/api/screen", files={"photo": ("p.jpg", photos[0], "image/jpeg")}, params=q) for q in asks])

    try:
        bodies = [r.json() for r in asyncio.run(go())]
    finally:
        app.state.batcher.close()
    one = model.screen_file(photos[0], heatmap=True, regions=True)
    assert one.regions is not None
    with_regions, default, without, no_heatmap = bodies
    assert set(with_regions["regions"]) == set(one.regions)
    np.testing.assert_allclose([with_regions["regions"][k] for k in one.regions], list(one.regions.values()),
                               atol=2e-4)
    assert default["regions"] is None and without["regions"] is None and no_heatmap["regions"] is None
    assert default["heatmap_png_base64"] and no_heatmap["heatmap_png_base64"] is None
    for b in bodies:
        assert b["outcome"] == one.outcome and b["reasons"] == one.reasons
        assert b["p_gs"] == pytest.approx(one.p_gs, abs=1e-6)
    assert model.screen_file(photos[0], heatmap=True, regions=False).regions is None
