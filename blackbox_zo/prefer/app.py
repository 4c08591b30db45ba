"""The Starlette app annotators use: the page, its script, `GET /api/next` and `POST /api/vote`.

Every answer is JSON; a rejected vote gets a 4xx status and a message and changes nothing. POSTs need
the page's CSRF token in a header and a JSON body of at most `max_body` bytes.
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

from blackbox_zo.prefer.security import BodyLimit, SecurityHeaders, TokenGate, same
from blackbox_zo.prefer.session import PreferSession
from blackbox_zo.prefer.store import VoteRejected

ANNOTATOR = re.compile(r"^[A-Za-z0-9_.@ -]{1,64}$")
STATIC = {"page.js": "text/javascript", "page.css": "text/css"}


def asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def annotator_of(value) -> str:
    if not isinstance(value, str) or not ANNOTATOR.match(value):
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

    async def next_pair(request: Request) -> Response:
        try:
            annotator = annotator_of(request.query_params.get("annotator"))
        except VoteRejected as e:
            return error(e.status, str(e))
        nxt = await run_in_threadpool(session.next_pair, annotator)
        return JSONResponse({"next": nxt, "progress": await run_in_threadpool(session.progress)})

    async def progress(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(session.progress))

    async def vote(request: Request) -> Response:
        if not same(request.headers.get("x-csrf-token"), csrf):
            return error(403, "missing or wrong CSRF token (reload the page)")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error(415, "the body must be JSON (Content-Type: application/json)")
        try:
            body = await request.json()
        except ValueError:
            return error(400, "the body is not valid JSON")
        if not isinstance(body, dict) or set(body) != {"pair_id", "choice", "annotator"}:
            return error(400, "expected a JSON object with exactly pair_id, choice and annotator")
        try:
            if not isinstance(body["pair_id"], str):
                raise VoteRejected(400, "pair_id must be a string")
            annotator = annotator_of(body["annotator"])
            value = await run_in_threadpool(session.vote, body["pair_id"], body["choice"], annotator)
        except VoteRejected as e:
            return error(e.status, str(e))
        return JSONResponse({"ok": True, "value": value, "progress": await run_in_threadpool(session.progress)})

    routes = [Route("/", index), Route("/static/{name}", static), Route("/api/next", next_pair),
              Route("/api/progress", progress), Route("/api/vote", vote, methods=["POST"])]
    middleware = [Middleware(SecurityHeaders), Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts)),
                  Middleware(TokenGate, token=token), Middleware(BodyLimit, limit=max_body)]
    return Starlette(routes=routes, middleware=middleware)
