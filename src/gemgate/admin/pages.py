"""The admin pages under /admin/: server-rendered HTML over the same services as the admin API.
Plain forms, no JavaScript. A session cookie stands for the admin token; every form carries the
session's CSRF token and a POST without it is refused (see session.py). Here: logging in and
out, client keys, usage and errors, and the route table of all pages."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gemgate.admin import charts, google_login
from gemgate.admin.api import client_address, key_changes, too_many_tries
from gemgate.admin.auth import LOGIN_COOKIE, SESSION_COOKIE, SESSION_SECONDS, AdminAuth
from gemgate.admin.credential_pages import add_credential, board, cred_action, new_credential
from gemgate.admin.rendering import HERE, back, render
from gemgate.admin.session import Session, gateway_of, page, read_form
from gemgate.errors import GatewayError, InvalidRequest
from gemgate.services import keys as key_service
from gemgate.services import usage_report

# -- login ------------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    auth: AdminAuth = request.app.state.admin_auth
    if auth.session(request.cookies.get(SESSION_COOKIE)):
        return RedirectResponse("/admin/", status_code=303)
    return _login_form(request, auth)


def _login_form(request: Request, auth: AdminAuth, error: str = "") -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or AdminAuth.new_nonce()
    response = render(
        request,
        "login.html",
        401 if error else 200,
        csrf=auth.csrf("login:" + nonce),
        error=error,
        configured=auth.configured,
    )
    response.set_cookie(LOGIN_COOKIE, nonce, path="/admin", httponly=True, samesite="strict")
    return response


async def login(request: Request) -> Response:
    auth: AdminAuth = request.app.state.admin_auth
    form = await read_form(request)
    nonce = request.cookies.get(LOGIN_COOKIE)
    given_csrf = (form.get("csrf") or [""])[-1]
    if not nonce or not auth.check_csrf("login:" + nonce, given_csrf):
        return render(request, "refused.html", 403, reason="csrf")
    address = client_address(request)
    wait = auth.throttle.wait(address)
    if wait:
        refused = render(request, "refused.html", 429, reason="throttled", wait=wait)
        refused.headers.update(too_many_tries(wait).headers())
        return refused
    if not auth.check_token((form.get("token") or [""])[-1]):
        auth.throttle.failed(address)
        return _login_form(request, auth, "That is not the admin token.")
    response = RedirectResponse("/admin/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        auth.new_session(),
        max_age=SESSION_SECONDS,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/admin")
    return response


@page
async def logout(request: Request, session: Session) -> Response:
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


# -- client keys ------------------------------------------------------------------------------


async def _keys_page(
    request: Request, session: Session, status: int = 200, **context: Any
) -> Response:
    records = await gateway_of(request).store.list_keys()
    return render(
        request,
        "keys.html",
        status,
        session=session,
        nav="keys",
        keys=[key_service.describe(r) for r in reversed(records)],
        channels=key_service.CHANNELS,
        endpoints=key_service.ENDPOINTS,
        **context,
    )


@page
async def keys(request: Request, session: Session) -> Response:
    return await _keys_page(request, session)


def _form_changes(session: Session) -> dict[str, Any]:
    """Every scope and limit from the key form: a blank field means no restriction."""
    return key_changes(
        {
            "channels": session.getlist("channels"),
            "models": session.get("models"),
            "endpoints": session.getlist("endpoints"),
            **{name: session.get(name) for name in key_service.LIMITS},
        }
    )


@page
async def create_key(request: Request, session: Session) -> Response:
    gateway = gateway_of(request)
    name = session.get("name").strip()
    try:
        if not name:
            raise InvalidRequest("a key needs a name")
        record, secret = await key_service.create(gateway.store, name, **_form_changes(session))
    except GatewayError as error:
        return await _keys_page(request, session, 400, error=error.message, form=session)
    await gateway.reload()
    # Shown in this answer only (no redirect, no cookie): the store keeps only its hash.
    return await _keys_page(request, session, created=key_service.describe(record), secret=secret)


@page
async def key_page(request: Request, session: Session) -> Response:
    record = await key_service.find(gateway_of(request).store, request.path_params["ident"])
    return render(
        request,
        "key_edit.html",
        session=session,
        nav="keys",
        key=key_service.describe(record),
        channels=key_service.CHANNELS,
        endpoints=key_service.ENDPOINTS,
    )


@page
async def update_key(request: Request, session: Session) -> Response:
    gateway = gateway_of(request)
    record = await key_service.find(gateway.store, request.path_params["ident"])
    await key_service.update(gateway.store, record.id, _form_changes(session))
    await gateway.reload()
    return back("/admin/keys", f"Saved key {record.name}.")


@page
async def revoke_key(request: Request, session: Session) -> Response:
    gateway = gateway_of(request)
    record = await key_service.revoke(gateway.store, request.path_params["ident"])
    gateway.keys.forget(record.id)
    await gateway.reload()
    return back("/admin/keys", f"Revoked key {record.name}: it stopped working at once.")


# -- usage and errors -------------------------------------------------------------------------

RANGES = {"day": ("7d", "14d", "30d", "90d"), "hour": ("24h", "48h", "7d")}


@page
async def usage(request: Request, session: Session) -> Response:
    gateway = gateway_of(request)
    params = dict(request.query_params)
    bucket = params.get("bucket", "day")
    if bucket not in RANGES:
        bucket = "day"
    params["bucket"] = bucket
    span = params.get("span", "")
    if span not in RANGES[bucket]:
        span = RANGES[bucket][1]
    params.setdefault("since", span)
    query = usage_report.parse_query(params)
    await gateway.usage.written()
    report = await usage_report.report(gateway.store, **query, cache=gateway.usage_slots)
    requests_svg, requests_legend = charts.stacked_bars(report, "requests", "Requests")
    tokens_svg, tokens_legend = charts.stacked_bars(report, "total_tokens", "Tokens")
    return render(
        request,
        "usage.html",
        session=session,
        nav="usage",
        report=report,
        requests_svg=requests_svg,
        tokens_svg=tokens_svg,
        legend=requests_legend,
        tokens_legend=tokens_legend,
        by=query["by"],
        bucket=bucket,
        span=span,
        ranges=RANGES,
    )


@page
async def errors(request: Request, session: Session) -> Response:
    return render(
        request,
        "errors.html",
        session=session,
        nav="errors",
        errors=gateway_of(request).recent_errors.latest(200),
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/", board, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/credentials/new", new_credential, methods=["GET"]),
        Route("/credentials", add_credential, methods=["POST"]),
        *(
            Route(f"/credentials/{{cred_id}}/{action}", cred_action(action), methods=["POST"])
            for action in ("test", "quota", "enable", "disable", "remove")
        ),
        Route("/keys", keys, methods=["GET"]),
        Route("/keys", create_key, methods=["POST"]),
        Route("/keys/{ident}", key_page, methods=["GET"]),
        Route("/keys/{ident}", update_key, methods=["POST"]),
        Route("/keys/{ident}/revoke", revoke_key, methods=["POST"]),
        Route("/usage", usage, methods=["GET"]),
        Route("/errors", errors, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        *google_login.routes(),
    ]
