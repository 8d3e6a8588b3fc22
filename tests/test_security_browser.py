"""Cross-site request forgery in real headless Chromium (issue #11, item 3): a page on another localhost port posts
the astronaut photo to the screening app as ``text/plain`` and as a no-cors multipart form (to the API and to the
HTML form's endpoint). Nothing is screened, and the audit log shows one refusal per attempt."""

from __future__ import annotations

import base64
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from screen_support import fabricate_run

from gsscreen.modelpack import export_model_pack, load_model_pack
from gsscreen.web.local_server import CHROMIUM_PATH, launch_chromium, serve_in_thread
from gsscreen.web.screen_app import ScreenAppConfig, create_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM_PATH.is_file(), reason=f"Chromium not found at {CHROMIUM_PATH}"),
]

ATTACK = """<!doctype html><html><body><script>
const bytes = Uint8Array.from(atob(%(photo)s), c => c.charCodeAt(0));
const target = %(target)s;
async function attack() {
  const out = [];
  async function post(url, opts) {
    try { await fetch(url, Object.assign({method: "POST", mode: "no-cors", credentials: "include"}, opts));
          out.push("sent"); }
    catch (e) { out.push("error " + e); }
  }
  await post(target + "/api/screen", {headers: {"Content-Type": "text/plain"}, body: new Blob([bytes])});
  const fd = new FormData();
  fd.append("photo", new Blob([bytes], {type: "image/jpeg"}), "child.jpg");
  await post(target + "/api/screen", {body: fd});
  const fd2 = new FormData();
  fd2.append("photo", new Blob([bytes], {type: "image/jpeg"}), "child.jpg");
  await post(target + "/screen", {body: fd2});
  document.title = "done: " + out.join(", ");
}
attack();
</script></body></html>"""


def _attacker_app(html: str):  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def page(_request):  # type: ignore[no-untyped-def]
        return HTMLResponse(html)

    return Starlette(routes=[Route("/", page)])


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    pack = export_model_pack(fabricate_run(tmp_path / "run", folds=2), tmp_path / "m.gss")
    db = tmp_path / "audit.sqlite"
    app = create_app(ScreenAppConfig(audit_db=str(db)), load_model_pack(pack))
    with serve_in_thread(app) as url:
        yield url, db


def test_another_origin_cannot_screen(live_app: tuple[str, Path], astronaut: np.ndarray) -> None:
    from playwright.sync_api import sync_playwright

    url, db = live_app
    buf = io.BytesIO()
    Image.fromarray(astronaut).resize((256, 256)).save(buf, format="JPEG", quality=90)
    target = url.replace("127.0.0.1", "localhost")  # the setting: localhost, another port
    html = ATTACK % {"photo": json.dumps(base64.b64encode(buf.getvalue()).decode()), "target": json.dumps(target)}
    with serve_in_thread(_attacker_app(html)) as evil, sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page()
            page.goto(evil.replace("127.0.0.1", "localhost") + "/")
            page.wait_for_function("document.title.startsWith('done')", timeout=60_000)
            assert page.title() == "done: sent, sent, sent"  # the browser did send all three (no-cors)
        finally:
            browser.close()
    rows = sqlite3.connect(db).execute("SELECT channel, status, p_gs, problem FROM audit ORDER BY id").fetchall()
    assert len(rows) == 3, rows
    assert all(p_gs is None for _, _, p_gs, _ in rows)  # nothing screened
    assert [(ch, st) for ch, st, _, _ in rows] == [("api", 403), ("api", 403), ("web", 403)]
    assert all("cross" in problem for *_, problem in rows)
