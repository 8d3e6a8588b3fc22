"""Worker processes that end with their parent.

A pool worker blocked on its task queue does not notice that the process that started it was killed (SIGKILL
runs no clean-up): it would stay alive, holding memory and the resource tracker's pipe. :func:`exit_with_parent`,
called in the worker's initializer, asks Linux to send the worker SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``) and, on every platform, starts a watchdog thread that exits the worker once its
parent is gone (re-parenting changes ``os.getppid()``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


def exit_with_parent(poll_seconds: float = 1.0) -> None:
    """Make this process exit when its parent process dies (see the module docstring)."""
    import multiprocessing

    # A multiprocessing worker knows its real parent even if that died before this runs (then getppid() would
    # already be the re-parenting process and the watchdog would wait for nothing).
    known = multiprocessing.parent_process()
    parent = known.pid if known is not None and known.pid else os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
