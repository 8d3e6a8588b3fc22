"""Photos built to stall or crash the service (issue #11, items 1, 2 and 4): refused from their shape with a reason,
bounded detection work for every shape that is searched, a JSON error and an audit row for every request."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from screen_support import encode, fabricate_run

from gsscreen.faces.align import (
    DETECT_BUDGET,
    MAX_ASPECT,
    MIN_PHOTO_SIDE,
    AlignConfig,
    UnsuitablePhotoError,
    _variants,
    align_face,
    check_photo_shape,
)
from gsscreen.faces.mtcnn import MAX_PROPOSALS, MTCNN
from gsscreen.modelpack import export_model_pack, load_model_pack
from gsscreen.screening import ScreeningModel
from gsscreen.web.screen_app import ScreenAppConfig, create_app


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ScreeningModel:
    d = tmp_path_factory.mktemp("hostile")
    return load_model_pack(export_model_pack(fabricate_run(d / "run", folds=2), d / "m.gss"))


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (128, 128, 128)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _audit(db: Path) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return [dict(r) for r in con.execute("SELECT * FROM audit ORDER BY id")]


@pytest.mark.parametrize(("w", "h", "words"), [(10000, 1, "shorter side"), (1, 6000, "shorter side"),
                                               (1600, 40, "not a portrait"), (40000, 1000, "not a portrait")])
def test_slivers_and_strips_are_refused_with_a_reason(w: int, h: int, words: str) -> None:
    with pytest.raises(UnsuitablePhotoError, match=words) as info:
        check_photo_shape(h, w)
    assert f"{w}×{h}" in info.value.reason
    with pytest.raises(UnsuitablePhotoError):  # align_face gates too (study alignment, in-memory screening)
        align_face(np.full((min(h, 64), min(w, 2000), 3), 128, np.uint8))


def test_portrait_shapes_pass_the_gate() -> None:
    for h, w in ((MIN_PHOTO_SIDE, MIN_PHOTO_SIDE), (480, 640), (4000, 3000), (100, int(MAX_ASPECT * 100))):
        check_photo_shape(h, w)


@pytest.mark.parametrize("shape", [(24, 144), (144, 24), (40, 240), (1000, 6000), (6000, 6000), (24, 24),
                                   (160, 159), (3000, 500)])
@pytest.mark.parametrize("max_side", [640, 1280])
def test_every_detection_attempt_is_bounded(shape: tuple[int, int], max_side: int) -> None:
    # The cause of the 82-s, 3.5-GB strip: the upscale factor had no cap and the border grew with the long side.
    # Now no attempt (upscaled, padded, rotated) hands the detector more than DETECT_BUDGET × max_side² pixels.
    cfg = AlignConfig(max_side=max_side)
    image = np.zeros((*shape, 3), np.uint8)
    budget = DETECT_BUDGET * max_side**2
    for desc, build in _variants(image, cfg):
        v = build()
        h, w = v.image.shape[:2]
        assert h * w <= budget * 1.01 + 4 * (h + w), (desc, v.image.shape)


def test_normal_photos_are_searched_as_before() -> None:
    # A square photo at the detection size, padded by 0.3 (the largest ordinary retry), is within the budget:
    # the bound changes nothing for ordinary portraits.
    cfg = AlignConfig(max_side=640)
    sizes = {desc: build().image.shape[:2] for desc, build in _variants(np.zeros((640, 640, 3), np.uint8), cfg)}
    assert sizes["padded 0.3"] == (640 + 2 * 192, 640 + 2 * 192)


def test_detector_proposals_are_capped() -> None:
    # Noise at low thresholds gives P-Net tens of thousands of proposals; NMS on all of them is quadratic.
    det = MTCNN()
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    cand = det._stage1(noise, 12.0, 0.709, 0.05)
    assert 0 < len(cand) <= MAX_PROPOSALS


@pytest.mark.parametrize(("w", "h"), [(10000, 1), (1, 6000), (1600, 40), (40000, 1000)])
def test_api_answers_hostile_photos_with_json_and_an_audit_row(model: ScreeningModel, tmp_path: Path,
                                                               w: int, h: int) -> None:
    db = tmp_path / "audit.sqlite"
    c = TestClient(create_app(ScreenAppConfig(audit_db=str(db)), model))
    r = c.post("/api/screen", files={"photo": ("strip.png", _png(w, h), "image/png")})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "no_face" and f"{w}×{h}" in body["detail"]
    rows = _audit(db)
    assert len(rows) == 1 and rows[0]["status"] == 422 and rows[0]["photo_sha256"]


def test_401_and_500_leave_audit_rows(model: ScreeningModel, tmp_path: Path, astronaut: np.ndarray,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "audit.sqlite"
    c = TestClient(create_app(ScreenAppConfig(audit_db=str(db), token="t" * 24), model), raise_server_exceptions=False)
    jpg = encode(astronaut)
    assert c.post("/api/screen", files={"photo": ("a.jpg", jpg, "image/jpeg")}).status_code == 401
    csrf = c.app.state.csrf.value
    r = c.post("/screen", files={"photo": ("a.jpg", jpg, "image/jpeg")}, data={"csrf_token": csrf})
    assert r.status_code == 401

    def broken(*_a, **_k):
        raise RuntimeError("simulated bug")

    # On the class: the service's batcher pickles the model for its workers, and runs the network part here.
    monkeypatch.setattr(ScreeningModel, "screen_file", broken)
    monkeypatch.setattr(ScreeningModel, "screen_prepared", broken)
    auth = {"Authorization": "Bearer " + "t" * 24}
    r = c.post("/api/screen", files={"photo": ("a.jpg", jpg, "image/jpeg")}, headers=auth)
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    r = c.post("/screen", files={"photo": ("a.jpg", jpg, "image/jpeg")}, data={"token": "t" * 24, "csrf_token": csrf})
    assert r.status_code == 500 and "internal error" in r.text
    rows = _audit(db)
    assert [(r["channel"], r["status"]) for r in rows] == [("api", 401), ("web", 401), ("api", 500), ("web", 500)]
    assert rows[2]["photo_sha256"] and "RuntimeError" in rows[2]["problem"]
