"""End to end in real headless Chromium: choose the astronaut photo, submit, and read the result page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from screen_support import encode, fabricate_run

from gsscreen.modelpack import ExportConfig, export_model_pack, load_model_pack
from gsscreen.web import i18n
from gsscreen.web.local_server import CHROMIUM_PATH, launch_chromium, serve_in_thread
from gsscreen.web.screen_app import ScreenAppConfig, create_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM_PATH.is_file(), reason=f"Chromium not found at {CHROMIUM_PATH}"),
]


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    pack = export_model_pack(fabricate_run(tmp_path / "run", folds=2), tmp_path / "m.gss",
                             ExportConfig(age_range_months=(12, 120)))
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
            assert call in (i18n.EN["outcome.refer"], i18n.EN["outcome.no_signal"], i18n.EN["outcome.inconclusive"])
            # the original photo (boxed) and the heatmap's colour bar are decoded and shown
            assert page.eval_on_selector("#original", "img => img.complete ? img.naturalWidth : 0") > 100
            assert page.eval_on_selector(".colorbar img", "img => img.complete ? img.naturalWidth : 0") == 256
            # the threshold mark sits where its label says, on the same meter
            mark = page.eval_on_selector(".meter .mark", "e => parseFloat(e.style.left)")
            label = page.inner_text(".meter .mark-label")
            thr = float(label.split()[1])
            assert abs(mark - min(100 * thr, 99.5)) < 0.2
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


def test_batch_print_and_chinese_in_chromium(live_app: tuple[str, Path], tmp_path: Path, astronaut,
                                             grace_hopper) -> None:
    """Several photos → table + CSV; the print layout shows date, model and the typed reference, which no request
    carries; a Chinese browser gets the Chinese page."""
    from playwright.sync_api import sync_playwright

    url, _db = live_app
    files = []
    for name, img in (("astronaut.jpg", astronaut), ("grace.png", grace_hopper)):
        (tmp_path / name).write_bytes(encode(img, "PNG" if name.endswith("png") else "JPEG"))
        files.append(str(tmp_path / name))
    (tmp_path / "notes.txt").write_bytes(b"not a photo")
    files.append(str(tmp_path / "notes.txt"))
    posted: list[str] = []
    after_ref: list[str] = []  # every request made once the reference was typed
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1100})
            page.on("request", lambda req: posted.append(req.url) if req.method == "POST" else None)
            page.goto(url + "/")
            page.set_input_files("#photo", files)
            assert page.inner_text("#chosen") == "3 photo(s) chosen"
            page.click("button[type=submit]")
            page.wait_for_selector("#results-table", timeout=120_000)
            rows = page.query_selector_all("#results-table tbody tr")
            assert len(rows) == 3 and "not a photo" in rows[2].inner_text()
            with page.expect_download() as dl:
                page.click("#csv")
            text = Path(dl.value.path()).read_text(encoding="utf-8-sig")
            assert text.splitlines()[0].startswith("photo,outcome,") and len(text.splitlines()) == 4
            page.on("request", lambda req: after_ref.append(req.url))
            page.fill("#reference", "CLINIC-REF-4711")
            page.emulate_media(media="print")
            assert page.inner_text("#reference-print") == "CLINIC-REF-4711"
            page.wait_for_timeout(300)
            assert after_ref == []  # typing and printing the reference sends nothing anywhere
            assert page.is_visible("#reference-print") and not page.is_visible("#print")
            assert not page.is_visible("#csv") and page.is_visible("#print-date")
            page.emulate_media(media="screen")
            zh = browser.new_page(locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})
            zh.goto(url + "/")
            assert zh.inner_text("button[type=submit]") == i18n.ZH["index.submit"]
            zh.set_input_files("#photo", files[0])
            zh.click("button[type=submit]")
            zh.wait_for_selector("#p-gs", timeout=60_000)
            assert zh.inner_text("#call") in (i18n.ZH["outcome.refer"], i18n.ZH["outcome.no_signal"],
                                               i18n.ZH["outcome.inconclusive"])
        finally:
            browser.close()
    assert len(posted) == 1  # only the batch upload itself: the reference field belongs to no form
