"""Screenshot of the screening app's result page for the astronaut photo → ``docs/screen_result.png``.

Uses the shipped demo model when installed (rerun this script after the demo model lands), else ``--model``, else a
FaceNet pack with random heads (the page layout and heatmap pipeline are real; its P(GS) is meaningless).

    .venv/bin/python scripts/make_screen_screenshot.py [--model M] [--out docs/screen_result.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from gsscreen.web.local_server import launch_chromium, serve_in_thread

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screen_result.png")
    ap.add_argument("--example", default="astronaut", help="embedded public-domain portrait: astronaut or grace_hopper")
    args = ap.parse_args()

    from PIL import Image
    from playwright.sync_api import sync_playwright

    from gsscreen.examples import example_image
    from gsscreen.modelpack import load_model_pack
    from gsscreen.screening import demo_model_path
    from gsscreen.web.screen_app import ScreenAppConfig, create_app

    tmp = Path(tempfile.mkdtemp(prefix="screen_shot_"))
    pack = args.model or (demo_model_path() if demo_model_path().is_file() else None)
    if pack is None:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_screen import facenet_pack

        pack = facenet_pack(tmp)
    app = create_app(ScreenAppConfig(audit_db=str(tmp / "audit.sqlite")), load_model_pack(pack))
    photo = tmp / f"{args.example}.jpg"
    Image.fromarray(example_image(args.example)).save(photo, quality=92)
    with serve_in_thread(app) as base, sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 860, "height": 900})
        page.goto(f"{base}/")
        page.set_input_files("#photo", str(photo))
        page.fill("input[name=age_months]", "36")
        page.click("button[type=submit]")
        page.wait_for_selector("#p-gs", timeout=600_000)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    print(f"wrote {args.out} (model: {pack})")


if __name__ == "__main__":
    main()
