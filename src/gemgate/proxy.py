"""The one data path: format.decode → routing → pool → channel → format.encode."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gemgate import ir
from gemgate.errors import GatewayError, InternalError
from gemgate.formats.base import Format, StreamEncoder
from gemgate.gateway import Gateway
from gemgate.routing import Route
from gemgate.services.keys import ClientKey
from gemgate.signatures import SignatureCache

log = logging.getLogger("gemgate.proxy")

_STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def handle(
    gateway: Gateway,
    fmt: Format,
    request: Request,
    *,
    channel: str | None,
    path_model: str | None = None,
) -> Response:
    key: ClientKey = request.scope["state"]["client_key"]
    exchange: Exchange | None = None
    try:
        ir_request = fmt.decode(await request.body(), path_model)
        route = gateway.router.resolve(ir_request.model, channel)
        key.check(route.channel, ir_request.model, fmt.endpoint)
        exchange = Exchange(gateway, key, route, fmt.endpoint)
        restore_signatures(ir_request, route.model, gateway.signatures)
        upstream = gateway.channels[route.channel]
        events = exchange.watch(
            gateway.pool.stream(
                route.channel,
                route.model,
                lambda credential: upstream.generate(ir_request, route.model, credential),
            )
        )
        if ir_request.stream:
            # Wait for the first event before sending headers: until then a failure is still
            # an ordinary HTTP error and the pool may still fail over.
            first = await anext(events, None)
            encoder = fmt.stream_encoder(ir_request)
            return StreamingResponse(
                _frames(encoder, first, events, exchange),
                media_type=fmt.stream_media_type,
                headers=_STREAM_HEADERS,
            )
        async with aclosing(events):
            response = ir.collect([event async for event in events])
        exchange.finish(200)
        return Response(fmt.encode(response, ir_request), media_type="application/json")
    except GatewayError as error:
        if exchange is not None:
            exchange.finish(error.status)
        return error_response(fmt, error)


@dataclass(slots=True)
class Exchange:
    """One routed request: sees its events go by, then records what it cost."""

    gateway: Gateway
    key: ClientKey
    route: Route
    endpoint: str
    usage: ir.Usage = field(default_factory=ir.Usage)

    async def watch(self, events: AsyncGenerator[ir.Event, None]) -> AsyncGenerator[ir.Event, None]:
        cache = self.gateway.signatures
        async with aclosing(events):
            async for event in events:
                if isinstance(event, ir.PartEvent):
                    part = event.part
                    if isinstance(part, ir.ToolCall) and part.signature:
                        cache.remember(part.id, part.signature, self.route.model)
                elif isinstance(event, ir.UsageEvent):
                    self.usage = event.usage
                yield event

    def finish(self, status: int) -> None:
        self.gateway.usage.record(
            self.key, self.route.channel, self.route.model, self.endpoint, status, self.usage
        )


def restore_signatures(request: ir.Request, model: str, cache: SignatureCache) -> None:
    """Give back to each replayed tool call the signature the client could not keep."""
    for message in request.messages:
        if message.role != "model":
            continue
        for part in message.parts:
            if isinstance(part, ir.ToolCall) and not part.signature:
                part.signature = cache.recall(part.id, model)


def error_response(fmt: Format, error: GatewayError) -> Response:
    return Response(
        fmt.error_body(error),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers(),
    )


async def _frames(
    encoder: StreamEncoder,
    first: ir.Event | None,
    events: AsyncGenerator[ir.Event, None],
    exchange: Exchange,
) -> AsyncIterator[bytes]:
    status = 200
    async with aclosing(events):
        try:
            if first is not None:
                yield encoder.event(first)
            async for event in events:
                frame = encoder.event(event)
                if frame:
                    yield frame
            yield encoder.end()
        except GatewayError as error:
            status = error.status
            yield encoder.error(error)
        except Exception:
            status = 500
            log.exception("stream failed")
            yield encoder.error(InternalError("the gateway failed while streaming"))
        finally:
            # Also when the client went away mid-stream: what was used so far still counts.
            exchange.finish(status)
