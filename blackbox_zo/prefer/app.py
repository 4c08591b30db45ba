"""The Starlette app annotators use: the page, its script, `POST /api/next`, `POST /api/vote`, `GET /api/progress`.

Every answer is JSON; a rejected request gets a 4xx status and a message and changes nothing. Only POSTs change
state (a pair's lease, a vote); they need the page's CSRF token in a header and a JSON body of at most
`max_body` bytes, and every API call from another site's page (its Origin) is refused.
"""

from __future__ import annotations

import re
import secrets
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from blackbox_zo.prefer.security import BodyLimit, SameOrigin, SecurityHeaders, TokenGate, same
from blackbox_zo.prefer.session import PreferSession
from blackbox_zo.prefer.store import VoteRejected

ANNOTATOR = re.compile(r"[A-Za-z0-9_.@ -]{1,64}")  # fullmatch: `$` would accept "evil\n" (it matches before a newline)
STATIC = {"page.js": "text/javascript", "page.css": "text/css"}


def asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def annotator_of(value) -> str:
    if not isinstance(value, str) or not ANNOTATOR.fullmatch(value):
        raise VoteRejected(400, "annotator must be 1-64 letters, digits, spaces or _ . @ -")
    return value


def create_app(session: PreferSession, *, token: str | None = None, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
               max_body: int = 4096) -> Starlette:
    """The ASGI app over one session; `hosts` are the Host header values accepted (DNS-rebinding guard)."""
    csrf = secrets.token_urlsafe(32)  # one per server start; the page carries it, other origins cannot read it
    page = asset("page.html").replace("{{csrf}}", csrf)

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return error(404, f"no such file {name!r}")
        return Response(asset(name), media_type=STATIC[name])

    async def json_body(request: Request, *keys: str) -> dict:
        """The checked JSON object of a state-changing POST: the page's CSRF token, JSON, exactly `keys`."""
        if not same(request.headers.get("x-csrf-token"), csrf):
            raise VoteRejected(403, "missing or wrong CSRF token (reload the page)")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise VoteRejected(415, "the body must be JSON (Content-Type: application/json)")
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise VoteRejected(400, "the body is not valid JSON") from None
        if not isinstance(body, dict) or set(body) != set(keys):
            named = " and ".join(filter(None, (", ".join(keys[:-1]), keys[-1])))
            raise VoteRejected(400, f"expected a JSON object with exactly {named}")
        return body

    async def next_pair(request: Request) -> Response:
        try:  # a POST: handing out a pair leases it, so a cross-site GET must not be able to
            annotator = annotator_of((await json_body(request, "annotator"))["annotator"])
        except VoteRejected as e:
            return error(e.status, str(e))
        nxt = await run_in_threadpool(session.next_pair, annotator)
        return JSONResponse({"next": nxt, "progress": await run_in_threadpool(session.progress)})

    async def progress(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(session.progress))

    async def vote(request: Request) -> Response:
        try:
            body = await json_body(request, "pair_id", "choice", "annotator")
            if not isinstance(body["pair_id"], str):
                raise VoteRejected(400, "pair_id must be a string")
            annotator = annotator_of(body["annotator"])
            value = await run_in_threadpool(session.vote, body["pair_id"], body["choice"], annotator)
        except VoteRejected as e:
            return error(e.status, str(e))
        return JSONResponse({"ok": True, "value": value, "progress": await run_in_threadpool(session.progress)})

    routes = [Route("/", index), Route("/static/{name}", static), Route("/api/next", next_pair, methods=["POST"]),
              Route("/api/progress", progress), Route("/api/vote", vote, methods=["POST"])]
    middleware = [Middleware(SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts)),
                  Middleware(SameOrigin),
                  Middleware(TokenGate, token=token), Middleware(BodyLimit, limit=max_body)]
    return Starlette(routes=routes, middleware=middleware)
