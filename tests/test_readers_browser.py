"""End to end in real headless Chromium: a reader signs in, sees each photo for the display time, answers by
clicking and with the keyboard, reloads mid-way and resumes; the answers land in SQLite and the export."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from gsscreen.web.local_server import CHROMIUM_PATH, launch_chromium, serve_in_thread
from gsscreen.web.readers_app import (
    EXPORT_COLUMNS,
    ReadersConfig,
    create_app,
    create_invitation,
    export_answers,
    write_example_cohort,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # ~10-15 s on 2 busy cores: Chromium start-up plus four 1 s displays
    pytest.mark.skipif(not CHROMIUM_PATH.is_file(), reason=f"Chromium not found at {CHROMIUM_PATH}"),
]


@pytest.fixture
def live_study(tmp_path: Path) -> Iterator[tuple[str, ReadersConfig]]:
    """The reader study (4 example photos, 1 s display) served by uvicorn on a free port in a background thread."""
    cohort = write_example_cohort(tmp_path / "cohort", n=4)
    cfg = ReadersConfig(cohort=cohort, db=tmp_path / "readers.sqlite", seconds=1.0, confidence=True, port=0)
    with serve_in_thread(create_app(cfg)) as base:
        yield base, cfg


def test_reader_session_in_chromium(live_study: tuple[str, ReadersConfig], tmp_path: Path) -> None:
    # Playwright is a declared dev dependency: missing, it is an error, not a skip.
    from playwright import sync_api

    base, cfg = live_study

    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
            page.set_default_timeout(10_000)
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))

            page.goto(base + "/")
            page.wait_for_selector("#signin:not([hidden])")
            assert page.inner_text("#signin .js-seconds") == "1"
            page.fill("#name", "Dr. Test Reader")
            page.fill("#invite", create_invitation(cfg.db, "Dr. Test Reader", "junior"))
            page.check("input[name=role][value=junior]")
            page.click("#signin-button")
            page.wait_for_selector("#ready:not([hidden])")
            assert page.inner_text("#progress") == "0 / 4"
            page.click("#start")

            calls = [("GS", 5), ("control", 2), ("control", 4), ("GS", 1)]
            for i, (answer, confidence) in enumerate(calls):
                # While the photo shows, it is alone on screen: no cards, no text, the image from a blob: URL.
                page.wait_for_selector("#viewer:not([hidden])")
                assert page.is_hidden("#answer")
                assert page.evaluate("document.getElementById('photo').naturalWidth") > 100
                assert page.get_attribute("#photo", "src").startswith("blob:")
                assert page.inner_text("#viewer").strip() == ""
                if i == 2:
                    # Reload while photo 3 is on screen (a closed tab): the study resumes at photo 3.
                    page.reload()
                    page.wait_for_selector("#ready:not([hidden])")
                    assert "answered 2 of 4" in page.inner_text("#ready-text")
                    assert page.inner_text("#progress") == "2 / 4"
                    page.keyboard.press("Space")
                    page.wait_for_selector("#viewer:not([hidden])")
                # After the display time the photo is gone and the question appears.
                page.wait_for_selector("#answer:not([hidden])")
                assert page.is_hidden("#viewer")
                assert page.inner_text("#answer-progress") == f"Photo {i + 1} of 4"
                assert page.is_disabled("#submit")
                if i == 3:  # the last one with the keyboard
                    page.keyboard.press("g")
                    page.keyboard.press(str(confidence))
                    page.keyboard.press("Enter")
                else:
                    page.click(f"[data-answer={answer}]")
                    page.click(f"[data-confidence='{confidence}']")
                    assert page.get_attribute(f"[data-answer={answer}]", "aria-pressed") == "true"
                    page.click("#submit")

            page.wait_for_selector("#done:not([hidden])")
            assert "all 4 photos" in page.inner_text("#done-text")
            assert page.inner_text("#progress") == "4 / 4"
            assert not errors, errors
            # Everything came from the study server (no CDN, no fonts, nothing else).
            assert requests and all(u.startswith((base, "blob:")) for u in requests), requests
            # The page never saw a file name or a label.
            html = page.content()
            assert "astronaut" not in html and "grace_hopper" not in html and "photos/" not in html
        finally:
            browser.close()

    out = tmp_path / "readers.csv"
    assert export_answers(cfg.db, out) == 4
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == list(EXPORT_COLUMNS)
    assert [(r["answer"], int(r["confidence"])) for r in rows] == calls
    assert {r["reader"] for r in rows} == {"Dr. Test Reader"} and {r["role"] for r in rows} == {"junior"}
    # The photo is answerable only after it was hidden, so every answer took at least the display time.
    assert all(float(r["seconds"]) >= cfg.seconds for r in rows)
    assert [int(r["views"]) for r in rows] == [1, 1, 2, 1]  # photo 3 was shown again after the reload
    cohort_images = {r["image"] for r in csv.DictReader(cfg.cohort.open(encoding="utf-8"))}
    assert {r["photo"] for r in rows} == cohort_images
