"""End to end in real headless Chromium: choose the astronaut photo, submit, and read the result page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from screen_support import encode, fabricate_run

from gsscreen.modelpack import export_model_pack, load_model_pack
from gsscreen.web.local_server import CHROMIUM_PATH, launch_chromium, serve_in_thread
from gsscreen.web.screen_app import ScreenAppConfig, create_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM_PATH.is_file(), reason=f"Chromium not found at {CHROMIUM_PATH}"),
]


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    pack = export_model_pack(fabricate_run(tmp_path / "run", folds=2), tmp_path / "m.gss")
    db = tmp_path / "audit.sqlite"
    app = create_app(ScreenAppConfig(audit_db=str(db)), load_model_pack(pack))
    with serve_in_thread(app) as url:
        yield url, db


def test_upload_astronaut_in_chromium(live_app: tuple[str, Path], tmp_path: Path, astronaut) -> None:
    from playwright.sync_api import sync_playwright

    url, db = live_app
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(encode(astronaut))
    external: list[str] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
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
