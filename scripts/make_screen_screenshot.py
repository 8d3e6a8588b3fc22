"""Screenshots of the screening app in headless Chromium → ``docs/``:

- ``screen_result.png``: a clear result (the astronaut portrait);
- ``screen_inconclusive.png``: an inconclusive result (the same portrait shrunk to a 96-px thumbnail);
- ``screen_batch.png``: several photos in one upload (results table, CSV download; one photo of two people);
- ``screen_print.png``: the print layout (date, model id, the clinician's reference);
- ``screen_zh.png``: the result page in Chinese (zh-CN).

Only the embedded public-domain portraits (:mod:`gsscreen.examples`) and images made from them are used. The model
is the shipped demo model when installed, else ``--model``, else a FaceNet pack with random heads (the layout and
pipeline are real; its P(GS) is meaningless).

    .venv/bin/python scripts/make_screen_screenshot.py [--model M] [--out-dir docs]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from gsscreen.web.local_server import launch_chromium, serve_in_thread

ROOT = Path(__file__).resolve().parents[1]


def photos(tmp: Path) -> dict[str, Path]:
    """The portraits as files: full size, a thumbnail, and a synthetic photo of two people side by side."""
    from PIL import Image

    from gsscreen.examples import example_image

    a, g = example_image("astronaut"), example_image("grace_hopper")
    h = min(a.shape[0], g.shape[0])
    pair = np.concatenate([np.asarray(Image.fromarray(a).resize((round(a.shape[1] * h / a.shape[0]), h))),
                           np.asarray(Image.fromarray(g).resize((round(g.shape[1] * h / g.shape[0]), h)))], axis=1)
    out = {"astronaut.jpg": a, "grace_hopper.jpg": g, "two_people.jpg": pair,
           "astronaut_thumbnail.jpg": np.asarray(Image.fromarray(a).resize((96, 96), Image.Resampling.LANCZOS))}
    paths = {}
    for name, img in out.items():
        paths[name] = tmp / name
        Image.fromarray(img).save(paths[name], quality=92)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

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
    p = photos(tmp)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)

    def upload(page, base: str, files: list[Path], ready: str, age: str | None = "36") -> None:
        page.goto(f"{base}/")
        page.set_input_files("#photo", [str(f) for f in files])
        if age:
            page.fill("input[name=age_months]", age)
        page.click("button[type=submit]")
        page.wait_for_selector(ready, timeout=300_000)

    with serve_in_thread(app) as base, sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 900, "height": 900})
        upload(page, base, [p["astronaut.jpg"]], "#p-gs")
        page.screenshot(path=str(out / "screen_result.png"), full_page=True)
        page.fill("#reference", "Clinic no. 2024-0815")
        page.emulate_media(media="print")
        page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
        page.screenshot(path=str(out / "screen_print.png"), full_page=True)
        page.emulate_media(media="screen")
        page.set_viewport_size({"width": 900, "height": 900})
        upload(page, base, [p["astronaut_thumbnail.jpg"]], "#call")
        page.screenshot(path=str(out / "screen_inconclusive.png"), full_page=True)
        upload(page, base, [p["astronaut.jpg"], p["grace_hopper.jpg"], p["two_people.jpg"],
                            p["astronaut_thumbnail.jpg"]], "#results-table")
        page.screenshot(path=str(out / "screen_batch.png"), full_page=True)
        zh = browser.new_page(viewport={"width": 900, "height": 900}, locale="zh-CN",
                              extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"})
        upload(zh, base, [p["grace_hopper.jpg"]], "#p-gs")
        zh.screenshot(path=str(out / "screen_zh.png"), full_page=True)
        browser.close()
    print(f"wrote screen_result, screen_print, screen_inconclusive, screen_batch, screen_zh .png in {out} "
          f"(model: {pack})")


if __name__ == "__main__":
    main()
