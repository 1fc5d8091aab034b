"""One ASGI middleware for the protective headers of every HTTP answer: the API port's and the
dashboard's differ only in which headers, where, and whether a route's own choice stands."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ResponseHeaders:
    """Adds `headers` to every response of the wrapped app, except under `skip_prefix`.

    `keep_own`: a header the response already has is left as it is (otherwise replaced: a page's
    policy cannot be weakened by a route). `cacheable_prefix`: answers under it get no
    `cache-control` from here (static files may be cached; pages hold project data)."""

    def __init__(
        self,
        app: ASGIApp,
        headers: Mapping[str, str],
        *,
        skip_prefix: str = "",
        keep_own: bool = False,
        cacheable_prefix: str = "",
    ) -> None:
        self.app = app
        self.headers = dict(headers)
        self.skip_prefix = skip_prefix
        self.keep_own = keep_own
        self.cacheable_prefix = cacheable_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or (self.skip_prefix and path.startswith(self.skip_prefix)):
            await self.app(scope, receive, send)
            return
        headers = self.headers
        if self.cacheable_prefix and path.startswith(self.cacheable_prefix):
            headers = {k: v for k, v in headers.items() if k != "cache-control"}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in headers.items():
                    if self.keep_own:
                        out.setdefault(name, value)
                    else:
                        out[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
