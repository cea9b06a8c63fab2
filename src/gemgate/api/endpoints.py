"""Thin endpoints: each hands its request to the pipeline with the format it speaks."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gemgate import proxy
from gemgate.api.fronts import CHANNEL_PREFIXES, OPENAI_CHAT
from gemgate.errors import GatewayError
from gemgate.gateway import Gateway
from gemgate.services.keys import ClientKey


async def chat_completions(request: Request, channel: str | None = None) -> Response:
    gateway: Gateway = request.app.state.gateway
    return await proxy.handle(gateway, OPENAI_CHAT, request, channel=channel)


async def openai_models(request: Request, channel: str | None = None) -> Response:
    gateway: Gateway = request.app.state.gateway
    key: ClientKey = request.scope["state"]["client_key"]
    try:
        data = await list_models(gateway, key, channel)
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


async def list_models(gateway: Gateway, key: ClientKey, channel: str | None) -> list[str]:
    """Model ids this key may use, from the channel named or from every channel it may use."""
    wanted = [channel] if channel else list(gateway.channels)
    ids: list[str] = []
    for cid in wanted:
        if cid not in gateway.channels or (key.channels is not None and cid not in key.channels):
            continue
        if not gateway.pool.has_usable(cid) and channel is None:
            continue
        upstream = gateway.channels[cid]
        models = await gateway.pool.call(cid, "models", upstream.list_models)
        ids.extend(m.id for m in models if key.may_use_model(m.id) and m.id not in ids)
    return ids


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def routes() -> list[BaseRoute]:
    table: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    for prefix, channel in [("", None), *((f"/{c}", c) for c in CHANNEL_PREFIXES)]:
        bound: dict[str, Any] = {"channel": channel}
        table += [
            Route(
                f"{prefix}/v1/chat/completions",
                partial(chat_completions, **bound),
                methods=["POST"],
            ),
            Route(f"{prefix}/v1/models", partial(openai_models, **bound), methods=["GET"]),
        ]
    return table
