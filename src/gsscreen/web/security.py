"""The web apps' boundary against other sites: one policy, applied as ASGI middleware to every request.

A page on another origin (another site, or just another port of ``localhost``) can make the user's browser send
requests to a local app; it cannot read the answers, but a POST still runs a screening or stores an answer. And a
site whose DNS name later resolves to 127.0.0.1 (DNS rebinding) becomes *same-origin* with the app. The guard:

- **Host allow-list** (every request): the ``Host`` header must be an IP literal, ``localhost`` or a configured
  name; a rebinding attacker's domain is refused (421).
- **Cross-site writes** (POST, PUT, PATCH, DELETE): refused (403) when the browser says ``Sec-Fetch-Site`` is
  anything but ``same-origin`` / ``none``, or sends an ``Origin`` other than the app's own (``null`` included,
  unless ``Sec-Fetch-Site`` vouches for it: a no-referrer page's own form posts say ``Origin: null``).
  Non-browser clients (curl, hospital systems) send neither header and pass.
- **No simple requests on the API** (paths under ``/api/``): a body sent as ``text/plain``,
  ``application/x-www-form-urlencoded`` or without a ``Content-Type`` is refused (415); a browser can send those
  cross-origin without a CORS preflight.
- **CSRF token** for HTML forms: :class:`CsrfToken` makes a per-server secret for the page to embed and checks it.

The middleware wraps the whole app, so an endpoint added later is covered without doing anything. Refusals are
reported to an optional ``on_refuse`` callback (the screening app writes them to its audit log).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Content types a browser sends cross-origin without asking the server first (CORS "simple requests"), minus
#: multipart/form-data, which the API accepts from non-browser clients (browsers are stopped by Origin instead).
SIMPLE_CONTENT_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded"})
#: Starlette's TestClient sends ``Host: testserver``. A single-label name that no public DNS resolves, so no
#: rebinding attacker can serve a page under it.
TEST_CLIENT_HOST = "testserver"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: HTTP ``status``, a machine-readable ``code`` and a sentence."""

    status: int
    code: str
    detail: str


def _split_host(value: str) -> tuple[str, int | None]:
    """``"[::1]:8000"`` → ``("::1", 8000)``; ``"Example.org"`` → ``("example.org", None)``."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[1:end], value[end + 1:]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = value.partition(":")
    return host.rstrip("."), (int(port) if port.isdigit() else None)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass
class SitePolicy:
    """The rules of this module (see the module docstring).

    Attributes:
        allowed_hosts: extra host names (not IP literals, which always pass) the app may be reached under,
            e.g. the machine's name on a hospital network (``--allow-host``).
        api_prefixes: paths whose writes must not use simple-request content types.
    """

    allowed_hosts: tuple[str, ...] = ()
    api_prefixes: tuple[str, ...] = ("/api/",)
    _names: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._names = frozenset({"localhost", TEST_CLIENT_HOST, *(h.strip().lower().rstrip(".")
                                                                   for h in self.allowed_hosts if h.strip())})

    def host_allowed(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        host, _ = _split_host(host_header)
        return _is_ip(host) or host in self._names or host.endswith(".localhost")

    def check(self, method: str, path: str, headers: dict[str, str]) -> Refusal | None:
        """The refusal for a request (lower-case ``headers``), or None when it may go on."""
        host = headers.get("host")
        if not self.host_allowed(host):
            return Refusal(421, "host_not_allowed", f"requests for host {host!r} are not served here (only "
                           "localhost, IP addresses and names given with --allow-host; this blocks DNS rebinding)")
        if method.upper() not in UNSAFE_METHODS:
            return None
        site = headers.get("sec-fetch-site")
        if site is not None and site.strip().lower() not in ("same-origin", "none"):
            return Refusal(403, "cross_site", f"cross-site request refused (Sec-Fetch-Site: {site}): only pages "
                           "of this app may send it")
        origin = headers.get("origin")
        # A page with Referrer-Policy no-referrer (ours) sends "Origin: null" on its own form posts; when the
        # browser also vouches "Sec-Fetch-Site: same-origin" (page scripts cannot set it) that null is ours.
        vouched = site is not None and origin is not None and origin.strip().lower() == "null"
        if origin is not None and not vouched and not self._same_origin(origin, host or ""):
            return Refusal(403, "cross_origin", f"request from another origin ({origin}) refused: only pages "
                           "of this app may send it")
        has_body = headers.get("content-length", "0").strip() not in ("", "0") or "transfer-encoding" in headers
        if has_body and any(path.startswith(p) for p in self.api_prefixes):
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if not ctype or ctype in SIMPLE_CONTENT_TYPES:
                return Refusal(415, "simple_content_type", f"Content-Type {ctype or '(none)'!s} is not accepted "
                               "here: send multipart/form-data or the image's own type (e.g. image/jpeg)")
        return None

    @staticmethod
    def _same_origin(origin: str, host_header: str) -> bool:
        if origin.strip().lower() == "null":
            return False
        parts = urlsplit(origin.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        default = 443 if parts.scheme == "https" else 80
        o_host, o_port = parts.hostname.lower().rstrip("."), parts.port or default
        h_host, h_port = _split_host(host_header)
        return o_host == h_host and o_port == (h_port or default)


class CrossSiteGuard:
    """ASGI middleware enforcing a :class:`SitePolicy`; refusals get a JSON ``{"detail", "code"}`` body."""

    def __init__(self, app: ASGIApp, policy: SitePolicy,
                 on_refuse: Callable[[str, str, Refusal], None] | None = None) -> None:
        self.app = app
        self.policy = policy
        self.on_refuse = on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method, path = scope.get("method", "GET"), scope.get("path", "/")
        refusal = self.policy.check(method, path, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        if self.on_refuse is not None:
            self.on_refuse(method, path, refusal)
        body = json.dumps({"detail": refusal.detail, "code": refusal.code}).encode()
        await send({"type": "http.response.start", "status": refusal.status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]})
        await send({"type": "http.response.body", "body": body})


def install_guard(app: Any, policy: SitePolicy, on_refuse: Callable[[str, str, Refusal], None] | None = None) -> None:
    """Wrap a Starlette/FastAPI ``app`` with :class:`CrossSiteGuard` (outermost, so it sees every request)."""
    app.add_middleware(CrossSiteGuard, policy=policy, on_refuse=on_refuse)


class CsrfToken:
    """A per-server secret that HTML forms carry in a hidden field named :data:`CSRF_FIELD`.

    Another origin cannot read the page that holds it (same-origin policy; rebinding is stopped by the Host
    allow-list), so a forged form post lacks it.
    """

    def __init__(self, value: str | None = None) -> None:
        self.value = value or secrets.token_urlsafe(32)

    def hidden_field(self) -> str:
        return f'<input type="hidden" name="{CSRF_FIELD}" value="{self.value}">'

    def valid(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(str(presented).encode(), self.value.encode())


def allowed_hosts_for(bind_host: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Host names to accept for an app bound to ``bind_host``: the bind name itself (when it is a name) + ``extra``."""
    names = [h for h in (bind_host, *extra) if h and not _is_ip(h.strip("[]"))]
    return tuple(dict.fromkeys(n.lower() for n in names))
