"""The reader study: how the paper's physicians were tested, as a local web app.

Each reader (a name and a role, ``junior`` or ``senior``) sees every photo of a cohort once, in an order of their
own (random, seeded per reader, stored in the database so it never changes between sessions). A photo is shown
alone for a fixed time (10 s in Hong et al. 2021), then hidden; the reader then calls "genetic syndrome" or
"no genetic syndrome" and, optionally, a 1–5 confidence, and the next photo appears.

Design points:

- **Nothing that identifies a photo reaches the browser**: photos are served by opaque ids (a salted SHA-256 of the
  cohort's image path, the salt living only in the database), re-encoded as JPEG (which drops EXIF and other
  metadata that might carry names or diagnoses), and labels are never read into the app's state at all.
- **Only the current photo can be fetched**: a reader cannot page back to an earlier photo or ahead to a later one.
- **Answers are written as they are given** to SQLite (WAL mode, one connection per request, write transactions
  taken with ``BEGIN IMMEDIATE``), with server-side timing: ``seconds`` runs from the moment the image bytes were
  served to the moment the answer arrived. A photo re-shown after a reload counts an extra ``view`` and the clock
  restarts; ``views`` is exported so an analyst can see it.
- **One answer per reader and photo** (the table's primary key): a second answer is refused with 409.
- **Invitations** (issue #11): a reader signs in only with the code the organiser made for them
  (``gsscreen readers invite NAME``; stored as a SHA-256, bound to the name and role), so nobody can become another
  reader. Off loopback the app still serves photos only to invited, signed-in readers, behind the same cross-site
  guard as the screening app (:mod:`gsscreen.web.security`).
- **The display rule on the server**: the clock runs from the *first* display; a photo is not served again once its
  display time is over, and an answer later than ``seconds + answer_seconds`` after the first display is stored
  with ``late = 1`` (exported, and counted by ``readers export``).
- **CSV cells** that a spreadsheet would run as a formula (starting with ``= + - @``, tab or CR) are escaped.

Public API: :class:`ReadersConfig`, :func:`create_app`, :func:`serve`, :class:`ReaderStudy`,
:func:`read_cohort_images`, :func:`export_answers`, :func:`read_answers`, :func:`write_example_cohort`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import random
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

# FastAPI resolves the route functions' annotations from this module's globals, so these live at module level
# (the CLI imports this module only when a readers command runs).
from fastapi import Cookie, FastAPI, Header, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from gsscreen.errors import GsscreenError

log = logging.getLogger(__name__)

ROLES = ("junior", "senior")
ANSWERS = ("GS", "control")
COOKIE_NAME = "gsscreen_readers_token"
TOKEN_HEADER = "X-Reader-Token"
STATIC_DIR = Path(__file__).resolve().parent / "readers"
EXPORT_COLUMNS = ("reader", "role", "photo", "answer", "confidence", "seconds", "answered_at", "views", "late")
_NAME_MAX = 80

# Images the browser gets: JPEG, longest side at most this many pixels (a phone photo is 4000 px; a screen is not).
_DEFAULT_MAX_SIDE = 1600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS photos (
    photo_id TEXT PRIMARY KEY,
    image TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS readers (
    reader_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('junior', 'senior')),
    created_at TEXT NOT NULL,
    UNIQUE (name_key, role)
);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY,
    reader_id INTEGER NOT NULL REFERENCES readers (reader_id),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    reader_id INTEGER NOT NULL REFERENCES readers (reader_id),
    position INTEGER NOT NULL,
    photo_id TEXT NOT NULL REFERENCES photos (photo_id),
    first_served_at REAL,
    last_served_at REAL,
    views INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (reader_id, position),
    UNIQUE (reader_id, photo_id)
);
CREATE TABLE IF NOT EXISTS answers (
    reader_id INTEGER NOT NULL REFERENCES readers (reader_id),
    photo_id TEXT NOT NULL REFERENCES photos (photo_id),
    answer TEXT NOT NULL CHECK (answer IN ('GS', 'control')),
    confidence INTEGER CHECK (confidence BETWEEN 1 AND 5),
    seconds REAL NOT NULL,
    answered_at TEXT NOT NULL,
    late INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (reader_id, photo_id)
);
CREATE TABLE IF NOT EXISTS invitations (
    code_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('junior', 'senior')),
    created_at TEXT NOT NULL,
    UNIQUE (name_key, role)
);
"""


@dataclass
class ReadersConfig:
    """Configuration of ``gsscreen readers serve`` (stored in the database's ``meta`` table at every start).

    ``seconds`` is the display time of each photo in seconds (the paper: 10). ``answer_seconds``: time to answer
    after the photo is hidden; a later answer is kept but marked ``late``. ``confidence`` asks for a 1–5
    confidence with every answer. ``seed`` seeds every reader's photo order (together with name and role).
    """

    cohort: Path = Path("cohort.csv")
    db: Path = Path("readers.sqlite")
    seconds: float = 10.0
    confidence: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    seed: int = 0
    max_side: int = _DEFAULT_MAX_SIDE
    answer_seconds: float = 10.0
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"seconds must be > 0 (display time of each photo), got {self.seconds}")
        if self.max_side < 64:
            raise ValueError(f"max_side must be >= 64 pixels, got {self.max_side}")


@dataclass(frozen=True)
class StudyPhoto:
    """One photo of the study: ``image`` its name (:func:`photo_key`, the cohort's path as written), ``path`` the
    file it resolves to."""

    photo_id: str
    image: str
    path: Path


class ReaderStudyError(GsscreenError):
    """A refused request: ``status`` is the HTTP status the app answers with, ``detail`` says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


# --------------------------------------------------------------------------------------------------- cohort


def photo_key(image: str | Path, cohort_csv: str | Path) -> str:
    """How the study names a photo (the export's ``photo`` column): the cohort's image path as written.

    Paths inside the cohort CSV's folder are given relative to it, ``/``-separated and normalised (``./a.png`` ->
    ``a.png``), which is also how ``gsscreen.cohort.write_cohort_csv`` writes them; other paths stay absolute.
    ``image`` may be relative to that folder or absolute. Use it to key the true labels for the evaluation.
    """
    base = Path(cohort_csv).expanduser().parent.resolve()  # the folder load_cohort resolves relative paths from
    p = Path(os.path.normpath(base / Path(image).expanduser()))
    rel = os.path.relpath(p, base)
    if rel == ".." or rel.startswith(".." + os.sep):
        return p.as_posix()
    return Path(rel).as_posix()


def read_cohort_images(csv_path: str | Path) -> tuple[list[tuple[str, Path]], list[dict[str, str]]]:
    """The photos a reader study can show, and the rows it cannot.

    Reads and checks the cohort with :func:`gsscreen.cohort.load_cohort` (each file opened once; no perceptual
    hashing). Returns ``(photos, problems)``: ``photos`` is a list of ``(photo_key, absolute path)`` in file order,
    one per usable row (see :func:`photo_key`); ``problems`` a list of ``{"file", "problem"}`` for the rows left
    out (missing or unreadable file, unknown label, repeated image, ...). Raises ``ValueError``
    (``gsscreen.cohort.CohortError``) naming the file when the CSV itself is unusable.
    """
    from gsscreen.cohort import load_cohort

    csv_path = Path(csv_path)
    cohort = load_cohort(csv_path, check_images=True, near_duplicate_distance=None)
    problems = [{"file": p.file or str(csv_path), "problem": str(p)} for p in cohort.problems if p.blocking]
    photos = [(photo_key(image, csv_path), Path(image)) for image in cohort.ok_table()["image"]]
    return photos, problems


def write_example_cohort(folder: str | Path, n: int = 4) -> Path:
    """A tiny cohort made of the embedded public-domain examples (originals, mirror images, crops), for demos/tests.

    Writes ``n`` PNG photos and ``cohort.csv`` (``image`` relative to the folder, ``label`` alternating GS /
    control: the labels are arbitrary, the portraits are of healthy adults). Returns the CSV's path.
    """
    import numpy as np
    from PIL import Image

    from gsscreen.examples import write_examples

    folder = Path(folder)
    originals = write_examples(folder / "photos")
    variants: list[tuple[str, np.ndarray]] = []
    for p in originals:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"))
        h, w = arr.shape[:2]
        variants.append((p.stem, arr))
        variants.append((f"{p.stem}_mirror", arr[:, ::-1]))
        variants.append((f"{p.stem}_crop", arr[h // 10 : h - h // 10, w // 10 : w - w // 10]))
        variants.append((f"{p.stem}_mirror_crop", arr[h // 8 : h - h // 8, ::-1][:, w // 8 : w - w // 8]))
    if not 1 <= n <= len(variants):
        raise ValueError(f"n must be between 1 and {len(variants)}, got {n}")
    # Interleave the two portraits so a small n still holds both faces.
    order = [v for pair in zip(variants[:4], variants[4:], strict=True) for v in pair][:n]
    lines = ["image,label"]
    for i, (stem, arr) in enumerate(order):
        rel = f"photos/{stem}.png"
        if not (folder / rel).is_file():
            Image.fromarray(np.ascontiguousarray(arr)).save(folder / rel)
        lines.append(f"{rel},{'GS' if i % 2 == 0 else 'control'}")
    csv_path = folder / "cohort.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path


# --------------------------------------------------------------------------------------------------- database


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _connect(db: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) so a check-then-insert is atomic.
    con = sqlite3.connect(db, timeout=30.0, isolation_level=None, check_same_thread=False)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA busy_timeout = 30000")
    con.execute("PRAGMA foreign_keys = ON")
    con.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a power cut loses at most the last commit
    return con


@contextmanager
def _write(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that takes the database's write lock at the start (no lock upgrade deadlocks)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def reader_order(images: list[str], seed: int, name: str, role: str) -> list[str]:
    """The order in which reader ``(name, role)`` sees ``images``: a permutation seeded by seed, name and role.

    Depends only on the set of images (sorted first), so it is reproducible from the cohort alone; the name is
    compared case- and whitespace-insensitively.
    """
    digest = hashlib.sha256(f"{seed}\x00{_name_key(name)}\x00{role}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    out = sorted(images)
    rng.shuffle(out)
    return out


@functools.lru_cache(maxsize=8)
def _encoded_jpeg(path: Path, mtime_ns: int, max_side: int) -> bytes:
    """``path`` upright (EXIF orientation applied), RGB, longest side <= max_side, as JPEG bytes without metadata."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


class ReaderStudy:
    """The study's state and rules, independent of HTTP (the app is a thin layer over it).

    ``photos``: ``(photo_key, path)`` pairs as :func:`read_cohort_images` returns them.

    Every method opens its own SQLite connection, so one instance is shared by all request threads.
    Refusals raise :class:`ReaderStudyError` with the HTTP status to answer.
    """

    def __init__(self, cfg: ReadersConfig, photos: list[tuple[str, Path]]) -> None:
        if not photos:
            raise ValueError(f"{cfg.cohort}: no usable photos for a reader study")
        self.cfg = cfg
        self.db = Path(cfg.db)
        from gsscreen.fsperm import private_file

        private_file(self.db)  # owner-only (the WAL and shm files copy its mode)
        con = _connect(self.db)
        try:
            con.execute("PRAGMA journal_mode = WAL")  # persistent: set once, every later connection uses it
            _ensure_schema(con)
            with _write(con):
                row = con.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone()
                salt = row["value"] if row else secrets.token_hex(16)
                if not row:
                    con.execute("INSERT INTO meta (key, value) VALUES ('salt', ?)", (salt,))
                ids = {image: hashlib.sha256(f"{salt}\x00{image}".encode()).hexdigest()[:20] for image, _ in photos}
                known = {r["image"] for r in con.execute("SELECT image FROM photos")}
                if known and known != set(ids):
                    raise ValueError(
                        f"{self.db} was made for another cohort ({len(known - set(ids))} of its photos are not in "
                        f"{cfg.cohort}, {len(set(ids) - known)} of the cohort's are new); use another --db"
                    )
                if not known:
                    con.executemany(
                        "INSERT INTO photos (photo_id, image) VALUES (?, ?)", [(pid, im) for im, pid in ids.items()]
                    )
                con.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('config', ?)",
                    (json.dumps(_config_dict(cfg)),),
                )
        finally:
            con.close()
        self.photos: dict[str, StudyPhoto] = {ids[image]: StudyPhoto(ids[image], image, path) for image, path in photos}
        self._images_sorted = sorted(ids)

    # -- sessions ---------------------------------------------------------------------------------------------

    def sign_in(self, name: str, role: str, invite: str | None = None) -> tuple[dict[str, Any], str]:
        """Sign reader ``(name, role)`` in with their invitation code, creating them (and their photo order) on
        first sign-in. 403 without a valid invitation for that name and role.

        Returns ``(progress, token)``; the token identifies this session in later requests.
        """
        clean = " ".join(str(name).split())
        if not clean:
            raise ReaderStudyError(422, "enter your name")
        if len(clean) > _NAME_MAX:
            raise ReaderStudyError(422, f"name is longer than {_NAME_MAX} characters")
        if role not in ROLES:
            raise ReaderStudyError(422, f"role must be one of {', '.join(ROLES)}, got {role!r}")
        token = secrets.token_urlsafe(24)
        con = _connect(self.db)
        try:
            with _write(con):
                inv = con.execute("SELECT name_key, role FROM invitations WHERE code_hash = ?",
                                  (_code_hash(invite or ""),)).fetchone()
                if inv is None or inv["name_key"] != _name_key(clean) or inv["role"] != role:
                    # One message for every case: a guesser learns nothing about which readers exist.
                    raise ReaderStudyError(403, "sign-in needs the invitation code the study organiser gave you "
                                           "(for this name and role)")
                row = con.execute(
                    "SELECT reader_id FROM readers WHERE name_key = ? AND role = ?", (_name_key(clean), role)
                ).fetchone()
                if row:
                    reader_id = int(row["reader_id"])
                else:
                    cur = con.execute(
                        "INSERT INTO readers (name, name_key, role, created_at) VALUES (?, ?, ?, ?)",
                        (clean, _name_key(clean), role, _now_iso()),
                    )
                    reader_id = int(cur.lastrowid or 0)
                    by_image = {p.image: p.photo_id for p in self.photos.values()}
                    order = reader_order(self._images_sorted, self.cfg.seed, clean, role)
                    con.executemany(
                        "INSERT INTO orders (reader_id, position, photo_id) VALUES (?, ?, ?)",
                        [(reader_id, i, by_image[image]) for i, image in enumerate(order)],
                    )
                con.execute(
                    "INSERT INTO sessions (token, reader_id, created_at) VALUES (?, ?, ?)",
                    (token, reader_id, _now_iso()),
                )
            return self._progress(con, reader_id), token
        finally:
            con.close()

    def reader_for_token(self, token: str | None) -> int:
        """The reader id of a session token; 401 when there is none or it is unknown."""
        if not token:
            raise ReaderStudyError(401, "not signed in")
        con = _connect(self.db)
        try:
            row = con.execute("SELECT reader_id FROM sessions WHERE token = ?", (token,)).fetchone()
        finally:
            con.close()
        if row is None:
            raise ReaderStudyError(401, "session unknown or ended; sign in again")
        return int(row["reader_id"])

    def sign_out(self, token: str) -> None:
        """End one session (the reader's answers and order stay)."""
        con = _connect(self.db)
        try:
            with _write(con):
                con.execute("DELETE FROM sessions WHERE token = ?", (token,))
        finally:
            con.close()

    # -- progress ---------------------------------------------------------------------------------------------

    @staticmethod
    def _progress(con: sqlite3.Connection, reader_id: int) -> dict[str, Any]:
        r = con.execute("SELECT name, role FROM readers WHERE reader_id = ?", (reader_id,)).fetchone()
        total = con.execute("SELECT COUNT(*) FROM orders WHERE reader_id = ?", (reader_id,)).fetchone()[0]
        answered = con.execute("SELECT COUNT(*) FROM answers WHERE reader_id = ?", (reader_id,)).fetchone()[0]
        return {
            "reader": r["name"],
            "role": r["role"],
            "answered": int(answered),
            "total": int(total),
            "done": int(answered) >= int(total),
        }

    @staticmethod
    def _current(con: sqlite3.Connection, reader_id: int) -> sqlite3.Row | None:
        return con.execute(
            "SELECT o.position, o.photo_id, o.first_served_at, o.last_served_at FROM orders o WHERE o.reader_id = ? "
            "AND NOT EXISTS "
            "(SELECT 1 FROM answers a WHERE a.reader_id = o.reader_id AND a.photo_id = o.photo_id) "
            "ORDER BY o.position LIMIT 1",
            (reader_id,),
        ).fetchone()

    def progress(self, reader_id: int) -> dict[str, Any]:
        """``{"reader", "role", "answered", "total", "done"}`` for one reader."""
        con = _connect(self.db)
        try:
            return self._progress(con, reader_id)
        finally:
            con.close()

    def next_photo(self, reader_id: int) -> dict[str, Any]:
        """The reader's progress plus, unless done, the current photo: ``photo_id`` and 1-based ``index``."""
        con = _connect(self.db)
        try:
            out = self._progress(con, reader_id)
            cur = self._current(con, reader_id)
        finally:
            con.close()
        if cur is not None:
            out.update(photo_id=cur["photo_id"], index=int(out["answered"]) + 1)
        return out

    # -- photos and answers -----------------------------------------------------------------------------------

    def _check_listed(self, con: sqlite3.Connection, reader_id: int, photo_id: str) -> None:
        row = con.execute("SELECT 1 FROM orders WHERE reader_id = ? AND photo_id = ?", (reader_id, photo_id)).fetchone()
        if row is None or photo_id not in self.photos:
            raise ReaderStudyError(404, "no such photo in your list")
        done = con.execute(
            "SELECT 1 FROM answers WHERE reader_id = ? AND photo_id = ?", (reader_id, photo_id)
        ).fetchone()
        if done is not None:
            raise ReaderStudyError(409, "this photo is already answered")

    def photo_bytes(self, reader_id: int, photo_id: str) -> bytes:
        """The JPEG of the reader's current photo; records the time it was served (the answer clock starts).

        404 if the photo is not in the reader's list, 409 if it is answered or not yet the current one.
        """
        con = _connect(self.db)
        try:
            self._check_listed(con, reader_id, photo_id)
            cur = self._current(con, reader_id)
            if cur is None or cur["photo_id"] != photo_id:
                raise ReaderStudyError(409, "not your current photo")
            if cur["first_served_at"] is not None and \
                    time.time() - float(cur["first_served_at"]) > self.cfg.seconds + _RESHOW_GRACE:
                # The display time ran out at the first display: a reload does not restart the clock.
                raise ReaderStudyError(409, "the display time of this photo is over; give your answer")
            photo = self.photos[photo_id]
            try:
                data = _encoded_jpeg(photo.path, photo.path.stat().st_mtime_ns, self.cfg.max_side)
            except OSError as exc:
                # The path stays in the server log; the browser only learns that the photo failed.
                log.error("reader study: cannot read %s: %s", photo.path, exc)
                raise ReaderStudyError(500, "this photo could not be read; tell the study organiser") from exc
            with _write(con):
                now = time.time()
                con.execute(
                    "UPDATE orders SET first_served_at = COALESCE(first_served_at, ?), last_served_at = ?, "
                    "views = views + 1 WHERE reader_id = ? AND photo_id = ?",
                    (now, now, reader_id, photo_id),
                )
            return data
        finally:
            con.close()

    def answer(self, reader_id: int, photo_id: str, answer: str, confidence: int | None) -> dict[str, Any]:
        """Store the reader's call on a photo they were shown; returns their progress afterwards.

        ``answer`` is ``GS`` or ``control``; ``confidence`` 1–5, required when the study asks for it and refused
        when it does not. 404: photo not in the reader's list; 409: already answered or never shown.
        """
        if answer not in ANSWERS:
            raise ReaderStudyError(422, f"answer must be GS or control, got {answer!r}")
        if self.cfg.confidence:
            if confidence is None or not 1 <= int(confidence) <= 5:
                raise ReaderStudyError(422, "confidence (1-5) is required in this study")
        elif confidence is not None:
            raise ReaderStudyError(422, "this study does not ask for a confidence")
        con = _connect(self.db)
        try:
            with _write(con):
                self._check_listed(con, reader_id, photo_id)
                row = con.execute(
                    "SELECT first_served_at FROM orders WHERE reader_id = ? AND photo_id = ?", (reader_id, photo_id)
                ).fetchone()
                if row["first_served_at"] is None:
                    raise ReaderStudyError(409, "this photo has not been shown to you yet")
                # From the first display, whatever reloads happened since.
                seconds = max(0.0, time.time() - float(row["first_served_at"]))
                late = int(seconds > self.cfg.seconds + self.cfg.answer_seconds)
                try:
                    con.execute(
                        "INSERT INTO answers (reader_id, photo_id, answer, confidence, seconds, answered_at, late) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (reader_id, photo_id, answer, confidence, round(seconds, 3), _now_iso(), late),
                    )
                except sqlite3.IntegrityError as exc:  # a twin request that won the race: still one answer
                    raise ReaderStudyError(409, "this photo is already answered") from exc
            return self._progress(con, reader_id)
        finally:
            con.close()


#: a reload within this many seconds after the display time ends still shows the photo (network, decoding)
_RESHOW_GRACE = 2.0


def _ensure_schema(con: sqlite3.Connection) -> None:
    con.executescript(_SCHEMA)
    cols = {r["name"] for r in con.execute("PRAGMA table_info(answers)")}
    if "late" not in cols:  # a database from before the server-side display rule
        con.execute("ALTER TABLE answers ADD COLUMN late INTEGER NOT NULL DEFAULT 0")


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().encode("utf-8")).hexdigest()


def create_invitation(db: str | Path, name: str, role: str) -> str:
    """Make (or replace) the invitation of reader ``(name, role)`` in ``db``; returns the code to give them.

    Only the code's SHA-256 is stored. Inviting the same reader again replaces the old code (it stops working).
    """
    clean = " ".join(str(name).split())
    if not clean or len(clean) > _NAME_MAX:
        raise ValueError(f"reader name must be 1-{_NAME_MAX} characters, got {name!r}")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    from gsscreen.fsperm import private_file

    db = Path(db)
    private_file(db)
    code = secrets.token_urlsafe(12)
    con = _connect(db)
    try:
        con.execute("PRAGMA journal_mode = WAL")
        _ensure_schema(con)
        with _write(con):
            con.execute("DELETE FROM invitations WHERE name_key = ? AND role = ?", (_name_key(clean), role))
            con.execute("INSERT INTO invitations (code_hash, name, name_key, role, created_at) VALUES (?, ?, ?, ?, ?)",
                        (_code_hash(code), clean, _name_key(clean), role, _now_iso()))
    finally:
        con.close()
    return code


def _config_dict(cfg: ReadersConfig) -> dict[str, Any]:
    from gsscreen.config import to_dict

    return to_dict(cfg)


# --------------------------------------------------------------------------------------------------- export


def read_answers(db: str | Path) -> list[dict[str, Any]]:
    """All answers in a reader-study database, one dict per answer with the keys of ``EXPORT_COLUMNS``.

    ``photo`` is the cohort's image path as written (see :func:`photo_key`); ``seconds`` runs from the image
    being served to the answer; ``answered_at`` is ISO 8601 UTC. Sorted by reader, role and the reader's photo order.
    """
    db = Path(db)
    if not db.is_file():
        raise FileNotFoundError(f"reader-study database not found: {db}")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30.0)
    con.row_factory = sqlite3.Row
    try:
        try:
            rows = con.execute(
                "SELECT r.name AS reader, r.role AS role, p.image AS photo, a.answer AS answer, "
                "a.confidence AS confidence, a.seconds AS seconds, a.answered_at AS answered_at, o.views AS views, "
                "a.late AS late "
                "FROM answers a JOIN readers r USING (reader_id) JOIN photos p USING (photo_id) "
                "JOIN orders o ON o.reader_id = a.reader_id AND o.photo_id = a.photo_id "
                "ORDER BY r.name_key, r.role, o.position"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{db}: not a reader-study database ({exc})") from exc
    finally:
        con.close()
    return [{k: row[k] for k in EXPORT_COLUMNS} for row in rows]


def export_answers(db: str | Path, out: str | Path) -> int:
    """Write the answers of ``db`` to CSV ``out`` (columns ``EXPORT_COLUMNS``); returns the number of rows."""
    import csv

    rows = read_answers(db)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(EXPORT_COLUMNS))
        writer.writeheader()
        writer.writerows({k: csv_safe(v) for k, v in r.items()} for r in rows)
    return len(rows)


def csv_safe(value: Any) -> Any:
    """A cell a spreadsheet shows as text: strings starting with ``= + - @`` (or tab / CR) get a leading ``'``
    (OWASP's advice against CSV formula injection); numbers are left alone."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# --------------------------------------------------------------------------------------------------- web app


class SignIn(BaseModel):
    """Body of ``POST /api/session``."""

    name: str = Field(min_length=1, max_length=200)
    role: Literal["junior", "senior"]
    invite: str = Field(default="", max_length=200)


class AnswerIn(BaseModel):
    """Body of ``POST /api/answers``: ``confidence`` 1–5 or null (when the study does not ask for it)."""

    photo_id: str = Field(min_length=1, max_length=64)
    answer: Literal["GS", "control"]
    confidence: int | None = Field(default=None, ge=1, le=5)


def create_app(cfg: ReadersConfig, study: ReaderStudy | None = None) -> FastAPI:
    """The FastAPI app of the reader study described by ``cfg`` (reads the cohort, opens/creates the database).

    Photos that cannot be shown are logged and left out; a cohort with none left raises ``ValueError``.
    """
    if study is None:
        photos, problems = read_cohort_images(cfg.cohort)
        for p in problems:
            log.warning("reader study: left out %s: %s", p["file"], p["problem"])
        study = ReaderStudy(cfg, photos)

    app = FastAPI(title="gsscreen reader study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.study = study
    from gsscreen.web.security import SitePolicy, allowed_hosts_for, install_guard

    install_guard(app, SitePolicy(allowed_hosts=allowed_hosts_for(cfg.host, cfg.allowed_hosts)))

    @app.exception_handler(ReaderStudyError)
    async def _refused(_: Request, exc: ReaderStudyError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers={"Cache-Control": "no-store"})

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        # Everything is served from this app: the page may not load or send anything elsewhere.
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.url.path.startswith("/api/") or request.url.path == "/":
            response.headers["Cache-Control"] = "no-store"
        return response

    def _reader(token_cookie: str | None, token_header: str | None) -> int:
        return study.reader_for_token(token_header or token_cookie)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/readers-static", StaticFiles(directory=STATIC_DIR), name="readers-static")

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        return {"seconds": study.cfg.seconds, "confidence": study.cfg.confidence, "roles": list(ROLES)}

    @app.post("/api/session")
    def sign_in(body: SignIn, response: Response) -> dict[str, Any]:
        progress, token = study.sign_in(body.name, body.role, body.invite)
        response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="strict", max_age=60 * 60 * 24 * 60, path="/")
        return {**progress, "token": token}

    @app.get("/api/session")
    def me(
        token: str | None = Cookie(default=None, alias=COOKIE_NAME),
        x_token: str | None = Header(default=None, alias=TOKEN_HEADER),
    ) -> dict[str, Any]:
        return study.progress(_reader(token, x_token))

    @app.delete("/api/session")
    def sign_out(
        response: Response,
        token: str | None = Cookie(default=None, alias=COOKIE_NAME),
        x_token: str | None = Header(default=None, alias=TOKEN_HEADER),
    ) -> dict[str, Any]:
        if x_token or token:
            study.sign_out(x_token or token or "")
        response.delete_cookie(COOKIE_NAME, path="/")
        return {"signed_out": True}

    @app.get("/api/next")
    def next_photo(
        token: str | None = Cookie(default=None, alias=COOKIE_NAME),
        x_token: str | None = Header(default=None, alias=TOKEN_HEADER),
    ) -> dict[str, Any]:
        return study.next_photo(_reader(token, x_token))

    @app.get("/api/photos/{photo_id}")
    def photo(
        photo_id: str,
        token: str | None = Cookie(default=None, alias=COOKIE_NAME),
        x_token: str | None = Header(default=None, alias=TOKEN_HEADER),
    ) -> Response:
        data = study.photo_bytes(_reader(token, x_token), photo_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.post("/api/answers", status_code=201)
    def answer(
        body: AnswerIn,
        token: str | None = Cookie(default=None, alias=COOKIE_NAME),
        x_token: str | None = Header(default=None, alias=TOKEN_HEADER),
    ) -> dict[str, Any]:
        return study.answer(_reader(token, x_token), body.photo_id, body.answer, body.confidence)

    return app


def serve(cfg: ReadersConfig) -> None:
    """Run the reader study with uvicorn until interrupted (Ctrl+C)."""
    import uvicorn

    from gsscreen.web.screen_app import is_loopback

    app = create_app(cfg)
    study: ReaderStudy = app.state.study
    if not is_loopback(cfg.host):
        con = _connect(Path(cfg.db))
        try:
            n_inv = con.execute("SELECT COUNT(*) FROM invitations").fetchone()[0]
        finally:
            con.close()
        if not n_inv:
            raise ValueError(f"refusing to listen on {cfg.host} with no invitations in {cfg.db}: invite the readers "
                             "first (`gsscreen readers invite NAME --role junior`), or keep --host 127.0.0.1")
        log.warning("reader study: listening on %s: only invited readers (%d invitations) can sign in", cfg.host,
                    n_inv)
    print(
        f"Reader study: {len(study.photos)} photos, {cfg.seconds:g} s each, answers in {cfg.db}\n"
        f"Open http://{'localhost' if cfg.host in ('127.0.0.1', '::1') else cfg.host}:{cfg.port}/ "
        "(Ctrl+C stops the server; readers resume where they stopped)"
    )
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")


__all__ = [
    "ANSWERS",
    "EXPORT_COLUMNS",
    "ROLES",
    "ReaderStudy",
    "ReaderStudyError",
    "ReadersConfig",
    "StudyPhoto",
    "create_app",
    "create_invitation",
    "csv_safe",
    "export_answers",
    "photo_key",
    "read_answers",
    "read_cohort_images",
    "reader_order",
    "serve",
    "write_example_cohort",
]
