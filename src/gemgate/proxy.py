"""The one data path: format.decode → routing → pool → channel → format.encode."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gemgate import ir
from gemgate.errors import GatewayError, InternalError
from gemgate.formats.base import Format, StreamEncoder
from gemgate.gateway import Gateway
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
    try:
        ir_request = fmt.decode(await request.body(), path_model)
        route = gateway.router.resolve(ir_request.model, channel)
        key.check(route.channel, ir_request.model, fmt.endpoint)
        restore_signatures(ir_request, route.model, gateway.signatures)
        upstream = gateway.channels[route.channel]
        events = remember_signatures(
            gateway.pool.stream(
                route.channel,
                route.model,
                lambda credential: upstream.generate(ir_request, route.model, credential),
            ),
            route.model,
            gateway.signatures,
        )
        if ir_request.stream:
            # Wait for the first event before sending headers: until then a failure is still
            # an ordinary HTTP error and the pool may still fail over.
            first = await anext(events, None)
            encoder = fmt.stream_encoder(ir_request)
            return StreamingResponse(
                _frames(encoder, first, events),
                media_type=fmt.stream_media_type,
                headers=_STREAM_HEADERS,
            )
        async with aclosing(events):
            response = ir.collect([event async for event in events])
        return Response(fmt.encode(response, ir_request), media_type="application/json")
    except GatewayError as error:
        return error_response(fmt, error)


def restore_signatures(request: ir.Request, model: str, cache: SignatureCache) -> None:
    """Give back to each replayed tool call the signature the client could not keep."""
    for message in request.messages:
        if message.role != "model":
            continue
        for part in message.parts:
            if isinstance(part, ir.ToolCall) and not part.signature:
                part.signature = cache.recall(part.id, model)


async def remember_signatures(
    events: AsyncIterator[ir.Event], model: str, cache: SignatureCache
) -> AsyncIterator[ir.Event]:
    async with aclosing(events):  # type: ignore[type-var]
        async for event in events:
            if isinstance(event, ir.PartEvent):
                part = event.part
                if isinstance(part, ir.ToolCall) and part.signature:
                    cache.remember(part.id, part.signature, model)
            yield event


def error_response(fmt: Format, error: GatewayError) -> Response:
    return Response(
        fmt.error_body(error),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers(),
    )


async def _frames(
    encoder: StreamEncoder, first: ir.Event | None, events: AsyncIterator[ir.Event]
) -> AsyncIterator[bytes]:
    async with aclosing(events):  # type: ignore[type-var]
        try:
            if first is not None:
                yield encoder.event(first)
            async for event in events:
                frame = encoder.event(event)
                if frame:
                    yield frame
            yield encoder.end()
        except GatewayError as error:
            yield encoder.error(error)
        except Exception:
            log.exception("stream failed")
            yield encoder.error(InternalError("the gateway failed while streaming"))
