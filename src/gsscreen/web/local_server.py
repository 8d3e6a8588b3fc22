"""Serve a web app on this machine for a short while and look at it in headless Chromium.

Shared by the browser tests (``tests/test_*_browser.py``) and the screenshot scripts (``scripts/make_*_screenshot.py``):

- :data:`CHROMIUM_PATH`, :data:`CHROMIUM_ARGS`: Debian's Chromium and the flags that keep it offline and quiet.
- :func:`serve_in_thread`: run an ASGI app (FastAPI) with uvicorn on a free loopback port in a daemon thread.
- :func:`launch_chromium`: start that Chromium through a Playwright instance.

uvicorn is imported lazily (inside :func:`serve_in_thread`) and Playwright is never imported here (the caller passes
its ``sync_playwright()`` object), so importing this module costs nothing and needs neither.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_PATH = Path("/usr/bin/chromium")
# Offline, quiet Chromium: no first-run, no background fetches, no component or sync traffic.
CHROMIUM_ARGS: list[str] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def serve_in_thread(app: Any, *, host: str = "127.0.0.1", start_timeout: float = 15.0,
                    stop_timeout: float = 10.0) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free port of ``host`` in a daemon thread; yields the base URL.

    Args:
        app: an ASGI application (e.g. a FastAPI app).
        host: the loopback address to listen on.
        start_timeout: seconds to wait for uvicorn to report it started.
        stop_timeout: seconds to wait for the server thread to finish on exit.

    Yields:
        ``"http://<host>:<port>"`` without a trailing slash.

    Raises:
        RuntimeError: uvicorn did not start within ``start_timeout`` seconds, or its thread died first.
    """
    import uvicorn

    # Bind first and hand the socket to uvicorn: no race for the port between choosing and listening.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        port = sock.getsockname()[1]
        # lifespan="off": the apps keep no start-up state, and it spares a noisy warning per start.
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + start_timeout
            while not server.started:
                if time.monotonic() > deadline or not thread.is_alive():
                    raise RuntimeError(f"uvicorn did not start on {host}:{port} within {start_timeout:g} s")
                time.sleep(0.05)
            yield f"http://{host}:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=stop_timeout)
    finally:
        sock.close()


def launch_chromium(playwright: Any, **kwargs: Any) -> Any:
    """Launch :data:`CHROMIUM_PATH` headless with :data:`CHROMIUM_ARGS` through a Playwright instance.

    Args:
        playwright: the object ``playwright.sync_api.sync_playwright()`` yields.
        **kwargs: further keyword arguments for ``playwright.chromium.launch``.

    Returns:
        The Playwright ``Browser``; the caller closes it.

    Raises:
        FileNotFoundError: Chromium is not at :data:`CHROMIUM_PATH`.
    """
    if not CHROMIUM_PATH.is_file():
        raise FileNotFoundError(f"Chromium not found at {CHROMIUM_PATH}")
    return playwright.chromium.launch(executable_path=str(CHROMIUM_PATH), headless=True, args=CHROMIUM_ARGS,
                                      **kwargs)
