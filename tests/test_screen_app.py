"""The screening web app and JSON API: real photos, bad uploads, the audit log, tokens, offline pages."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from screen_support import encode, fabricate_run, png_header_only

from gsscreen.modelpack import export_model_pack, load_model_pack
from gsscreen.screening import CALL_GS, CALL_NO, ScreeningModel
from gsscreen.web.screen_app import (
    STATIC_DIR,
    ScreenAppConfig,
    check_bind,
    create_app,
    parse_multipart,
    sniff_image_type,
)

TOKEN = "s3cret-token-for-tests-0123"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ScreeningModel:
    d = tmp_path_factory.mktemp("app")
    return load_model_pack(export_model_pack(fabricate_run(d / "run", folds=2), d / "m.gss"))


@pytest.fixture
def client(model: ScreeningModel, tmp_path: Path) -> TestClient:
    return TestClient(create_app(ScreenAppConfig(audit_db=str(tmp_path / "audit.sqlite")), model))


def _post(client: TestClient, data: bytes, name: str = "photo.jpg", ctype: str = "image/jpeg", **fields: str):
    return client.post("/api/screen", files={"photo": (name, data, ctype)}, data=fields)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_api_screens_real_photos(client: TestClient, astronaut: np.ndarray, grace_hopper: np.ndarray,
                                 fmt: str) -> None:
    for img in (astronaut, grace_hopper):
        data = encode(img, fmt)
        r = _post(client, data, age_months="48")
        assert r.status_code == 200, r.text
        body = r.json()
        assert 0 <= body["p_gs"] <= 1 and body["call"] in (CALL_GS, CALL_NO)
        assert body["suspected"] == (body["p_gs"] >= body["threshold"])
        assert body["photo_sha256"] == hashlib.sha256(data).hexdigest()
        assert body["flags"] == ["age_range_unknown"]  # the fabricated run has no ages
        png = base64.b64decode(body["heatmap_png_base64"])
        assert Image.open(io.BytesIO(png)).size == (224, 224)


def test_raw_body_and_no_heatmap(client: TestClient, astronaut: np.ndarray) -> None:
    # the client's content type is ignored: the bytes are sniffed
    r = client.post("/api/screen?heatmap=false", content=encode(astronaut, "PNG"),
                    headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200 and r.json()["heatmap_png_base64"] is None


def test_bad_uploads_get_clear_4xx(client: TestClient, astronaut: np.ndarray) -> None:
    jpg = encode(astronaut)
    cases = {
        "zero bytes": (b"", 422, "empty"),
        "text": (b"patient: Jane Doe\nnot a photo at all\n", 415, "unsupported_type"),
        "truncated JPEG": (jpg[: len(jpg) // 3], 422, "unreadable"),
        "huge PNG header": (png_header_only(30000, 30000), 413, "too_large"),
        "no face": (encode(np.full((240, 240, 3), 90, np.uint8), "PNG"), 422, "no_face"),
    }
    for what, (data, status, code) in cases.items():
        r = _post(client, data, ctype="image/jpeg")  # a lying content type changes nothing
        assert r.status_code == status, (what, r.text)
        assert r.json()["code"] == code, what
        assert r.json()["detail"], what
    assert "no face found" in _post(client, cases["no face"][0]).json()["detail"]
    r = _post(client, jpg, age_months="abc")
    assert r.status_code == 422 and r.json()["code"] == "bad_age"
    r = client.post("/api/screen", files={"other": ("x.jpg", jpg, "image/jpeg")})
    assert r.status_code == 422 and r.json()["code"] == "no_photo"


def test_upload_size_limit(model: ScreeningModel, tmp_path: Path, astronaut: np.ndarray) -> None:
    c = TestClient(create_app(ScreenAppConfig(audit_db=str(tmp_path / "a.sqlite"), max_upload_mb=0.05), model))
    big = encode(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8), "PNG")  # ~480 kB
    r = _post(c, big, ctype="image/png")
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    assert _post(c, encode(astronaut, "JPEG", quality=60)).status_code == 200  # ~30 kB passes


def test_audit_log_has_hashes_not_pixels(model: ScreeningModel, tmp_path: Path, astronaut: np.ndarray) -> None:
    db = tmp_path / "audit.sqlite"
    c = TestClient(create_app(ScreenAppConfig(audit_db=str(db)), model))
    good, noface = encode(astronaut), encode(np.full((200, 200, 3), 60, np.uint8), "PNG")
    assert _post(c, good).status_code == 200
    assert _post(c, noface, ctype="image/png").status_code == 422
    assert _post(c, b"plain text").status_code == 415
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM audit ORDER BY id")]
    assert [r["status"] for r in rows] == [200, 422, 415]
    assert rows[0]["photo_sha256"] == hashlib.sha256(good).hexdigest() and rows[0]["model_id"] == model.model_id
    assert rows[0]["p_gs"] is not None and rows[0]["call"] in (CALL_GS, CALL_NO)
    assert rows[1]["photo_sha256"] == hashlib.sha256(noface).hexdigest() and '"no_face"' in rows[1]["flags"]
    # No pixel data anywhere: no blobs, no long values, and the photo's bytes are not in the database file.
    for r in rows:
        for v in r.values():
            assert not isinstance(v, bytes)
            assert not isinstance(v, str) or len(v) < 1000
    raw = db.read_bytes() + (db.with_name(db.name + "-wal").read_bytes() if db.with_name(db.name + "-wal").exists()
                             else b"")
    assert good[200:264] not in raw


def test_photos_never_touch_the_disk(client: TestClient, astronaut: np.ndarray,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def refuse(*_a, **_k):
        raise AssertionError("a temporary file was created for an upload")

    # The preparation pool starts on the first request, and starting worker processes may itself use tempfile
    # (multiprocessing's temp dir): start it before tempfile is refused, so only the upload path is under test.
    assert _post(client, encode(astronaut)).status_code == 200

    for name in ("SpooledTemporaryFile", "NamedTemporaryFile", "TemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    big = encode(np.asarray(Image.fromarray(astronaut).resize((1600, 1600))), "PNG")  # > 1 MB: would spool
    assert len(big) > 1024 * 1024
    assert _post(client, big, ctype="image/png").status_code == 200
    assert client.post("/screen", files={"photo": ("a.png", big, "image/png")},
                       data={"csrf_token": client.app.state.csrf.value}).status_code == 200


def test_token_enforced(model: ScreeningModel, tmp_path: Path, astronaut: np.ndarray) -> None:
    c = TestClient(create_app(ScreenAppConfig(audit_db=str(tmp_path / "a.sqlite"), token=TOKEN), model))
    jpg = encode(astronaut)
    assert _post(c, jpg).status_code == 401
    r = c.post("/api/screen", files={"photo": ("a.jpg", jpg, "image/jpeg")},
               headers={"Authorization": "Bearer wrong-token-wrong-token"})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    r = c.post("/api/screen", files={"photo": ("a.jpg", jpg, "image/jpeg")},
               headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert c.get("/api/model").status_code == 401
    assert c.get("/api/model", headers={"Authorization": f"Bearer {TOKEN}"}).json()["model_id"] == model.model_id
    # the HTML form carries the token as a field
    csrf = c.app.state.csrf.value
    r = c.post("/screen", files={"photo": ("a.jpg", jpg, "image/jpeg")}, data={"csrf_token": csrf})
    assert r.status_code == 401
    r = c.post("/screen", files={"photo": ("a.jpg", jpg, "image/jpeg")}, data={"token": TOKEN, "csrf_token": csrf})
    assert r.status_code == 200 and "P(GS)" in r.text
    assert 'name="token"' in c.get("/").text


def test_bind_rules() -> None:
    check_bind(ScreenAppConfig(host="127.0.0.1"))
    check_bind(ScreenAppConfig(host="localhost"))
    check_bind(ScreenAppConfig(host="::1"))
    with pytest.raises(ValueError, match=r"refusing to listen on 0\.0\.0\.0 without --token"):
        check_bind(ScreenAppConfig(host="0.0.0.0"))
    check_bind(ScreenAppConfig(host="0.0.0.0", token=TOKEN))
    with pytest.raises(ValueError, match="at least 16 characters"):
        check_bind(ScreenAppConfig(host="0.0.0.0", token="short"))


def test_serve_cli_refuses_open_host_without_token() -> None:
    from typer.testing import CliRunner

    from gsscreen.cli import app

    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "without --token" in r.output


def test_result_page(client: TestClient, astronaut: np.ndarray) -> None:
    r = client.post("/screen", files={"photo": ("a.jpg", encode(astronaut), "image/jpeg")},
                    data={"age_months": "30", "csrf_token": client.app.state.csrf.value})
    assert r.status_code == 200
    assert "P(GS)" in r.text and 'id="heatmap"' in r.text and "not a medical device" in r.text
    assert re.search(r'id="p-gs">0\.\d{3}<', r.text)
    r = client.post("/screen", files={"photo": ("a.txt", b"hello", "text/plain")},
                    data={"csrf_token": client.app.state.csrf.value})
    assert r.status_code == 415 and "could not be screened" in r.text


def test_pages_are_offline(client: TestClient) -> None:
    pages = [client.get(p) for p in ("/", "/docs")]
    statics = [client.get(f"/screen-static/{p.name}") for p in STATIC_DIR.iterdir()]
    for r in pages + statics:
        assert r.status_code == 200
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", r.text, re.I), r.url
    assert "default-src 'self'" in pages[0].headers["content-security-policy"]
    assert client.get("/redoc").status_code == 404


def test_openapi_documents_the_upload(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/api/screen"]["post"]
    form = op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["photo"]["format"] == "binary"
    assert {"200", "401", "413", "415", "422"} <= set(op["responses"])
    assert "p_gs" in spec["components"]["schemas"]["ScreenResponse"]["properties"]


def test_sniffing_and_multipart_parser(astronaut: np.ndarray) -> None:
    assert sniff_image_type(encode(astronaut)) == "image/jpeg"
    assert sniff_image_type(encode(astronaut, "PNG")) == "image/png"
    assert sniff_image_type(encode(astronaut, "WEBP")) == "image/webp"
    assert sniff_image_type(b"%PDF-1.7") is None and sniff_image_type(b"") is None
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"age_months\"\r\n\r\n30\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\x00\r\n\r\n--XyZ--\r\n")
    parts = parse_multipart(body, "multipart/form-data; boundary=XyZ")
    assert parts["age_months"] == (b"30", None)
    assert parts["photo"] == (b"\xff\xd8\xff\x00\r\n", "a.jpg")
