"""The local screening app: drop a photo, get P(GS), the call, the heatmap and the quality flags; plus a JSON API
(``POST /api/screen``) for hospital systems, described by ``/openapi.json`` and an offline docs page at ``/docs``.

Design points:

- **Offline**: every page, script and style comes from this package (``web/screen/``); FastAPI's Swagger UI (which
  loads from a CDN) is replaced by a small local page that renders the OpenAPI schema. A Content-Security-Policy
  of ``'self'`` (plus ``data:`` images) makes the browser refuse anything else.
- **Photos never touch the disk**: the request body is read into memory with a size limit and the multipart form
  is parsed in memory (Starlette's own form parser spools files above 1 MB to a temporary file, so it is not
  used); the image is decoded from bytes. The SQLite audit log keeps time, the photo's SHA-256, the model id, the
  result and the flags — never pixels.
- **Clear 4xx errors, never a 500 or a 200 that hides an error**: too large → 413, not an image (sniffed from the
  magic bytes, not the client's header) → 415, empty / truncated / corrupt / no face → 422, decompression bomb
  (pixel count from the header) → 413.
- **Bound to 127.0.0.1 by default**; on any other interface a token is required (``Authorization: Bearer``,
  compared with :func:`hmac.compare_digest`).
- **No cross-site use** (:mod:`gsscreen.web.security`, middleware around the whole app): Host allow-list, Origin /
  ``Sec-Fetch-Site`` checks, no simple-request content types on the API, a CSRF token in the HTML form. Every
  request that reaches a screening endpoint leaves an audit row, refused (401, 403, 415, 421…) or failed (500).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import html
import io
import ipaddress
import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gsscreen.web.security import CSRF_FIELD, CsrfToken, Refusal, SitePolicy, allowed_hosts_for, install_guard

if TYPE_CHECKING:
    from gsscreen.screening import ScreeningModel, ScreenResult

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "screen"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
MIN_TOKEN_LENGTH = 16
#: Multipart framing allowed on top of the photo itself (boundaries, part headers, the age field).
_FORM_OVERHEAD = 64 * 1024

# Magic bytes of the accepted formats (the client's Content-Type is never trusted).
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"BM", 0, "image/bmp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
)
#: ISO-BMFF major brands of HEIC/HEIF still photos (iPhone: heic)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


def sniff_image_type(data: bytes) -> str | None:
    """The image MIME type from the first bytes (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC), or None."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "image/heic"
    for magic, off, mime in _MAGIC:
        if data[off:off + len(magic)] == magic:
            return mime
    return None


@dataclass
class ScreenAppConfig:
    """Settings of ``gsscreen serve``.

    Attributes:
        model: model pack path (None = the shipped demo model).
        host, port: where to listen (loopback by default; elsewhere ``token`` is required).
        token: API token; when set, every data endpoint needs ``Authorization: Bearer <token>``.
        audit_db: SQLite audit log (time, photo SHA-256, model id, result, flags; no pixels).
        max_upload_mb: largest accepted photo, MB (larger → 413).
        max_pixels: largest accepted pixel count, read from the header before decoding (larger → 413).
        heatmap: compute the Grad-CAM heatmap by default.
        api_regions: compute the facial-region attributions for API requests by default (``regions=true`` asks for
            them per request; they cost five more model passes a photo). The web page, read by a person, always
            shows them beside the heatmap.
        workers, max_batch, batch_wait_ms: concurrent requests are prepared in ``workers`` processes and meet in
            model batches of up to ``max_batch`` photos, collected for ``batch_wait_ms`` (see ``web/batcher.py``).
        allowed_hosts: host names (besides localhost and IP addresses) the app may be reached under.
    """

    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    audit_db: str = "screen_audit.sqlite"
    max_upload_mb: float = 20.0
    max_pixels: int = 40_000_000
    heatmap: bool = True
    api_regions: bool = False
    workers: int = 2
    # 8, not 16: at 20 clients on 2 cores it gave 9.3 req/s against 7.8 (4) and 8.6 (16), one run of
    # benchmarks/bench_service.py --sweep-max-batch 4,8,16 (smaller batches keep the workers and the model in step)
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    allowed_hosts: tuple[str, ...] = ()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(cfg: ScreenAppConfig) -> None:
    """Refuse a non-loopback host without a token, and a token too short to resist guessing (``ValueError``)."""
    if cfg.token is not None and len(cfg.token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"--token must be at least {MIN_TOKEN_LENGTH} characters (e.g. `python -c \"import secrets; "
                         "print(secrets.token_urlsafe(24))\"`)")
    if not is_loopback(cfg.host) and not cfg.token:
        raise ValueError(f"refusing to listen on {cfg.host} without --token: other machines could reach the app. "
                         "Give --token (clients send `Authorization: Bearer <token>`) or keep --host 127.0.0.1")


# ------------------------------------------------------------------------------------------------ audit log


class AuditLog:
    """Append-only SQLite log of screenings: no pixel data, only the photo's SHA-256 and the outcome."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL,
        channel TEXT NOT NULL,
        photo_sha256 TEXT,
        photo_bytes INTEGER,
        model_id TEXT NOT NULL,
        status INTEGER NOT NULL,
        p_gs REAL,
        call TEXT,
        flags TEXT NOT NULL,
        problem TEXT
    )"""

    def __init__(self, path: str | Path) -> None:
        from gsscreen.fsperm import private_file

        self.path = Path(path)
        private_file(self.path)  # owner-only (SQLite's -wal and -shm files copy its mode)
        self._lock = threading.Lock()
        with self._connect() as con:
            con.execute(self.SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=10)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    def record(self, *, channel: str, sha256: str | None, n_bytes: int | None, model_id: str, status: int,
               p_gs: float | None = None, call: str | None = None, flags: list[str] | None = None,
               problem: str | None = None) -> None:
        row = (datetime.now(UTC).isoformat(timespec="milliseconds"), channel, sha256, n_bytes, model_id, status, p_gs,
               call, json.dumps(flags or []), problem)
        with self._lock, self._connect() as con:
            con.execute("INSERT INTO audit (time, channel, photo_sha256, photo_bytes, model_id, status, p_gs, call, "
                        "flags, problem) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def rows(self) -> list[dict[str, Any]]:
        with self._connect() as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM audit ORDER BY id")]


# ------------------------------------------------------------------------------------------------ requests


class UploadError(Exception):
    """A request the app refuses: HTTP ``status``, a machine-readable ``code`` and a human ``detail``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.audited = False  # set once the refusal is in the audit log


async def read_body(request: Request, limit: int) -> bytes:
    """The request body in memory, refusing more than ``limit`` bytes (413) before reading it all."""
    cl = request.headers.get("content-length")
    if cl is not None:
        try:
            if int(cl) > limit:
                raise UploadError(413, "too_large", f"upload of {int(cl)} bytes exceeds the {limit} byte limit")
        except ValueError:
            raise UploadError(400, "bad_request", "invalid Content-Length header") from None
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise UploadError(413, "too_large", f"upload exceeds the {limit} byte limit")
    return bytes(buf)


def parse_multipart(body: bytes, content_type: str, every: list[tuple[str, bytes, str | None]] | None = None
                    ) -> dict[str, tuple[bytes, str | None]]:
    """Parse a ``multipart/form-data`` body in memory: ``{field: (bytes, filename or None)}`` (first of each);
    ``every`` (when given) receives every part as ``(field, bytes, filename)``, repeated fields included."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad_request", "multipart/form-data without a boundary")
    parts: dict[str, tuple[bytes, str | None]] = {}
    cur: dict[str, Any] = {}

    def on_part_begin() -> None:
        cur.clear()
        cur.update(headers={}, data=bytearray(), field=b"", value=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        cur["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        cur["value"] += data[start:end]

    def on_header_end() -> None:
        cur["headers"][cur["field"].decode("latin-1").lower()] = cur["value"]
        cur["field"], cur["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        cur["data"] += data[start:end]

    def on_part_end() -> None:
        _, disp = parse_options_header(cur["headers"].get("content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        fname = disp.get(b"filename")
        fn = fname.decode("utf-8", "replace") if fname is not None else None
        if name and name not in parts:
            parts[name] = (bytes(cur["data"]), fn)
        if name and every is not None:
            every.append((name, bytes(cur["data"]), fn))

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end,
                 "on_part_data": on_part_data, "on_part_end": on_part_end}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # python-multipart raises its own error types for malformed bodies
        raise UploadError(400, "bad_request", f"malformed multipart body ({exc})") from None
    return parts


async def extract_photo(request: Request, cfg: ScreenAppConfig) -> tuple[bytes, dict[str, str]]:
    """The photo's bytes and the other (text) form fields, from a multipart form (field ``photo`` or ``file``)
    or a raw image body."""
    body = await read_body(request, cfg.max_upload_bytes + _FORM_OVERHEAD)
    ctype = request.headers.get("content-type", "")
    fields: dict[str, str] = {}
    if ctype.lower().startswith("multipart/form-data"):
        parts = parse_multipart(body, ctype)
        key = "photo" if "photo" in parts else "file" if "file" in parts else None
        if key is None:
            raise UploadError(422, "no_photo", "the form has no `photo` file field")
        data = parts[key][0]
        fields = {k: v[0].decode("utf-8", "replace").strip() for k, v in parts.items() if k not in ("photo", "file")}
    else:
        data = body
    check_photo(data, cfg)
    return data, fields


#: most photos in one upload of the web page
MAX_PHOTOS = 20


async def extract_photos(request: Request, cfg: ScreenAppConfig) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """Every ``photo`` file of a multipart form as ``(file name, bytes)`` (unchecked: each is checked on its own,
    so one bad file does not stop the others) and the text fields. At most :data:`MAX_PHOTOS` photos."""
    body = await read_body(request, MAX_PHOTOS * cfg.max_upload_bytes + _FORM_OVERHEAD)
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        return [("photo", body)], {}
    every: list[tuple[str, bytes, str | None]] = []
    parts = parse_multipart(body, ctype, every)
    photos = [(fn or f"photo {i + 1}", data) for i, (name, data, fn) in enumerate(every) if name in ("photo", "file")]
    if not photos:
        raise UploadError(422, "no_photo", "the form has no `photo` file field")
    if len(photos) > MAX_PHOTOS:
        raise UploadError(413, "too_many", f"at most {MAX_PHOTOS} photos per upload")
    fields = {k: v[0].decode("utf-8", "replace").strip() for k, v in parts.items() if k not in ("photo", "file")}
    return photos, fields


def check_photo(data: bytes, cfg: ScreenAppConfig) -> None:
    """Refuse (with an :class:`UploadError`) a photo that is too large, empty or not an image by its first bytes."""
    if len(data) > cfg.max_upload_bytes:
        raise UploadError(413, "too_large", f"photo of {len(data)} bytes exceeds the {cfg.max_upload_bytes} byte limit")
    if not data:
        raise UploadError(422, "empty", "the uploaded photo is empty (0 bytes)")
    if sniff_image_type(data) is None:
        raise UploadError(415, "unsupported_type", "not a supported image: the data is not JPEG, PNG, WebP, GIF, "
                          "BMP, TIFF or HEIC (checked from its first bytes, not from the declared content type)")


def _age(value: str | float | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        age = float(value)
    except (TypeError, ValueError):
        raise UploadError(422, "bad_age", f"age_months must be a number, got {value!r}") from None
    if not 0 <= age <= 300:
        raise UploadError(422, "bad_age", f"age_months must be between 0 and 300, got {age:g}")
    return age


def _png_b64(rgb: Any) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)  # zlib's fastest: a few ms, not tens
    return base64.b64encode(buf.getvalue()).decode("ascii")


class FaceInfo(BaseModel):
    box: list[float] = Field(description="face box x0, y0, x1, y1 in original-photo pixels")
    iod_px: float = Field(description="inter-ocular distance in original-photo pixels")
    yaw: float = Field(description="nose offset from the eye midpoint along the eye line / inter-ocular distance")
    roll_deg: float = Field(description="eye-line angle, degrees")
    n_faces: int = Field(description="faces found in the photo")
    detector_score: float


class ScreenResponse(BaseModel):
    """The screening of one photo."""

    p_gs: float = Field(description="P(GS): the ensemble's calibrated probability of a genetic syndrome, 0–1, at "
                        "the training prevalence (or the one the server was started with)")
    suspected: bool | None = Field(description="p_gs >= threshold when a call was made; null when inconclusive")
    call: str = Field(description="'GS suspected — refer for genetic evaluation' or 'no GS signal'")
    outcome: str = Field("inconclusive", description="the call as a code: refer, no_signal or inconclusive (no call "
                         "on an unusable face or a P(GS) too close to the threshold, see reasons)")
    reasons: list[str] = Field(default_factory=list, description="why the outcome is inconclusive, as codes "
                               "(e.g. head_turned, borderline, small_face)")
    notes: list[str] = Field(default_factory=list, description="remarks that do not withhold the call, as codes")
    faces: list[dict[str, Any]] = Field(default_factory=list, description="every face found: box (x0, y0, x1, y1 "
                                        "original px), score, scored (the one screened first)")
    quality: dict[str, Any] = Field(default_factory=dict, description="the quality gate's measures of the face")
    regions: dict[str, float] | None = Field(None, description="with regions=true: the drop in P(GS) when each "
                                             "facial region is greyed out (periocular, nasal, perioral, outline, "
                                             "outside); positive = evidence for GS")
    threshold: float = Field(description="the model's decision threshold (chosen on validation data)")
    model_id: str
    fold_p_gs: list[float] = Field(description="P(GS) of each fold model")
    p_gs_raw: float | None = Field(None, description="the fold models' mean P(GS) before calibration")
    operating_point: str = Field("", description="the operating point that made the call: screening, balanced, …")
    prevalence: float | None = Field(None, description="the prevalence P(GS) was adjusted to (None: training's)")
    flags: list[str] = Field(description="quality flag codes, e.g. several_faces, small_face, head_turned")
    flag_messages: list[str] = Field(description="the flags in words")
    face: FaceInfo
    photo_sha256: str = Field(description="SHA-256 of the uploaded bytes (as written to the audit log)")
    heatmap_png_base64: str | None = Field(None, description="Grad-CAM overlay on the aligned face, PNG, base64")
    disclaimer: str


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong, in words")
    code: str = Field(description="too_large, unsupported_type, empty, unreadable, no_face, bad_age, unauthorized…")


_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse, "description": d}
    for s, d in ((401, "missing or wrong API token"), (413, "photo too large (bytes or pixels)"),
                 (415, "not an image (sniffed from the magic bytes)"),
                 (422, "empty, truncated or corrupt image, no face found, or a bad age"))
}

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["photo"],
                "properties": {"photo": {"type": "string", "format": "binary",
                                         "description": "the photo (JPEG, PNG, WebP, GIF, BMP, TIFF)"},
                               "age_months": {"type": "number", "description": "age in months (optional)"}}}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


# ------------------------------------------------------------------------------------------------ the app


@functools.cache
def _template(name: str) -> Template:
    # The page templates ship with the package and never change while the app runs: read each once.
    return Template((STATIC_DIR / name).read_text(encoding="utf-8"))


def _page(name: str, **values: str) -> str:
    return _template(name).substitute(**values)


def _demo_note(model: ScreeningModel) -> str:
    return ('<p class="demo">Demonstration model: Down syndrome only, web-collected labels. Not for patients.</p>'
            if model.is_demo else "")


def create_app(cfg: ScreenAppConfig, model: ScreeningModel) -> FastAPI:
    """The FastAPI app screening with ``model`` (see the module docstring)."""
    from gsscreen.web.batcher import BatcherConfig, ScreenBatcher

    audit = AuditLog(cfg.audit_db)
    # Photos are prepared in worker processes and screened in batches by one model thread: the event loop only
    # moves bytes (no model, OpenCV or PNG work on it).
    batcher = ScreenBatcher(model, BatcherConfig(workers=cfg.workers, max_batch=cfg.max_batch,
                                                 max_wait_ms=cfg.batch_wait_ms, max_pixels=cfg.max_pixels))
    app = FastAPI(
        title="gsscreen screening API",
        version=str(model.info.get("gsscreen_version", "")),
        description=("Screen a child's frontal face photo for signs of a genetic syndrome (GS). "
                     "Research tool, not a medical device. Photos are processed in memory and never stored."),
        docs_url=None, redoc_url=None, openapi_url="/openapi.json",
    )
    app.mount("/screen-static", StaticFiles(directory=STATIC_DIR), name="screen-static")
    app.state.audit = audit
    app.state.model = model
    app.state.cfg = cfg
    app.state.batcher = batcher
    app.router.on_shutdown.append(batcher.close)
    csrf = CsrfToken()
    app.state.csrf = csrf

    def audit_refusal(method: str, path: str, refusal: Refusal) -> None:
        if is_screening_path(path):  # refused at the boundary, before the endpoint: still one audit row
            audit.record(channel="api" if path.startswith("/api/") else "web", sha256=None, n_bytes=None,
                         model_id=model.model_id, status=refusal.status, problem=f"{refusal.code}: {refusal.detail}")

    install_guard(app, SitePolicy(allowed_hosts=allowed_hosts_for(cfg.host, cfg.allowed_hosts)), audit_refusal)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        resp = await call_next(request)
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        # same-origin, not no-referrer: under no-referrer Chromium sends "Origin: null" with the page's own form
        # POST, which the cross-site guard (rightly) refuses; other sites still get no referrer.
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    def authorised(request: Request, form_token: str | None = None) -> bool:
        if not cfg.token:
            return True
        got = request.headers.get("authorization", "")
        presented = got[7:].strip() if got[:7].lower() == "bearer " else (form_token or "")
        return hmac.compare_digest(presented.encode(), cfg.token.encode())

    async def screen_bytes(data: bytes, age: float | None, heatmap: bool, channel: str,
                           regions: bool | None = None) -> tuple[ScreenResult, str]:
        """The screening of ``data`` and the photo's SHA-256 (as audited); refusals raise an audited UploadError."""
        res, sha = await batcher.screen(data, age, heatmap, regions)
        if res.ok:
            audit.record(channel=channel, sha256=sha, n_bytes=len(data), model_id=model.model_id, status=200,
                         p_gs=res.p_gs, call=res.call, flags=res.flags)
            return res, sha
        problem = res.problem or "not screened"
        if "no_face" in res.flags:
            status, code = 422, "no_face"
        elif "too large" in problem:
            status, code = 413, "too_large"
        else:
            status, code = 422, "unreadable"
        audit.record(channel=channel, sha256=sha, n_bytes=len(data), model_id=model.model_id, status=status,
                     flags=res.flags, problem=problem)
        err = UploadError(status, code, ("no face found in the photo: " if code == "no_face" else "") + problem)
        err.audited = True
        raise err

    def internal_error(exc: Exception, channel: str, data: bytes | None) -> UploadError:
        log.error("screening request failed", exc_info=exc)
        err = UploadError(500, "internal_error", f"internal error while screening ({type(exc).__name__}); "
                          "the photo was not screened and the failure is in the server log")
        refuse(err, channel, data)
        return err

    def refuse(exc: UploadError, channel: str, data: bytes | None = None) -> None:
        # Refusals before screening are audited too (without a hash when no photo was read).
        if exc.audited:
            return
        audit.record(channel=channel, sha256=hashlib.sha256(data).hexdigest() if data else None,
                     n_bytes=len(data) if data is not None else None, model_id=model.model_id, status=exc.status,
                     problem=exc.detail)
        exc.audited = True

    # --- JSON API
    @app.post("/api/screen", response_model=ScreenResponse, responses=_ERRORS, openapi_extra=_UPLOAD_SCHEMA,
              summary="Screen one photo", tags=["screening"])
    async def api_screen(request: Request, age_months: float | None = None, heatmap: bool | None = None,
                         regions: bool | None = None) -> Any:
        """Upload one photo as `multipart/form-data` (field `photo`, optional `age_months`) or as the raw request
        body; get P(GS), the call, quality flags and (unless `heatmap=false`) the Grad-CAM overlay as a base64 PNG.
        With `regions=true` (and the heatmap) also `regions`: the drop in P(GS) when each facial region is greyed
        out (five more model passes a photo: the request costs about 1.7 times as much).
        Requires `Authorization: Bearer <token>` when the server was started with a token."""
        heatmap = cfg.heatmap if heatmap is None else heatmap
        regions = cfg.api_regions if regions is None else regions
        data = None
        try:
            if not authorised(request):
                raise UploadError(401, "unauthorized", "missing or wrong API token (Authorization: Bearer)")
            data, fields = await extract_photo(request, cfg)
            age = _age(fields.get("age_months")) if age_months is None else _age(age_months)
            res, sha = await screen_bytes(data, age, heatmap, "api", regions)
        except UploadError as exc:
            refuse(exc, "api", data)
            return _json_error(exc)
        except Exception as exc:  # a bug must still leave an audit row and a JSON answer (issue #11)
            err = internal_error(exc, "api", data)
            return _json_error(err)
        png = await run_in_threadpool(_png_b64, res.overlay) if res.overlay is not None else None
        body = {**res.to_dict(), "photo_sha256": sha, "heatmap_png_base64": png}
        return ScreenResponse.model_validate(body)

    @app.get("/api/model", summary="The model in use", tags=["screening"], responses={401: _ERRORS[401]})
    async def api_model(request: Request) -> Any:
        """Name, backbone, threshold, folds, cross-validated metrics and age range of the loaded model pack."""
        if not authorised(request):
            return _json_error(UploadError(401, "unauthorized", "missing or wrong API token (Authorization: Bearer)"))
        return model.summary()

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # --- pages
    def common() -> dict[str, str]:
        return {"model_id": html.escape(model.model_id), "demo_note": _demo_note(model)}

    def language(request: Request, form: dict[str, str] | None = None) -> str:
        from gsscreen.web.i18n import choose_language

        return choose_language(request.query_params.get("lang") or (form or {}).get("lang"),
                               request.headers.get("accept-language"))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request) -> HTMLResponse:
        from gsscreen.web.result_page import render_index

        return HTMLResponse(render_index(model, language(request), token_field=bool(cfg.token),
                                         max_mb=cfg.max_upload_mb, max_photos=MAX_PHOTOS,
                                         form_extra=csrf.hidden_field()))

    @app.get("/model-card", response_class=HTMLResponse, include_in_schema=False)
    async def model_card(request: Request) -> HTMLResponse:
        from gsscreen.web.result_page import render_card

        return HTMLResponse(render_card(model, language(request)))

    @app.get("/model-card/{name}", include_in_schema=False)
    async def model_card_figure(name: str) -> Response:
        data = (getattr(model, "card_figures", None) or {}).get(name)
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/png")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(_page("docs.html", **common()))

    @app.post("/screen", response_class=HTMLResponse, include_in_schema=False)
    async def screen_page(request: Request) -> HTMLResponse:
        # Several photos per upload: each is checked and screened on its own; one bad file becomes its row.
        from gsscreen.web.result_page import photo_result, render_error, render_results

        lang = language(request)
        try:
            photos, fields = await extract_photos(request, cfg)
            lang = language(request, fields)
            if not csrf.valid(fields.get(CSRF_FIELD)):
                raise UploadError(403, "csrf", "the form's security token is missing or out of date: reload the "
                                  "page and send the photo again")
            if not authorised(request, fields.get("token")):
                raise UploadError(401, "unauthorized", "missing or wrong API token")
            age = _age(fields.get("age_months"))
        except UploadError as exc:
            refuse(exc, "web")
            return HTMLResponse(render_error(model, lang, exc.code, n=MAX_PHOTOS), status_code=exc.status)
        heatmap = fields.get("heatmap", "on" if cfg.heatmap else "off") != "off"
        items, last_error = [], None
        for name, data in photos:
            try:
                check_photo(data, cfg)
                res, _sha = await screen_bytes(data, age, heatmap, "web")
                items.append(await run_in_threadpool(photo_result, name, res, data))  # decoding: off the loop
            except Exception as exc:  # refusals and bugs alike leave an audit row and a plain row on the page
                err = exc if isinstance(exc, UploadError) else internal_error(exc, "web", data)
                refuse(err, "web", data)
                # a photo without a face is an inconclusive result shown with the photo; other problems are errors
                items.append(photo_result(name, None, data if err.code == "no_face" else None, err.code))
                last_error = None if err.code == "no_face" else err
        if len(items) == 1 and last_error is not None:
            return HTMLResponse(render_error(model, lang, last_error.code), status_code=last_error.status)
        return HTMLResponse(await run_in_threadpool(render_results, items, model, lang))

    @app.exception_handler(UploadError)
    async def _upload_error(_request: Request, exc: UploadError) -> JSONResponse:
        return _json_error(exc)

    return app


def is_screening_path(path: str) -> bool:
    """True for the endpoints that screen a photo (each request to them leaves an audit row)."""
    return path == "/screen" or path.startswith(("/screen/", "/api/screen"))


def _json_error(exc: UploadError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail, "code": exc.code}, status_code=exc.status)


def serve_app(cfg: ScreenAppConfig, model: ScreeningModel) -> None:
    """Run the app with uvicorn until interrupted (checks the bind address and token first)."""
    import uvicorn

    check_bind(cfg)
    app = create_app(cfg, model)
    app.state.batcher.warm_up()  # worker processes and the model thread start before the first request
    print(f"gsscreen screening app on http://{cfg.host}:{cfg.port}/  (API docs: /docs; Ctrl+C stops)")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
