"""The one data path: format.decode → routing → pool → channel → format.encode."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gemgate import answers, image_output, ir
from gemgate.audio import FORMATS, is_pcm
from gemgate.channels import features
from gemgate.channels.base import Embedder
from gemgate.errors import GatewayError, InternalError, InvalidRequest, Unavailable
from gemgate.event_stream import EventStream
from gemgate.formats.base import EmbeddingFormat, Format, StreamEncoder
from gemgate.gateway import Gateway
from gemgate.pool import Credential
from gemgate.routing import Route
from gemgate.services.admission import FREE, Ticket
from gemgate.services.keys import ClientKey
from gemgate.services.stored_responses import StoredResponses
from gemgate.services.usage import BYTES_PER_TOKEN, estimate
from gemgate.signatures import SignatureCache
from gemgate.speech_out import SpeechOut

log = logging.getLogger("gemgate.proxy")
# One line per routed request, when request lines are on (GEMGATE_ACCESS_LOG, or JSON logs).
request_log = logging.getLogger("gemgate.request")

# What an endpoint answers: a whole response, or a stream of frames.
Answer = Response | EventStream
# What a stream still running when the shutdown's drain window ends is told.
SHUTTING_DOWN = Unavailable("gemgate is shutting down; this answer was cut short, ask again")


async def handle(
    gateway: Gateway,
    fmt: Format,
    request: Request,
    *,
    channel: str | None,
    path_model: str | None = None,
) -> Answer:
    started = time.perf_counter()
    key: ClientKey = request.scope["state"]["client_key"]
    exchange: Exchange | None = None
    try:
        body = await request.body()
        # A plain attribute test: a runtime Protocol check costs microseconds per request.
        decode_stored = getattr(fmt, "decode_stored", None)
        if decode_stored is not None:
            ir_request = await decode_stored(body, gateway.responses, key.id)
        else:
            ir_request = fmt.decode(body, path_model)
        route = gateway.router.resolve(ir_request.model, channel)
        key.check(route.channel, route.asked, route.model, fmt.endpoint)
        upstream = gateway.channels[route.channel]
        features.check(ir_request, route.channel, features.of(upstream))
        ticket = await gateway.admission.admit(
            key, estimate(len(body), ir_request.generation.max_tokens)
        )
        exchange = Exchange(
            gateway, key, route, fmt.endpoint, started, _request_id(request), ticket=ticket
        )
        link = ir_request.client_options.get("link_media")
        asked = ir_request.client_options.get("media_format")
        if asked == "url" or (
            asked is None and (link == "always" or (link and gateway.settings.media_links == "url"))
        ):
            # Clients of this format can only show generated images as links.
            exchange.media_base = gateway.settings.public_url or _BaseUrl(request)
        if asked != "b64_json":
            # A video is too large to go inline unless the client asks for it that way.
            exchange.video_base = gateway.settings.public_url or _BaseUrl(request)
        exchange.image_output = ir_request.image_output
        if "audio_format" in ir_request.client_options:
            exchange.speech = speech_out(gateway, ir_request)
        # The one I/O step before the upstream: URLs in messages become inline bytes (formats
        # stay pure). After the key check, so a key cannot make us fetch for a refused request.
        await gateway.fetcher.resolve(ir_request, len(body), _uploads(upstream))
        await restore_signatures(ir_request, route.model, gateway.signatures)
        served = exchange
        # A channel that keeps chats upstream names the account that holds this one.
        prefer = getattr(upstream, "preferred_credential", None)
        preferred = await prefer(ir_request, route.model) if prefer else None

        def attempt(credential: Credential) -> AsyncIterator[ir.Event | ir.Batch]:
            served.credential_id = credential.id
            return upstream.generate(ir_request, route.model, credential)

        def answer() -> AsyncGenerator[ir.Event | ir.Batch, None]:
            return gateway.pool.stream(route.channel, route.model, attempt, prefer=preferred)

        batches = exchange.watch(
            answer() if ir_request.answers <= 1 else answers.merged(answer, ir_request.answers)
        )
        if ir_request.stream:
            # Wait for the first events before sending headers: until then a failure is still
            # an ordinary HTTP error and the pool may still fail over.
            first = await anext(batches, None)
            exchange.first_byte = time.perf_counter()
            encoder = fmt.stream_encoder(ir_request)
            return EventStream(
                _frames(encoder, first, batches, exchange),
                _stream_head(fmt.stream_media_type),
                # A format that wants keep-alive frames during long upstream silences.
                ping=getattr(encoder, "ping", None),
                ping_interval=getattr(encoder, "ping_interval", 0.0),
            )
        async with aclosing(batches):
            response = ir.collect([event async for batch in batches for event in batch])
        # Encoded before the usage is recorded: a format may still find the answer is an error
        # (the images API, when no image came back).
        encoded = fmt.encode(response, ir_request)
        # A plain attribute test: a runtime Protocol check costs microseconds per request.
        answer_type = getattr(fmt, "answer_media_type", None)
        media_type = answer_type(ir_request) if answer_type else "application/json"
        return Answered(encoded, media_type, exchange)
    except GatewayError as error:
        if exchange is not None:
            exchange.finish(error.status, error.message)
        return error_response(fmt, error)


@dataclass(slots=True)
class Exchange:
    """One routed request: sees its events go by, then records what it cost."""

    gateway: Gateway
    key: ClientKey
    route: Route
    endpoint: str
    # perf_counter() when the request arrived, and when its first answer event was ready.
    started: float
    # The request's id, not the request: a stream keeps its Exchange to the end, and the
    # Starlette request would keep the whole body it was sent with.
    request_id: str | None
    first_byte: float | None = None
    credential_id: int | None = None
    # The answer's latest usage, read only when the exchange finishes (see UsageEvent).
    usage_event: ir.UsageEvent = field(default_factory=lambda: ir.UsageEvent(ir.Usage()))
    # What the key's limits hold for this request until `finish` settles it.
    ticket: Ticket = FREE
    # Where generated images are linked from, when the client needs links to show them.
    media_base: str | _BaseUrl | None = None
    # Where generated videos are linked from; None: they go inline.
    video_base: str | _BaseUrl | None = None
    # What the client wants done to generated images (size, watermark, type).
    image_output: ir.ImageOutput | None = None
    # Speech the answer's PCM is re-encoded into (made on the first PCM part if still None).
    speech: SpeechOut | None = None

    async def watch(
        self, events: AsyncGenerator[ir.Event | ir.Batch, None]
    ) -> AsyncGenerator[ir.Batch, None]:
        """The answer's events in batches (a lone event as a batch of one), as the client is to
        get them; on the way, usage is noted, signatures remembered and media made ready."""
        async with aclosing(events):
            async for got in events:
                batch = got if isinstance(got, list) else [got]
                if not self._plain(batch):
                    batch = await self._ready(batch)
                if batch:
                    yield batch
                del got, batch  # not kept while the next one is awaited
            if self.speech is not None and (audio := await self.speech.finish()):
                yield [*audio]

    def _plain(self, batch: ir.Batch) -> bool:
        """Whether a batch goes on as it is, its usage noted: text and endings, the common
        case, with no tool call, media or speech to see to."""
        for event in batch:
            if isinstance(event, ir.UsageEvent):
                self.usage_event = event
            elif isinstance(event, ir.PartEvent):
                if not isinstance(event.part, ir.Text):
                    return False
            elif isinstance(event, ir.Finish) and self.speech is not None:
                return False
        return True

    async def _ready(self, batch: ir.Batch) -> ir.Batch:
        """A batch with more to see to: tool call signatures remembered, speech re-encoded,
        generated images and videos shaped and linked as the client asked."""
        ready: ir.Batch = []
        for event in batch:
            if isinstance(event, ir.PartEvent):
                part = event.part
                if isinstance(part, ir.ToolCall) and part.signature:
                    self.gateway.signatures.remember(part.id, part.signature, self.route.model)
                elif isinstance(part, ir.Media) and is_pcm(part.mime_type):
                    if self.speech is None:
                        self.speech = SpeechOut(self.gateway.audio, FORMATS["wav"], 1.0, False)
                    taken = self.speech.take(event, part)
                    if taken is None:
                        continue
                    event = taken
                elif isinstance(part, ir.Media) and part.data and not part.uri:
                    if self.video_base and part.mime_type.startswith("video/"):
                        linked = await self.gateway.media.link(part, str(self.video_base))
                        link_only = ir.Media(part.mime_type, uri=linked.uri)
                        ready.append(ir.PartEvent(link_only, event.index))
                        continue
                    if self.image_output is not None:
                        part = await image_output.apply(part, self.image_output)
                    if self.media_base:
                        part = await self.gateway.media.link(part, str(self.media_base))
                    event = ir.PartEvent(part, event.index)
            elif isinstance(event, ir.UsageEvent):
                self.usage_event = event
            elif isinstance(event, ir.Finish) and self.speech is not None:
                ready += await self.speech.finish(event.index)
            ready.append(event)
        return ready

    def finish(self, status: int, error: str | None = None) -> None:
        """The one point every routed request passes at its end: usage, metrics, the request
        log line and the operator's list of recent errors are all fed from here."""
        gateway, route, usage = self.gateway, self.route, self.usage_event.usage
        used = gateway.usage.record(
            self.key, route.channel, route.model, self.endpoint, status, usage
        )
        gateway.admission.settle(self.key, self.ticket, used)
        self.ticket = FREE
        now = time.perf_counter()
        seconds = now - self.started
        first_byte = self.first_byte - self.started if self.first_byte is not None else None
        gateway.metrics.request(
            route.channel, route.model, self.endpoint, status, seconds, first_byte, usage
        )
        if status >= 400 or gateway.request_log:
            request_id = self.request_id
            if status >= 400:
                gateway.recent_errors.add(
                    "request",
                    status,
                    error or "",
                    request_id=request_id,
                    key=self.key.name,
                    channel=route.channel,
                    model=route.model,
                    credential_id=self.credential_id,
                )
            if gateway.request_log:
                request_log.info(
                    "%s %s %s/%s %s %.1fms",
                    request_id,
                    self.key.name,
                    route.channel,
                    route.model,
                    status,
                    seconds * 1000,
                    extra={
                        "request_id": request_id,
                        "key": self.key.name,
                        "channel": route.channel,
                        "model": route.model,
                        "endpoint": self.endpoint,
                        "credential_id": self.credential_id,
                        "status": status,
                        "latency_ms": round(seconds * 1000, 1),
                        "prompt_tokens": usage.prompt_tokens,
                        "output_tokens": usage.output_tokens,
                    },
                )


class Answered(Response):
    """A whole answer whose usage is recorded once it is sent: the client does not wait on the
    bookkeeping (usage, metrics, the request line), which still happens if sending fails."""

    def __init__(self, content: bytes, media_type: str, exchange: Exchange) -> None:
        super().__init__(content, media_type=media_type)
        self.exchange = exchange

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.exchange.finish(200)


@functools.cache
def _stream_head(media_type: str) -> tuple[tuple[bytes, bytes], ...]:
    """A stream's response headers, made once per media type rather than once per stream."""
    return (
        (b"content-type", media_type.encode("latin-1")),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    )


def speech_out(gateway: Gateway, request: ir.Request) -> SpeechOut:
    """The re-encoding of speech a client asked for; a 400 now if the gateway cannot do it."""
    fmt = FORMATS[request.client_options["audio_format"]]
    speed = float(request.client_options.get("audio_speed") or 1.0)
    gateway.audio.check(fmt, speed)
    return SpeechOut(gateway.audio, fmt, speed, request.stream)


def _uploads(channel: object) -> bool:
    """Whether a channel sends media too large to go inline through an upload of its own."""
    return bool(getattr(channel, "uploads_large_media", False))


def _request_id(request: Request) -> str | None:
    return request.scope["state"].get("request_id")  # type: ignore[no-any-return]


class _BaseUrl:
    """The request's own base URL, worked out only if an image needs a link. It keeps the
    scope, which is all the URL comes from, rather than the request and its body."""

    def __init__(self, request: Request) -> None:
        self._scope = request.scope

    def __str__(self) -> str:
        return str(Request(self._scope).base_url)


async def restore_signatures(request: ir.Request, model: str, cache: SignatureCache) -> None:
    """Give back to each replayed tool call the signature the client could not keep: from this
    instance's cache, else (several instances) from the shared state."""
    missing: list[ir.ToolCall] = []
    for message in request.messages:
        if message.role != "model":
            continue
        for part in message.parts:
            if isinstance(part, ir.ToolCall) and not part.signature:
                part.signature = cache.recall(part.id, model)
                if part.signature is None:
                    missing.append(part)
    if missing and cache.shared is not None:
        found = await cache.recall_shared([call.id for call in missing], model)
        for call in missing:
            call.signature = found.get(call.id)


def error_response(fmt: Format, error: GatewayError) -> Response:
    return Response(
        fmt.error_body(error),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers(),
    )


async def _frames(
    encoder: StreamEncoder,
    first: ir.Batch | None,
    batches: AsyncGenerator[ir.Batch, None],
    exchange: Exchange,
) -> AsyncGenerator[bytes, None]:
    """The client's frames, those of one batch together: one write per upstream read."""
    status, message = 200, None
    drain = exchange.gateway.drain
    drain.enter()
    async with aclosing(batches):
        try:
            # Nothing sent is kept while the next batch is awaited: not the first batch for the
            # whole stream, nor the last batch and its frames until the next.
            if first is not None and (frames := _encoded(encoder, first)):
                yield frames
                del frames
            first = None
            async for batch in batches:
                frames = _encoded(encoder, batch)
                del batch
                if frames:
                    yield frames
                del frames
            yield encoder.end()
        except GatewayError as error:
            status, message = error.status, error.message
            yield encoder.error(error)
        except asyncio.CancelledError:
            if not drain.cutting:
                raise
            status, message = SHUTTING_DOWN.status, SHUTTING_DOWN.message
            yield encoder.error(SHUTTING_DOWN)
        except Exception:
            status, message = 500, "the gateway failed while streaming"
            log.exception("stream failed")
            yield encoder.error(InternalError(message))
        finally:
            drain.leave()
            # Also when the client went away mid-stream: what was used so far still counts.
            exchange.finish(status, message)


def _encoded(encoder: StreamEncoder, batch: ir.Batch) -> bytes:
    if len(batch) == 1:
        return encoder.event(batch[0])
    return b"".join([encoder.event(event) for event in batch])


class Stateful(Protocol):
    """A format whose answers may be kept and continued later (OpenAI Responses): its decode
    reads the kept conversation the request continues. `handle` finds it by the method."""

    async def decode_stored(
        self, body: bytes, responses: StoredResponses, key_id: int
    ) -> ir.Request: ...


# -- Gemini-native fast path and token counts -------------------------------------------------

# Enough of the end of an answer to find its last usageMetadata in.
_USAGE_TAIL = 16384


class Passthrough(Protocol):
    """A channel that speaks the Gemini API itself and can take a native body unchanged."""

    def passthrough(
        self, model: str, action: str, body: bytes, credential: Any
    ) -> AsyncIterator[bytes]:
        """The upstream's answer: one whole body, or for `streamGenerateContent` its SSE
        events as the upstream framed them, in blocks of one or more whole events."""
        ...

    def usage_of(self, tail: bytes) -> ir.Usage | None: ...


class RelayFormat(Format, Protocol):
    """A format whose streams are relayed untouched, in its own framing."""

    def relay_events(self, events: bytes, first: bool) -> bytes: ...

    def relay_end(self, sent: bool) -> bytes: ...

    def relay_error(self, error: GatewayError, sent: bool) -> bytes: ...


async def passthrough(
    gateway: Gateway,
    fmt: RelayFormat,
    request: Request,
    *,
    channel: str | None,
    model: str,
    action: str,
    fallback: Callable[[], Awaitable[Answer]],
) -> Answer:
    """A Gemini-native request: relayed as is (client key swapped for a pool credential, model
    rewritten) when the routed channel speaks the Gemini API, else `fallback` (the IR path).
    Routing, key scopes, usage and the pool's failover before the first byte all still apply."""
    started = time.perf_counter()
    key: ClientKey = request.scope["state"]["client_key"]
    exchange: Exchange | None = None
    try:
        route = gateway.router.resolve(model, channel)
        found = gateway.channels[route.channel]
        # A plain attribute test: a runtime Protocol check costs tens of microseconds.
        if getattr(found, "passthrough", None) is None:
            return await fallback()
        upstream = cast(Passthrough, found)
        key.check(route.channel, route.asked, route.model, fmt.endpoint)
        body = await request.body()
        tokens = 0
        if action != "countTokens" and (key.quota_tokens is not None or key.tpm is not None):
            # Only a limited key pays for reading the output cap out of the body.
            tokens = estimate(len(body), _output_cap(body))
        ticket = await gateway.admission.admit(key, tokens)
        if action != "countTokens":
            exchange = Exchange(
                gateway, key, route, fmt.endpoint, started, _request_id(request), ticket=ticket
            )
        served = exchange

        # The pool fails over on whatever the attempt yields first; here that is raw bytes.
        def attempt(credential: Credential) -> Any:
            if served is not None:
                served.credential_id = credential.id
            return upstream.passthrough(route.model, action, body, credential)

        chunks: AsyncGenerator[Any, None] = gateway.pool.stream(route.channel, route.model, attempt)
        first: bytes | None = await anext(chunks, None)
        if exchange is not None:
            exchange.first_byte = time.perf_counter()
        if action == "streamGenerateContent":
            return EventStream(
                _relay(first, chunks, exchange, upstream, fmt),
                _stream_head(fmt.stream_media_type),
            )
        async with aclosing(chunks):
            raw = (first or b"") + b"".join([chunk async for chunk in chunks])
        if exchange is None:  # countTokens: nothing to record
            return Response(raw, media_type="application/json")
        if (usage := upstream.usage_of(raw[-_USAGE_TAIL:])) is not None:
            exchange.usage_event = ir.UsageEvent(usage)
        return Answered(raw, "application/json", exchange)
    except GatewayError as error:
        if exchange is not None:
            exchange.finish(error.status, error.message)
        return error_response(fmt, error)


def _output_cap(body: bytes) -> int | None:
    """`generationConfig.maxOutputTokens` of a native body, when it has a sensible one."""
    try:
        data = orjson.loads(body)
        config = data.get("generationConfig") or data.get("generation_config") or {}
        cap = config.get("maxOutputTokens", config.get("max_output_tokens"))
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else None


async def _relay(
    first: bytes | None,
    events: AsyncGenerator[bytes, None],
    exchange: Exchange | None,
    upstream: Passthrough,
    fmt: RelayFormat,
) -> AsyncGenerator[bytes, None]:
    """Upstream events to the client as they arrive, in blocks of whole events, never
    re-encoded; only the framing is the client's. An error, after some events, is one more
    whole event."""
    status, message = 200, None
    last = b""
    sent = False
    drain = exchange.gateway.drain if exchange is not None else None
    if drain is not None:
        drain.enter()
    async with aclosing(events):
        try:
            if first is not None and (frame := fmt.relay_events(first, True)):
                last, sent = first, True
                yield frame
                del frame
            first = None  # `last` alone is kept: the block whose usage is the answer's
            async for block in events:
                if frame := fmt.relay_events(block, not sent):
                    last, sent = block, True
                    yield frame
            if end := fmt.relay_end(sent):
                yield end
        except GatewayError as error:
            status, message = error.status, error.message
            yield fmt.relay_error(error, sent)
        except asyncio.CancelledError:
            if drain is None or not drain.cutting:
                raise
            status, message = SHUTTING_DOWN.status, SHUTTING_DOWN.message
            yield fmt.relay_error(SHUTTING_DOWN, sent)
        except Exception:
            status, message = 500, "the gateway failed while streaming"
            log.exception("stream failed")
            yield fmt.relay_error(InternalError(message), sent)
        finally:
            if drain is not None:
                drain.leave()
            if exchange is not None:
                # Usage is cumulative: the last event that carries it holds the answer's.
                if (usage := upstream.usage_of(last[-_USAGE_TAIL:])) is not None:
                    exchange.usage_event = ir.UsageEvent(usage)
                exchange.finish(status, message)


async def count_tokens(
    gateway: Gateway,
    fmt: Format,
    request: Request,
    *,
    channel: str | None,
    render: Callable[[int], bytes],
    path_model: str | None = None,
) -> Response:
    """Count a request's prompt tokens upstream; `render` writes the count in the format's
    own shape."""
    key: ClientKey = request.scope["state"]["client_key"]
    try:
        body = await request.body()
        ir_request = fmt.decode(body, path_model)
        route = gateway.router.resolve(ir_request.model, channel)
        key.check(route.channel, route.asked, route.model, fmt.endpoint)
        upstream = gateway.channels[route.channel]
        features.check_count_tokens(route.channel, features.of(upstream))
        features.check(ir_request, route.channel, features.of(upstream))
        await gateway.admission.admit(key, 0)
        await gateway.fetcher.resolve(ir_request, len(body), _uploads(upstream))
        await restore_signatures(ir_request, route.model, gateway.signatures)
        tokens = await gateway.pool.call(
            route.channel,
            route.model,
            lambda credential: upstream.count_tokens(ir_request, route.model, credential),
        )
        return Response(render(tokens), media_type="application/json")
    except GatewayError as error:
        return error_response(fmt, error)


async def embed(
    gateway: Gateway, fmt: EmbeddingFormat, request: Request, *, channel: str | None
) -> Response:
    """Texts to vectors: decode, route, check the key, one pooled call, encode; usage recorded."""
    started = time.perf_counter()
    key: ClientKey = request.scope["state"]["client_key"]
    exchange: Exchange | None = None
    try:
        body = await request.body()
        ir_request = fmt.decode(body)
        route = gateway.router.resolve(ir_request.model, channel)
        key.check(route.channel, route.asked, route.model, fmt.endpoint)
        upstream = gateway.channels[route.channel]
        if not isinstance(upstream, Embedder):
            raise InvalidRequest(
                f"the {route.channel} channel does not serve embeddings", param="model"
            )
        ticket = await gateway.admission.admit(key, len(body) // BYTES_PER_TOKEN + 1)
        exchange = Exchange(
            gateway, key, route, fmt.endpoint, started, _request_id(request), ticket=ticket
        )
        result = await gateway.pool.call(
            route.channel,
            route.model,
            lambda credential: upstream.embed(ir_request, route.model, credential),
        )
        exchange.usage_event = ir.UsageEvent(result.usage)
        exchange.finish(200)
        return Response(fmt.encode(result, ir_request), media_type="application/json")
    except GatewayError as error:
        if exchange is not None:
            exchange.finish(error.status, error.message)
        return Response(
            fmt.error_body(error),
            status_code=error.status,
            media_type="application/json",
            headers=error.headers(),
        )
