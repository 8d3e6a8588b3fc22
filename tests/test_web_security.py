"""The web boundary (issue #11, item 3): Host allow-list, Origin / Sec-Fetch-Site, simple content types, the form's
CSRF token — as a policy and through the screening app (each refusal at a screening endpoint is audited)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from screen_support import encode, fabricate_run

from gsscreen.modelpack import export_model_pack, load_model_pack
from gsscreen.screening import ScreeningModel
from gsscreen.web.screen_app import ScreenAppConfig, create_app
from gsscreen.web.security import CsrfToken, SitePolicy, allowed_hosts_for, install_guard

SAME = {"host": "127.0.0.1:8000", "content-length": "1234"}


@pytest.mark.parametrize(("headers", "code"), [
    ({"host": "evil.example:8000"}, "host_not_allowed"),  # DNS rebinding: the attacker's name, our address
    ({"host": "localhost.evil.example"}, "host_not_allowed"),
    ({}, "host_not_allowed"),
    ({**SAME, "sec-fetch-site": "cross-site"}, "cross_site"),
    ({**SAME, "sec-fetch-site": "same-site"}, "cross_site"),  # localhost:9999 → localhost:8000 is "same-site"
    ({**SAME, "origin": "http://localhost:9999"}, "cross_origin"),
    ({**SAME, "origin": "http://127.0.0.1:9999"}, "cross_origin"),
    ({**SAME, "origin": "null"}, "cross_origin"),
    ({**SAME, "content-type": "text/plain"}, "simple_content_type"),
    ({**SAME, "content-type": "application/x-www-form-urlencoded; charset=utf-8"}, "simple_content_type"),
    ({**SAME}, "simple_content_type"),
])
def test_policy_refuses(headers: dict[str, str], code: str) -> None:
    refusal = SitePolicy().check("POST", "/api/screen", headers)
    assert refusal is not None and refusal.code == code


@pytest.mark.parametrize("headers", [
    {**SAME, "content-type": "multipart/form-data; boundary=x"},  # curl -F, hospital systems: no Origin
    {**SAME, "content-type": "image/jpeg", "origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"},
    {"host": "[::1]:8000", "content-type": "image/png", "origin": "http://[::1]:8000", "content-length": "9"},
    {"host": "localhost", "content-type": "image/png", "origin": "http://localhost", "sec-fetch-site": "none"},
    {"host": "screening-pc.hospital.local:8000", "content-type": "image/png", "content-length": "9"},
    # our own no-referrer form post in Chromium: Origin null, vouched for by the browser's Sec-Fetch-Site
    {**SAME, "content-type": "multipart/form-data; boundary=x", "origin": "null", "sec-fetch-site": "same-origin"},
])
def test_policy_lets_same_origin_and_plain_clients_through(headers: dict[str, str]) -> None:
    policy = SitePolicy(allowed_hosts=allowed_hosts_for("0.0.0.0", ["screening-pc.hospital.local"]))
    assert policy.check("POST", "/api/screen", headers) is None
    assert policy.check("DELETE", "/api/session", {"host": headers["host"]}) is None  # no body: no content type
    assert policy.check("GET", "/", {"host": headers["host"]}) is None


def test_guard_covers_endpoints_added_later() -> None:
    app = FastAPI()
    install_guard(app, SitePolicy())

    @app.post("/api/anything-new")
    async def new() -> dict[str, str]:
        return {"ok": "yes"}

    c = TestClient(app)
    r = c.post("/api/anything-new", content=b"x", headers={"origin": "http://localhost:9999",
                                                           "content-type": "image/png"})
    assert r.status_code == 403 and r.json()["code"] == "cross_origin"
    assert c.post("/api/anything-new", content=b"x", headers={"content-type": "image/png"}).json() == {"ok": "yes"}


def test_csrf_token() -> None:
    t = CsrfToken()
    assert t.valid(t.value) and not t.valid("") and not t.valid(None) and not t.valid(t.value + "x")
    assert t.value in t.hidden_field() and CsrfToken().value != t.value


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> ScreeningModel:
    d = tmp_path_factory.mktemp("sec")
    return load_model_pack(export_model_pack(fabricate_run(d / "run", folds=2), d / "m.gss"))


def test_app_refusals_are_audited_and_the_form_needs_its_token(model: ScreeningModel, tmp_path: Path,
                                                                astronaut: np.ndarray) -> None:
    db = tmp_path / "audit.sqlite"
    c = TestClient(create_app(ScreenAppConfig(audit_db=str(db)), model))
    jpg = encode(astronaut)
    files = {"photo": ("a.jpg", jpg, "image/jpeg")}
    assert c.post("/api/screen", content=jpg, headers={"content-type": "text/plain"}).status_code == 415
    assert c.post("/api/screen", files=files, headers={"origin": "http://localhost:9999"}).status_code == 403
    assert c.post("/api/screen", files=files, headers={"host": "rebind.evil.example"}).status_code == 421
    assert c.post("/screen", files=files).status_code == 403  # the form without its CSRF token
    page = c.get("/").text
    token = c.app.state.csrf.value
    assert f'name="csrf_token" value="{token}"' in page
    assert c.post("/screen", files=files, data={"csrf_token": token}).status_code == 200
    assert c.get("/healthz", headers={"host": "rebind.evil.example"}).status_code == 421  # not audited: no screening
    rows = sqlite3.connect(db).execute("SELECT channel, status, problem FROM audit ORDER BY id").fetchall()
    assert [(ch, st) for ch, st, _ in rows] == [("api", 415), ("api", 403), ("api", 421), ("web", 403), ("web", 200)]
    assert "simple_content_type" in rows[0][2] and "cross_origin" in rows[1][2] and "host_not_allowed" in rows[2][2]
