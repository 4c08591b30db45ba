"""The web page's guards: loopback by default, an access token for other hosts, a body-size cap, strict headers.

Plain ASGI middlewares, so each guard is a few lines that can be read (and tested) on its own. The CSRF
check lives with the POST endpoints; model text is escaped by the page (textContent only).
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse

TOKEN_COOKIE = "bzp_token"
LOOPBACK_NAMES = ("localhost",)
HEADERS = {
    # scripts and styles only from this server: even a stray inline <script> in model text could not run
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # the access token may sit in the first URL
    "cache-control": "no-store",
}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without an access token."""
    if not is_loopback(host) and not token:
        raise ValueError(f"--host {host} makes the page reachable from other machines: "
                         "also pass --token (or set BLACKBOX_ZO_PREFER_TOKEN) so only people with the token can vote")
    if token is not None and len(token) < 16:
        raise ValueError("the access token must be at least 16 characters long")


def same(a: str | None, b: str) -> bool:
    """Constant-time string comparison (None never matches)."""
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class SecurityHeaders:
    """Adds the strict headers above to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in HEADERS.items():
                    headers.setdefault(k, v)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class TokenGate:
    """With a token: `?token=T` once sets an HttpOnly cookie; later requests need the cookie or a Bearer header."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.token:
            return await self.app(scope, receive, send)
        request = Request(scope)
        query = parse_qs(scope.get("query_string", b"").decode())
        if same((query.get("token") or [None])[0], self.token) and request.method == "GET":
            response = RedirectResponse(scope["path"], status_code=303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            return await response(scope, receive, send)
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or None
        if same(request.cookies.get(TOKEN_COOKIE), self.token) or same(bearer, self.token):
            return await self.app(scope, receive, send)
        await PlainTextResponse("access token required: open the URL with ?token=... that `blackbox-zo prefer` printed",
                                status_code=401)(scope, receive, send)


class BodyLimit:
    """Rejects request bodies over `limit` bytes (413), and bodies of unknown length (411)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is None or not length.isdigit():
            return await PlainTextResponse("a Content-Length header is required", status_code=411)(scope, receive, send)
        if int(length) > self.limit:
            return await PlainTextResponse(f"request body over {self.limit} bytes", status_code=413)(scope, receive, send)
        received = 0

        async def capped_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # a client that sent more than it declared
                raise ValueError(f"request body over {self.limit} bytes")
            return message

        await self.app(scope, capped_receive, send)


class SameOrigin:
    """Refuses (403) an API call that a browser says comes from another site: an Origin header naming another host
    than the request's Host, or Sec-Fetch-Site: cross-site. Clients that are not browsers send neither."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin, host = headers.get("origin"), headers.get("host", "")
        foreign = origin is not None and urlsplit(origin).netloc.lower() != host.lower()  # "null" too: no netloc
        if foreign or headers.get("sec-fetch-site") == "cross-site":
            return await PlainTextResponse(f"cross-origin request refused (Origin {origin!r}, Host {host!r})",
                                           status_code=403)(scope, receive, send)
        await self.app(scope, receive, send)
