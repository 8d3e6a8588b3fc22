"""Make ``docs/evaluate_report.png``: parts of a ``gsscreen evaluate`` report (flow, accuracy with CIs, calibration,
decision curve, subgroups) in headless Chromium.

The evaluation report holds no Grad-CAM gallery, and only its numeric sections are captured. Photos of children
from ``../shared/data`` must never reach ``docs/`` (eyes covered or not), so before the capture every picture that
could hold a photo is removed from the page: any ``<img>`` that is not an SVG drawing, any SVG that embeds a raster
``<image>``, and ``<canvas>``/``<video>``/``<picture>``/CSS background images; the number removed is printed.
Run from the repository root after ``gsscreen evaluate``:

    .venv/bin/python scripts/make_evaluate_screenshot.py EVAL_DIR [-o docs/evaluate_report.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from gsscreen.web.local_server import launch_chromium

SECTIONS = ("cohort", "evaluation", "subgroups")

# Runs in the page: removes every element that could show a photo and returns how many were removed. A figure the
# report draws (flow, reliability, decision curve) is an SVG data URI without an embedded <image>; anything else
# is a raster or may hold one.
HIDE_PHOTOS_JS = """() => {
  let n = 0;
  const drop = el => { el.remove(); n += 1; };
  const svgHasRaster = src => {
    try {
      const body = src.includes(';base64,') ? atob(src.split(';base64,')[1])
                                             : decodeURIComponent(src.split(',').slice(1).join(','));
      return /<image[\\s>]/i.test(body) || /data:image\\/(png|jpe?g|gif|webp)/i.test(body);
    } catch (e) { return true; }
  };
  document.querySelectorAll('img').forEach(img => {
    const src = img.getAttribute('src') || '';
    if (!src.startsWith('data:image/svg+xml') || svgHasRaster(src)) drop(img);
  });
  document.querySelectorAll('svg image, canvas, video, picture, object, embed, iframe').forEach(drop);
  document.querySelectorAll('*').forEach(el => {
    const bg = getComputedStyle(el).backgroundImage;
    if (bg && bg !== 'none') { el.style.backgroundImage = 'none'; n += 1; }
  });
  return n;
}"""


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
        removed = page.evaluate(HIDE_PHOTOS_JS)
        # Folded lists (the left-out photos by file name) stay folded: the picture shows the counts, not the lists.
        page.evaluate("() => document.querySelectorAll('details[open]').forEach(d => d.removeAttribute('open'))")
        print(f"{removed} picture(s) that could show a photo removed before the capture")
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
