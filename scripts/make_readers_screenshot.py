"""Make ``docs/readers_app.png``: the reader-study app in headless Chromium (sign-in, photo, question).

Uses only the embedded public-domain example portraits (never ../shared/data). Run from the repository root:

    .venv/bin/python scripts/make_readers_screenshot.py [-o docs/readers_app.png]
"""

from __future__ import annotations

import argparse
import base64
import tempfile
from pathlib import Path

from gsscreen.web.local_server import CHROMIUM_PATH, launch_chromium, serve_in_thread

PANEL = {"width": 880, "height": 620}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/readers_app.png"))
    args = parser.parse_args()
    if not CHROMIUM_PATH.is_file():
        raise SystemExit(f"Chromium not found at {CHROMIUM_PATH}")

    from playwright.sync_api import sync_playwright

    from gsscreen.web.readers_app import ReadersConfig, create_app, write_example_cohort

    with tempfile.TemporaryDirectory() as tmp:
        cohort = write_example_cohort(Path(tmp) / "cohort", n=8)
        # The paper's 10 s display time, so the instructions on the pictures show the default.
        cfg = ReadersConfig(cohort=cohort, db=Path(tmp) / "readers.sqlite", seconds=10.0)
        shots: list[tuple[str, bytes]] = []
        with serve_in_thread(create_app(cfg)) as base, sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_context(viewport=PANEL, device_scale_factor=1).new_page()
            page.goto(base + "/")
            page.wait_for_selector("#signin:not([hidden])")
            page.fill("#name", "Dr. A. Chen")
            page.check("input[name=role][value=senior]")
            shots.append(("1 · Sign in: name and role", page.screenshot()))
            page.click("#signin-button")
            page.wait_for_selector("#ready:not([hidden])")
            page.click("#start")
            page.wait_for_selector("#viewer:not([hidden])")
            page.wait_for_timeout(300)
            shots.append(("2 · The photo, alone on screen, for the display time (10 s)", page.screenshot()))
            page.wait_for_selector("#answer:not([hidden])", timeout=15_000)
            page.click("[data-answer=GS]")
            page.click("[data-confidence='4']")
            shots.append(("3 · Then the call and a 1–5 confidence", page.screenshot()))

            # Lay the panels out in the browser too, so the captions use the same system fonts as the app.
            figures = "".join(
                f'<figure><img src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                f"<figcaption>{caption}</figcaption></figure>"
                for caption, png in shots
            )
            sheet = browser.new_page(viewport={"width": 3 * PANEL["width"] + 80, "height": 700})
            sheet.set_content(
                "<style>body{margin:0;padding:20px;background:#e5e7eb;font:15px system-ui,sans-serif;color:#1f2933;"
                "display:grid;grid-template-columns:1fr 1fr 1fr;gap:20px}figure{margin:0}img{width:100%;display:block;"
                "border:1px solid #c4cad1;border-radius:6px}figcaption{margin-top:8px;font-weight:600}</style>"
                + figures
            )
            sheet.wait_for_load_state()
            args.output.parent.mkdir(parents=True, exist_ok=True)
            sheet.screenshot(path=str(args.output), full_page=True)
            browser.close()
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
