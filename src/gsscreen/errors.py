"""One family of user-facing errors, and the one place that turns them into a line on the console.

Every error a user can cause (a wrong argument, a missing or unreadable file, a cohort table with a bad label, a
tampered model pack, a full or read-only disk) is a :class:`GsscreenError`, or an ``OSError``, whose message names the
file and the problem. ``gsscreen``'s root (:func:`cli_errors`) prints that message as one line and exits with status 2;
a traceback is kept for real bugs.
"""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("gsscreen")

# Exit status of a command stopped by a user error (typer/click use 2 for usage errors too).
USER_ERROR_EXIT = 2


class GsscreenError(Exception):
    """Base of every error a user can cause; ``str(err)`` is a complete one-line explanation."""


def describe_os_error(exc: OSError) -> str:
    """``OSError`` → ``"PATH: problem"`` in plain words (no errno names, no Python reprs)."""
    plain = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOENT: "no such file or folder",
        errno.EISDIR: "is a folder, not a file",
        errno.ENOTDIR: "a part of the path is not a folder",
    }
    problem = plain.get(exc.errno or -1) or (exc.strerror or str(exc) or type(exc).__name__)
    path = exc.filename if exc.filename is not None else None
    return f"{path}: {problem}" if path else problem


def describe_image_error(exc: BaseException) -> str:
    """Why a photo could not be decoded, in plain words: no Python reprs (``<_io.BytesIO object at 0x…>``)."""
    import re

    name = type(exc).__name__
    if name == "UnidentifiedImageError":
        return "not an image, or an image format gsscreen cannot read"
    if name in ("DecompressionBombError", "DecompressionBombWarning"):
        return "image too large, refused as a possible decompression bomb"
    text = re.sub(r"<[^<>]* object at 0x[0-9a-fA-F]+>", "", str(exc))
    text = re.sub(r"\(\s*\)|\s+", " ", text).strip(" :")
    if "truncated" in text.lower() or isinstance(exc, (EOFError, SyntaxError)):
        return f"truncated or corrupt image data ({text})" if text else "truncated or corrupt image data"
    return f"corrupt image ({text})" if text else "corrupt image"


def one_line(exc: BaseException) -> str:
    """The message of a user-facing error as a single line."""
    text = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
    return " ".join(text.split()) or type(exc).__name__


class ConsoleWarnings(logging.Handler):
    """Warnings and errors of the ``gsscreen`` loggers as ``gsscreen: warning: ...`` lines on stderr.

    Commands also log to files (``study.log``), but a user reads the console: a warning only in a log file is a
    warning nobody sees. Writes to whatever ``sys.stderr`` is at the time (test runners swap it).
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "on_console", False):  # already printed by cli_errors
            return
        try:
            print(f"gsscreen: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr, flush=True)
        except Exception:  # logging must never take the command down
            self.handleError(record)


def console_warnings() -> None:
    """Attach :class:`ConsoleWarnings` to the ``gsscreen`` logger (once; called at the CLI root)."""
    logger = logging.getLogger("gsscreen")
    if not any(isinstance(h, ConsoleWarnings) for h in logger.handlers):
        logger.addHandler(ConsoleWarnings())


@contextmanager
def cli_errors() -> Iterator[None]:
    """Run a command; a :class:`GsscreenError` or ``OSError`` becomes one line on stderr and exit status 2."""
    try:
        yield
    except (GsscreenError, OSError) as exc:
        message = one_line(exc)
        log.error(message, extra={"on_console": True})
        print(f"gsscreen: error: {message}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT) from None
