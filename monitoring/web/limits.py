"""A cap on request bodies, enforced before anything parses them (pure ASGI middleware).

A declared ``Content-Length`` over the cap is answered 413 without reading a byte; a body
without one (chunked) is counted as it streams in, and reading stops with 413 at the first
chunk that crosses the cap. Each path may have its own cap (the Label Studio upload is
larger than ordinary forms).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.core.errors import NewsflowError

MAX_FORM_BYTES = 64 * 1024


class BodyTooLarge(NewsflowError):
    """A request body over the limit (answered 413)."""


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        default: int,
        per_path: Mapping[str, int],
        refuse: Callable[[int, str], Response],
    ) -> None:
        self.app, self.default, self.per_path, self.refuse = app, default, dict(per_path), refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        declared = [v for k, v in scope["headers"] if k == b"content-length"]
        if declared:
            raw = declared[0].strip()
            if not raw.isdigit() or any(v.strip() != raw for v in declared):
                await self.refuse(400, "The request has a bad Content-Length.")(
                    scope, receive, send
                )
                return
            if int(raw) > limit:
                await self._too_large(limit, scope, receive, send)
                return

        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            if started:
                raise
            await self._too_large(limit, scope, receive, send)

    async def _too_large(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"
        await self.refuse(413, f"The request is over {size}.")(scope, receive, send)
