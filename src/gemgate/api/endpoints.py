"""Thin endpoints: each hands its request to the pipeline with the format it speaks."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from gemgate import proxy
from gemgate.api.fronts import (
    ANTHROPIC,
    ANTHROPIC_COUNT,
    CHANNEL_PREFIXES,
    EMBEDDINGS,
    NATIVE,
    NATIVE_ARRAY,
    NATIVE_EMBED,
    NATIVE_SSE,
    OPENAI_CHAT,
    OPENAI_RESPONSES,
    SPEECH,
)
from gemgate.channels.base import ModelInfo
from gemgate.errors import GatewayError, InvalidRequest, NotFound
from gemgate.formats.gemini_native import GeminiNative
from gemgate.formats.openai_images import Action, OpenAIImages
from gemgate.gateway import Gateway
from gemgate.services.keys import ClientKey


async def chat_completions(request: Request, channel: str | None = None) -> proxy.Answer:
    gateway: Gateway = request.app.state.gateway
    return await proxy.handle(gateway, OPENAI_CHAT, request, channel=channel)


async def embeddings(request: Request, channel: str | None = None) -> Response:
    gateway: Gateway = request.app.state.gateway
    return await proxy.embed(gateway, EMBEDDINGS, request, channel=channel)


async def speech(request: Request, channel: str | None = None) -> proxy.Answer:
    gateway: Gateway = request.app.state.gateway
    return await proxy.handle(gateway, SPEECH, request, channel=channel)


async def images(request: Request, action: Action, channel: str | None = None) -> proxy.Answer:
    gateway: Gateway = request.app.state.gateway
    fmt = OpenAIImages(action, request.headers.get("content-type"), gateway.settings.image_model)
    return await proxy.handle(gateway, fmt, request, channel=channel)
# -- OpenAI Responses -------------------------------------------------------------------------


async def responses_create(request: Request, channel: str | None = None) -> proxy.Answer:
    gateway: Gateway = request.app.state.gateway
    return await proxy.handle(gateway, OPENAI_RESPONSES, request, channel=channel)


async def responses_kept(request: Request, channel: str | None = None) -> Response:
    """GET or DELETE a kept answer; a key sees only its own."""
    gateway: Gateway = request.app.state.gateway
    key: ClientKey = request.scope["state"]["client_key"]
    response_id = request.path_params["response_id"]
    try:
        key.check_endpoint(OPENAI_RESPONSES.endpoint)
        if request.method == "DELETE":
            if await gateway.responses.delete(key.id, response_id):
                body = {"id": response_id, "object": "response", "deleted": True}
                return Response(orjson.dumps(body), media_type="application/json")
        else:
            found = await gateway.responses.response(key.id, response_id)
            if found is not None:
                return Response(orjson.dumps(found), media_type="application/json")
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    except GatewayError as error:
        return proxy.error_response(OPENAI_RESPONSES, error)


async def openai_models(request: Request, channel: str | None = None) -> Response:
    gateway: Gateway = request.app.state.gateway
    key: ClientKey = request.scope["state"]["client_key"]
    try:
        data = [m.id for m in await usable_models(gateway, key, channel)]
    except GatewayError as error:
        return proxy.error_response(OPENAI_CHAT, error)
    created = int(time.time())
    body = {
        "object": "list",
        "data": [
            {"id": model_id, "object": "model", "created": created, "owned_by": "google"}
            for model_id in data
        ],
    }
    return Response(orjson.dumps(body), media_type="application/json")


async def usable_models(gateway: Gateway, key: ClientKey, channel: str | None) -> list[ModelInfo]:
    """Models this key may use, from the channel named or from every channel it may use."""
    wanted = [channel] if channel else list(gateway.channels)
    found: dict[str, ModelInfo] = {}
    for cid in wanted:
        if cid not in gateway.channels or (key.channels is not None and cid not in key.channels):
            continue
        if not gateway.pool.has_usable(cid) and channel is None:
            continue
        upstream = gateway.channels[cid]
        models = await gateway.pool.call(cid, "models", upstream.list_models)
        for m in models:
            if key.may_use_model(m.id):
                found.setdefault(m.id, m)
    return list(found.values())


async def home(request: Request) -> Response:
    """What a client probing the server's root finds: which server this is (no key needed)."""
    return Response(_HOME, media_type="text/plain")


_HOME = (
    b"gemgate: Google Gemini behind the OpenAI, Anthropic and Gemini APIs.\n"
    b"API under /v1 and /v1beta (also under /gemini, /gemini_cli, /gemini_official); "
    b"admin page at /admin/; documentation in the README.\n"
)


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def media_file(request: Request) -> Response:
    """A generated image behind a signed, expiring link (see gemgate.media)."""
    gateway: Gateway = request.app.state.gateway
    path = gateway.media.path_for(request.path_params["token"])
    if path is None:
        return Response(b"not found or expired\n", status_code=404, media_type="text/plain")
    return FileResponse(
        path, media_type=gateway.media.mime_of(path), headers={"cache-control": "private"}
    )


# -- Anthropic Messages -----------------------------------------------------------------------


async def messages(request: Request, channel: str | None = None) -> proxy.Answer:
    gateway: Gateway = request.app.state.gateway
    return await proxy.handle(gateway, ANTHROPIC, request, channel=channel)


async def messages_count_tokens(request: Request, channel: str | None = None) -> Response:
    gateway: Gateway = request.app.state.gateway
    return await proxy.count_tokens(
        gateway, ANTHROPIC_COUNT, request, channel=channel, render=ANTHROPIC_COUNT.encode_count
    )


# -- Gemini native ----------------------------------------------------------------------------


async def native_action(request: Request, channel: str | None = None) -> proxy.Answer:
    """POST models/{model}:generateContent, :streamGenerateContent, :countTokens."""
    gateway: Gateway = request.app.state.gateway
    model, _, action = request.path_params["target"].rpartition(":")
    fmt: GeminiNative
    if action == "streamGenerateContent":
        fmt = NATIVE_SSE if request.query_params.get("alt") == "sse" else NATIVE_ARRAY
    elif action in ("generateContent", "countTokens"):
        fmt = NATIVE
    elif action in ("embedContent", "batchEmbedContents"):
        fmt = NATIVE_EMBED
    else:
        return proxy.error_response(NATIVE, NotFound(f"no method {action!r} for models"))

    async def through_ir() -> proxy.Answer:
        if fmt is NATIVE_EMBED:
            # Embeddings have no neutral form to translate a native body through.
            routed = gateway.router.resolve(model, channel).channel
            return proxy.error_response(
                fmt, InvalidRequest(f"the {routed} channel does not serve embeddings")
            )
        if action == "countTokens":
            return await proxy.count_tokens(
                gateway, fmt, request, channel=channel, render=fmt.encode_count, path_model=model
            )
        return await proxy.handle(gateway, fmt, request, channel=channel, path_model=model)

    return await proxy.passthrough(
        gateway,
        fmt,
        request,
        channel=channel,
        model=model,
        action=action,
        fallback=through_ir,
    )


async def native_models(request: Request, channel: str | None = None) -> Response:
    gateway: Gateway = request.app.state.gateway
    key: ClientKey = request.scope["state"]["client_key"]
    try:
        key.check_endpoint(NATIVE.endpoint)
        models = await usable_models(gateway, key, channel)
    except GatewayError as error:
        return proxy.error_response(NATIVE, error)
    body = {"models": [_native_model(m) for m in models]}
    return Response(orjson.dumps(body), media_type="application/json")


async def native_model(request: Request, channel: str | None = None) -> Response:
    gateway: Gateway = request.app.state.gateway
    key: ClientKey = request.scope["state"]["client_key"]
    wanted = request.path_params["target"].removeprefix("models/")
    try:
        key.check_endpoint(NATIVE.endpoint)
        route = gateway.router.resolve(wanted, channel)
        key.check(route.channel, route.asked, route.model, NATIVE.endpoint)
        for m in await usable_models(gateway, key, route.channel):
            if m.id == route.model:
                return Response(orjson.dumps(_native_model(m)), media_type="application/json")
    except GatewayError as error:
        return proxy.error_response(NATIVE, error)
    return proxy.error_response(NATIVE, NotFound(f"models/{wanted} is not found"))


def _native_model(model: ModelInfo) -> dict[str, Any]:
    if model.raw:
        return model.raw
    out: dict[str, Any] = {
        "name": f"models/{model.id}",
        "baseModelId": model.id,
        "displayName": model.display_name or model.id,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    }
    if model.input_token_limit:
        out["inputTokenLimit"] = model.input_token_limit
    if model.output_token_limit:
        out["outputTokenLimit"] = model.output_token_limit
    return out


def _google_client(request: Request) -> bool:
    """Whether a request on a path both APIs share (/v1/models) comes from a Google SDK."""
    return "x-goog-api-key" in request.headers or "key" in request.query_params


async def v1_models(request: Request, channel: str | None = None) -> Response:
    if _google_client(request):
        return await native_models(request, channel)
    return await openai_models(request, channel)


def routes() -> list[BaseRoute]:
    table: list[BaseRoute] = [
        Route("/", home, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/media/{token}", media_file, methods=["GET"]),
    ]
    for prefix, channel in [("", None), *((f"/{c}", c) for c in CHANNEL_PREFIXES)]:
        bound: dict[str, Any] = {"channel": channel}
        table += [
            Route(
                f"{prefix}/v1/chat/completions",
                partial(chat_completions, **bound),
                methods=["POST"],
            ),
            Route(f"{prefix}/v1/responses", partial(responses_create, **bound), methods=["POST"]),
            Route(
                f"{prefix}/v1/responses/{{response_id}}",
                partial(responses_kept, **bound),
                methods=["GET", "DELETE"],
            ),
            Route(f"{prefix}/v1/models", partial(v1_models, **bound), methods=["GET"]),
            Route(f"{prefix}/v1/embeddings", partial(embeddings, **bound), methods=["POST"]),
            Route(f"{prefix}/v1/audio/speech", partial(speech, **bound), methods=["POST"]),
            Route(
                f"{prefix}/v1/images/generations",
                partial(images, action="generations", **bound),
                methods=["POST"],
            ),
            Route(
                f"{prefix}/v1/images/edits",
                partial(images, action="edits", **bound),
                methods=["POST"],
            ),
            Route(f"{prefix}/v1/messages", partial(messages, **bound), methods=["POST"]),
            Route(
                f"{prefix}/v1/messages/count_tokens",
                partial(messages_count_tokens, **bound),
                methods=["POST"],
            ),
            Route(f"{prefix}/v1beta/models", partial(native_models, **bound), methods=["GET"]),
            Route(
                f"{prefix}/v1beta/models/{{target:path}}",
                partial(native_model, **bound),
                methods=["GET"],
            ),
        ]
        # Google's clients also speak v1; only the colon methods, as /v1/models is OpenAI's.
        for version in ("v1beta", "v1"):
            table.append(
                Route(
                    f"{prefix}/{version}/models/{{target:path}}",
                    partial(native_action, **bound),
                    methods=["POST"],
                )
            )
    return table
