"""Make ``docs/evaluate_report.png``: parts of a ``gsscreen evaluate`` report (flow, accuracy with CIs, calibration,
decision curve, subgroups) in headless Chromium.

The evaluation report holds no photo of a face (no Grad-CAM gallery), and only its numeric sections are captured:
nothing from ``../shared/data`` reaches the picture. Run from the repository root after ``gsscreen evaluate``:

    .venv/bin/python scripts/make_evaluate_screenshot.py EVAL_DIR [-o docs/evaluate_report.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from gsscreen.web.local_server import launch_chromium

SECTIONS = ("cohort", "evaluation", "subgroups")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=Path("docs/evaluate_report.png"))
    ap.add_argument("--width", type=int, default=1000)
    args = ap.parse_args()
    report = (args.eval_dir / "report" / "report.html").resolve()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="eval_shot_"))
    parts = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": args.width, "height": 1200})
        page.goto(report.as_uri())
        for sid in SECTIONS:
            el = page.query_selector(f"section#{sid}")
            if el is None:
                continue
            path = tmp / f"{sid}.png"
            el.screenshot(path=str(path))
            parts.append(Image.open(path).convert("RGB"))
        browser.close()
    if not parts:
        raise SystemExit(f"{report}: none of the sections {SECTIONS} found")
    sheet = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts)), "white")
    y = 0
    for p in parts:
        sheet.paste(p, (0, y))
        y += p.height
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, optimize=True)
    print(f"wrote {args.output} ({sheet.width}×{sheet.height})")


if __name__ == "__main__":
    main()
