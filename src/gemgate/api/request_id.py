"""Pure-ASGI middleware: every response carries a request id, the client's own when it sent one."""

from __future__ import annotations

from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gemgate.ids import new_id

# The request being served, for log lines and error records made far from the request object.
CURRENT: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id")
        request_id = given[:64] if given else ("req_" + new_id()).encode()
        text = request_id.decode("latin-1")
        scope.setdefault("state", {})["request_id"] = text
        CURRENT.set(text)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                # `request-id` is the name Anthropic's clients read (and show in errors).
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id),
                    (b"request-id", request_id),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)
