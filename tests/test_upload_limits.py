"""The upload limit at its edge: a photo of exactly the limit is screened, one byte more is refused (413), whether
it comes raw or in a form, with or without a Content-Length header; a body far over the limit is refused while it
streams, without the server reading all of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from screen_support import encode, fabricate_run

from gsscreen.modelpack import export_model_pack, load_model_pack
from gsscreen.screening import ScreeningModel
from gsscreen.web.screen_app import ScreenAppConfig, create_app

LIMIT = 65536  # 0.0625 MB exactly
BOUNDARY = "gsscreen-test-boundary"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ScreeningModel:
    d = tmp_path_factory.mktemp("limits")
    return load_model_pack(export_model_pack(fabricate_run(d / "run", folds=2), d / "m.gss"))


@pytest.fixture
def client(model: ScreeningModel, tmp_path: Path) -> TestClient:
    cfg = ScreenAppConfig(audit_db=str(tmp_path / "audit.sqlite"), max_upload_mb=LIMIT / (1024 * 1024), heatmap=False)
    assert cfg.max_upload_bytes == LIMIT
    return TestClient(create_app(cfg, model))


def _photo(astronaut: np.ndarray, size: int) -> bytes:
    """A real JPEG padded after its end marker to exactly ``size`` bytes (decoders ignore the tail)."""
    jpeg = encode(astronaut, "JPEG", quality=60)
    assert len(jpeg) < size
    return jpeg + b"\0" * (size - len(jpeg))


def _form(photo: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"p.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{BOUNDARY}--\r\n".encode()


def _chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def _send(client: TestClient, body: bytes, *, form: bool, content_length: bool):
    ctype = f"multipart/form-data; boundary={BOUNDARY}" if form else "image/jpeg"
    payload = _form(body) if form else body
    # An iterator body goes out chunked, without Content-Length (as a streaming client would send it).
    content = payload if content_length else _chunks(payload)
    return client.post("/api/screen", content=content, headers={"content-type": ctype})


@pytest.mark.parametrize("form", [False, True], ids=["raw", "multipart"])
@pytest.mark.parametrize("content_length", [True, False], ids=["with-length", "chunked"])
def test_exactly_the_limit_passes_one_byte_more_is_refused(client: TestClient, astronaut: np.ndarray, form: bool,
                                                           content_length: bool) -> None:
    ok = _send(client, _photo(astronaut, LIMIT), form=form, content_length=content_length)
    assert ok.status_code == 200, ok.text
    assert ok.json()["p_gs"] is not None
    over = _send(client, _photo(astronaut, LIMIT + 1), form=form, content_length=content_length)
    assert over.status_code == 413, over.text
    assert over.json()["code"] == "too_large"


def test_a_huge_streamed_body_is_refused_before_it_is_all_read() -> None:
    """Without Content-Length the limit is counted while the body streams in (the test client buffers whole bodies,
    so this drives the ASGI receive channel directly and counts what the server pulled)."""
    import asyncio

    from starlette.requests import Request

    from gsscreen.web.screen_app import UploadError, read_body

    pulled = 0
    total = 4096  # 32 MB in 8 kB messages

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"\0" * 8192, "more_body": pulled < total}

    scope = {"type": "http", "method": "POST", "path": "/api/screen", "headers": [(b"content-type", b"image/jpeg")],
             "query_string": b""}
    with pytest.raises(UploadError) as err:
        asyncio.run(read_body(Request(scope, receive), LIMIT))
    assert err.value.status == 413 and err.value.code == "too_large"
    assert pulled <= LIMIT // 8192 + 1, f"read {pulled} of {total} messages before refusing"
