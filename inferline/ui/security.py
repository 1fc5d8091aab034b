"""HTTP-level protections of the dashboard: its response headers, the browser's way in from `/`,
and the checks a state-changing form must pass."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from inferline.api.response_headers import ResponseHeaders

# No inline script, no inline style, no eval, nothing from another origin: data shown on a page
# (prompts, responses: attacker-controlled text) can neither run nor load anything.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
STATIC_PREFIX = "/ui/static/"


def with_security_headers(app: ASGIApp) -> ResponseHeaders:
    """The dashboard with SECURITY_HEADERS on every answer, and `Cache-Control: no-store` on all
    but static files (pages hold project data; a shared browser must not keep them)."""
    headers = {**SECURITY_HEADERS, "cache-control": "no-store"}
    return ResponseHeaders(app, headers, cacheable_prefix=STATIC_PREFIX)


class BrowserEntrance:
    """A browser opening `/` (GET, no `query` parameter, HTML accepted) is sent to the dashboard;
    every other request to `/` (SQL clients, `curl`) reaches ClickHouse's HTTP interface as before."""

    def __init__(self, app: ASGIApp, target: str = "/ui/") -> None:
        self.app = app
        self.target = target

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _is_browser_at_root(scope):
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", self.target.encode()), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


def _is_browser_at_root(scope: Scope) -> bool:
    if scope["path"] != "/" or scope["method"] not in ("GET", "HEAD"):
        return False
    query = scope.get("query_string", b"").decode("latin-1")
    if any(name == "query" for name, _ in parse_qsl(query, keep_blank_values=True)):
        return False
    return "text/html" in Headers(scope=scope).get("accept", "")


def same_origin(request: Request) -> bool:
    """A form post came from a page of this server, as far as the browser tells: its
    `Sec-Fetch-Site` (sent by current browsers whatever the referrer policy), else its `Origin`.
    (With `Referrer-Policy: no-referrer` the Origin of a same-origin form post is "null", which
    tells nothing.) Neither: allowed; the CSRF token and SameSite=Strict still hold."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def tokens_match(given: str | None, expected: str) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
