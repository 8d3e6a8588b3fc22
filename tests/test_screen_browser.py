"""End to end in real headless Chromium: choose the astronaut photo, submit, and read the result page."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from screen_support import encode, fabricate_run

from gsscreen.modelpack import export_model_pack, load_model_pack
from gsscreen.web.screen_app import ScreenAppConfig, create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"Chromium not found at {CHROMIUM}"),
]


def serve_in_thread(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port in a daemon thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    pack = export_model_pack(fabricate_run(tmp_path / "run", folds=2), tmp_path / "m.gss")
    db = tmp_path / "audit.sqlite"
    app = create_app(ScreenAppConfig(audit_db=str(db)), load_model_pack(pack))
    yield from ((url, db) for url in serve_in_thread(app))


def test_upload_astronaut_in_chromium(live_app: tuple[str, Path], tmp_path: Path, astronaut) -> None:
    from playwright.sync_api import sync_playwright

    url, db = live_app
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(encode(astronaut))
    external: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1100})
            page.on("request", lambda req: external.append(req.url) if not req.url.startswith((url, "data:"))
                    else None)
            page.goto(url + "/")
            assert "not a medical device" in page.inner_text(".notice")
            page.set_input_files("#photo", str(photo))
            assert page.inner_text("#chosen") == "astronaut.jpg"
            page.fill("input[name=age_months]", "36")
            page.click("button[type=submit]")
            page.wait_for_selector("#p-gs", timeout=60_000)
            p_gs = float(page.inner_text("#p-gs"))
            assert 0.0 <= p_gs <= 1.0
            call = page.inner_text("#call")
            assert call in ("GS suspected — refer for genetic evaluation", "no GS signal")
            # the heatmap image is really decoded and shown by the browser
            w = page.eval_on_selector("#heatmap", "img => img.complete ? img.naturalWidth : 0")
            assert w == 224
            width = page.eval_on_selector(".meter .fill", "e => e.style.width")
            assert width == f"{round(100 * p_gs)}%" or abs(float(width[:-1]) - 100 * p_gs) <= 1
            page.screenshot(path=str(tmp_path / "result.png"), full_page=True)
        finally:
            browser.close()
    assert external == []  # nothing outside the app was requested
    assert (tmp_path / "result.png").stat().st_size > 10_000
    import sqlite3

    rows = sqlite3.connect(db).execute("SELECT channel, status FROM audit").fetchall()
    assert rows == [("web", 200)]
