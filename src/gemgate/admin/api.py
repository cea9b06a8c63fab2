"""The admin JSON API under /admin/api/: keys, credentials, usage and recent errors, as thin
endpoints over the services layer. Every answer masks secrets; bad input is a 400 with a
message, an unknown id a 404."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gemgate.admin.auth import AdminAuth
from gemgate.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    NotFound,
    RateLimited,
)
from gemgate.gateway import Gateway
from gemgate.services import (
    cookie_import,  # noqa: F401  (registers the gemini_official kind)
    oauth_import,  # noqa: F401  (registers the gemini_cli kind)
    usage_report,
)
from gemgate.services import credentials as credential_service
from gemgate.services import keys as key_service
from gemgate.services.quota_readings import QuotaReadings
from gemgate.store import CredentialRecord

Endpoint = Callable[[Request], Awaitable[Response]]
KEY_FIELDS = ("channels", "models", "endpoints", *key_service.LIMITS)
CREDENTIAL_FIELDS = ("channel", "label", "proxy")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_body(error: GatewayError) -> Response:
    response = json_response(
        {"error": {"message": error.message, "type": error.kind, "status": error.status}},
        error.status,
    )
    response.headers.update(error.headers())
    return response


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def too_many_tries(wait: float) -> RateLimited:
    return RateLimited(
        f"too many wrong admin tokens from this address: try again in {wait:.0f} s",
        retry_after=wait,
    )


def admin_endpoint(func: Endpoint) -> Endpoint:
    """The admin token as a bearer token, then the endpoint; its errors become JSON."""

    @wraps(func)
    async def endpoint(request: Request) -> Response:
        auth: AdminAuth = request.app.state.admin_auth
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        address = client_address(request)
        try:
            if not auth.configured:
                raise AuthenticationFailed("no admin token is set: start gemgate with serve")
            wait = auth.throttle.wait(address)
            if wait:
                raise too_many_tries(wait)
            if scheme.lower() != "bearer" or not auth.check_token(token):
                auth.throttle.failed(address)
                raise AuthenticationFailed(
                    "send the admin token as 'Authorization: Bearer <token>'"
                )
            return await func(request)
        except GatewayError as error:
            return error_body(error)

    return endpoint


async def _body(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body must be JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidRequest(
            f"unknown field {', '.join(unknown)} (known: {', '.join(allowed) or 'none'})"
        )
    return data


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


def _cred_id(request: Request) -> int:
    raw = request.path_params["cred_id"]
    if not raw.isdigit():
        raise NotFound(f"no credential {raw!r}")
    return int(raw)


# -- keys -------------------------------------------------------------------------------------


def key_changes(data: dict[str, Any]) -> dict[str, Any]:
    """Scopes and limits from a JSON object or a form: a given field is set (empty or null
    lifts the restriction), a missing one is left alone."""
    given = key_service.scopes(data.get("channels"), data.get("models"), data.get("endpoints"))
    changes: dict[str, Any] = {k: v for k, v in given.items() if k in data}
    for name in key_service.LIMITS:
        if name in data:
            changes[name] = key_service.limit(name, data[name])
    return changes


@admin_endpoint
async def keys_list(request: Request) -> Response:
    records = await _gateway(request).store.list_keys()
    return json_response({"keys": [key_service.describe(r) for r in records]})


@admin_endpoint
async def keys_create(request: Request) -> Response:
    gateway = _gateway(request)
    data = await _body(request, ("name", *KEY_FIELDS))
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("a key needs a name")
    record, secret = await key_service.create(gateway.store, name.strip(), **key_changes(data))
    await gateway.reload()
    # The key itself, this once; only its hash is stored.
    return json_response({"key": key_service.describe(record), "secret": secret}, 201)


@admin_endpoint
async def keys_show(request: Request) -> Response:
    record = await key_service.find(_gateway(request).store, request.path_params["ident"])
    return json_response(key_service.describe(record))


@admin_endpoint
async def keys_update(request: Request) -> Response:
    gateway = _gateway(request)
    record = await key_service.find(gateway.store, request.path_params["ident"])
    changes = key_changes(await _body(request, KEY_FIELDS))
    updated = await key_service.update(gateway.store, record.id, changes)
    await gateway.reload()
    return json_response(key_service.describe(updated))


@admin_endpoint
async def keys_revoke(request: Request) -> Response:
    gateway = _gateway(request)
    record = await key_service.revoke(gateway.store, request.path_params["ident"])
    # At once on this instance, whatever the store's watcher does.
    gateway.keys.forget(record.id)
    await gateway.reload()
    return json_response(key_service.describe(record))


# -- credentials ------------------------------------------------------------------------------


async def live_credentials(gateway: Gateway, readings: QuotaReadings) -> list[dict[str, Any]]:
    # What the gateway loaded at the store's current revision: no second read of every row.
    await gateway.reload()
    return [_live(gateway, readings, r) for r in gateway.credential_records]


def _live(gateway: Gateway, readings: QuotaReadings, record: CredentialRecord) -> dict[str, Any]:
    """A credential's live view, with the quota left when its channel reports it (the last
    reading; None when never read or the channel does not say)."""
    view = credential_service.live(record, gateway.pool.state(record.id))
    view["quota"] = readings.last(record.id)
    return view


def quota_readings(request: Request) -> QuotaReadings:
    return request.app.state.quota_readings  # type: ignore[no-any-return]


@admin_endpoint
async def credentials_list(request: Request) -> Response:
    return json_response(
        {"credentials": await live_credentials(_gateway(request), quota_readings(request))}
    )


@admin_endpoint
async def credential_kinds(request: Request) -> Response:
    kinds = [
        {
            "channel": kind.channel,
            "title": kind.title,
            "guide": kind.guide,
            "steps": list(kind.steps),
            "fields": [
                {"name": f.name, "label": f.label, "kind": f.kind, "required": f.required}
                for f in kind.fields
            ],
        }
        for kind in credential_service.KINDS.values()
    ]
    return json_response({"kinds": kinds})


@admin_endpoint
async def credentials_add(request: Request) -> Response:
    gateway = _gateway(request)
    raw = await _body(request, (*CREDENTIAL_FIELDS, *_all_secret_fields()))
    channel = raw.get("channel")
    if not isinstance(channel, str) or not channel:
        raise InvalidRequest("say which channel the credential is for: 'channel'")
    for name in ("label", "proxy"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise InvalidRequest(f"{name} must be a string")
    record = await credential_service.add(
        gateway.store, channel, raw, label=raw.get("label"), proxy=raw.get("proxy")
    )
    await gateway.reload()
    return json_response(_live(gateway, quota_readings(request), record), 201)


def _all_secret_fields() -> tuple[str, ...]:
    return tuple(f.name for kind in credential_service.KINDS.values() for f in kind.fields)


@admin_endpoint
async def credentials_show(request: Request) -> Response:
    gateway = _gateway(request)
    record = await credential_service.find(gateway.store, _cred_id(request))
    return json_response(_live(gateway, quota_readings(request), record))


@admin_endpoint
async def credentials_quota(request: Request) -> Response:
    """Ask the upstream now how much quota the account has left (gemini_cli only)."""
    gateway = _gateway(request)
    record = await credential_service.find(gateway.store, _cred_id(request))
    reading = await quota_readings(request).read(
        gateway.store, gateway.settings, record, gateway.channels.get(record.channel)
    )
    return json_response({"credential_id": record.id, **reading})


@admin_endpoint
async def credentials_test(request: Request) -> Response:
    gateway = _gateway(request)
    result = await credential_service.test(gateway.store, gateway.channels, _cred_id(request))
    await gateway.reload()
    record = await credential_service.find(gateway.store, _cred_id(request))
    return json_response(
        {
            "ok": result.ok,
            "message": result.message,
            "credential": _live(gateway, quota_readings(request), record),
        }
    )


def _set_enabled(enabled: bool) -> Endpoint:
    @admin_endpoint
    async def endpoint(request: Request) -> Response:
        gateway = _gateway(request)
        record = await credential_service.set_enabled(gateway.store, _cred_id(request), enabled)
        await gateway.reload()
        return json_response(_live(gateway, quota_readings(request), record))

    return endpoint


@admin_endpoint
async def credentials_remove(request: Request) -> Response:
    gateway = _gateway(request)
    record = await credential_service.remove(gateway.store, _cred_id(request))
    quota_readings(request).forget(record.id)
    await gateway.reload()
    return json_response({"removed": credential_service.describe(record)})


# -- usage and errors -------------------------------------------------------------------------


@admin_endpoint
async def usage(request: Request) -> Response:
    gateway = _gateway(request)
    query = usage_report.parse_query(request.query_params)
    await gateway.usage.written()
    report = await usage_report.report(gateway.store, **query, cache=gateway.usage_slots)
    return json_response(report)


@admin_endpoint
async def errors(request: Request) -> Response:
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise InvalidRequest("limit must be a whole number from 1 to 500")
    return json_response({"errors": _gateway(request).recent_errors.latest(int(raw))})


@admin_endpoint
async def not_found(request: Request) -> Response:
    raise NotFound(f"no admin API route {request.method} {request.url.path}")


def routes() -> list[BaseRoute]:
    return [
        Route("/keys", keys_list, methods=["GET"]),
        Route("/keys", keys_create, methods=["POST"]),
        Route("/keys/{ident}", keys_show, methods=["GET"]),
        Route("/keys/{ident}", keys_update, methods=["PATCH"]),
        Route("/keys/{ident}/revoke", keys_revoke, methods=["POST"]),
        Route("/credentials", credentials_list, methods=["GET"]),
        Route("/credentials", credentials_add, methods=["POST"]),
        Route("/credential-kinds", credential_kinds, methods=["GET"]),
        Route("/credentials/{cred_id}", credentials_show, methods=["GET"]),
        Route("/credentials/{cred_id}", credentials_remove, methods=["DELETE"]),
        Route("/credentials/{cred_id}/test", credentials_test, methods=["POST"]),
        Route("/credentials/{cred_id}/quota", credentials_quota, methods=["GET"]),
        Route("/credentials/{cred_id}/enable", _set_enabled(True), methods=["POST"]),
        Route("/credentials/{cred_id}/disable", _set_enabled(False), methods=["POST"]),
        Route("/usage", usage, methods=["GET"]),
        Route("/errors", errors, methods=["GET"]),
        Route("/{rest:path}", not_found),
    ]
