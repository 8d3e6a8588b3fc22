"""Owner-only files and folders for what holds children's data: databases, run folders, the face-crop cache.

Folders gsscreen creates get mode 0700 and its data files 0600, whatever the umask: a photo study's crops, answers
and audit logs are not for other accounts on a shared machine. Existing folders the user chose (the current
directory, a home folder) are never re-moded; only what gsscreen makes is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (and missing parents) owner-only; an existing folder is left as it is. Returns the path."""
    p = Path(path)
    missing = []
    q = p
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(d, DIR_MODE)  # mkdir's mode is filtered by the umask
    return p


def private_file(path: str | Path) -> Path:
    """Make ``path`` owner-only, creating it empty first when missing (so SQLite's -wal/-shm files, which copy the
    database's mode, are owner-only too). Returns the path."""
    p = Path(path)
    if not p.exists():
        private_dir(p.parent)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        os.close(fd)
    os.chmod(p, FILE_MODE)
    return p


def named_os_error(exc: OSError, path: str | Path) -> OSError:
    """``exc`` with ``path`` as its file name when it has none (a write through a file object names no file)."""
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path)) if exc.errno else OSError(f"{path}: {exc}")


def atomic_write_with(path: str | Path, write: Callable[[BinaryIO], None], mode: int = FILE_MODE) -> None:
    """Run ``write(file)`` into ``path`` all or nothing: a temporary file in the same folder (owner-only by
    default), then a rename. On any failure (a full disk, a read-only folder, an error inside ``write``) the
    temporary file is removed and the error, naming ``path``, is raised: no zero-byte or half-written file is left
    for a rerun to trust."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, p)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise named_os_error(exc, p) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write ``data`` to ``path`` all or nothing (see :func:`atomic_write_with`)."""
    atomic_write_with(path, lambda f: f.write(data), mode)
