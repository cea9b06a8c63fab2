"""The admin pages under /admin/: server-rendered HTML over the same services as the admin API.
Plain forms, no JavaScript. A session cookie stands for the admin token; every form carries the
session's CSRF token and a POST without it is refused."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import cache, wraps
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gemgate.admin import charts
from gemgate.admin.api import (
    client_address,
    key_changes,
    live_credentials,
    quota_readings,
    too_many_tries,
)
from gemgate.admin.auth import LOGIN_COOKIE, SESSION_COOKIE, SESSION_SECONDS, AdminAuth
from gemgate.errors import GatewayError, InvalidRequest
from gemgate.gateway import Gateway
from gemgate.services import credentials as credential_service
from gemgate.services import keys as key_service
from gemgate.services import oauth_import, usage_report
from gemgate.services import quota_readings as quota

HERE = Path(__file__).parent
FLASH_COOKIE = "gemgate_flash"
Page = Callable[[Request, "Session"], Awaitable[Response]]


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    seconds = time.time() - timestamp
    if seconds < 0:
        return _in(timestamp)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def _in(timestamp: float) -> str:
    seconds = max(0, timestamp - time.time())
    if seconds >= 3600:
        return f"in {seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"in {int(seconds // 60)} min {int(seconds % 60)} s"
    return f"in {int(seconds)} s"


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


@cache
def templates() -> Any:
    """The template environment, made on the first page view: a gateway whose admin page is
    never opened does not pay for Jinja in memory or start-up time."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=_ago, until=_in, when=_when, num=lambda n: f"{n or 0:,}")
    return env


class Session:
    """The logged-in admin of one request: their CSRF token, and the form they sent."""

    def __init__(self, auth: AdminAuth, session_id: str, request: Request) -> None:
        self.csrf = auth.csrf(session_id)
        self.request = request
        self.form: dict[str, list[str]] = {}

    def get(self, name: str) -> str:
        values = self.form.get(name)
        return values[-1] if values else ""

    def getlist(self, name: str) -> list[str]:
        return self.form.get(name, [])


def render(
    request: Request,
    template: str,
    status: int = 200,
    *,
    form_leads_to: str = "",
    **context: Any,
) -> HTMLResponse:
    """A page. `form_leads_to`: an origin one of its forms is sent on to by a redirect (the
    browser holds a redirect after a form post to the page's form-action policy)."""
    flash = request.cookies.get(FLASH_COOKIE)
    context.setdefault("flash", _read_flash(flash) if flash else None)
    html = templates().get_template(template).render(request=request, **context)
    headers = _NO_STORE
    if form_leads_to:
        policy = headers["content-security-policy"]
        policy = policy.replace("form-action 'self'", f"form-action 'self' {form_leads_to}")
        headers = {**headers, "content-security-policy": policy}
    response = HTMLResponse(html, status_code=status, headers=headers)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/admin")
    return response


# Pages hold masked secrets and once a new client key: never cached, never framed.
_NO_STORE = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'",
    "referrer-policy": "same-origin",
}


def _read_flash(raw: str) -> dict[str, str]:
    kind, _, text = unquote(raw).partition(":")
    return {"kind": kind if kind in ("ok", "error") else "ok", "text": text}


def back(path: str, text: str, kind: str = "ok") -> RedirectResponse:
    """Post/redirect/get, with a one-time message for the next page."""
    response = RedirectResponse(path, status_code=303)
    set_flash(response, text, kind)
    return response


def set_flash(response: Response, text: str, kind: str = "ok") -> None:
    response.set_cookie(
        FLASH_COOKIE, quote(f"{kind}:{text}"[:600]), path="/admin", httponly=True, samesite="strict"
    )


def page(func: Page) -> Callable[[Request], Awaitable[Response]]:
    """A logged-in page: no session → the login page; a POST must carry the CSRF token."""

    @wraps(func)
    async def endpoint(request: Request) -> Response:
        auth: AdminAuth = request.app.state.admin_auth
        session_id = auth.session(request.cookies.get(SESSION_COOKIE))
        if session_id is None:
            if request.method == "POST":
                return render(request, "refused.html", 403, reason="login")
            return RedirectResponse("/admin/login", status_code=303)
        session = Session(auth, session_id, request)
        if request.method == "POST":
            try:
                session.form = await _form(request)
            except GatewayError as error:
                return back(_referer_path(request), error.message, "error")
            if not auth.check_csrf(session_id, session.get("csrf")):
                return render(request, "refused.html", 403, reason="csrf")
        try:
            return await func(request, session)
        except GatewayError as error:
            if request.method != "POST":
                return render(
                    request, "refused.html", error.status, reason="error", message=error.message
                )
            return back(_referer_path(request), error.message, "error")

    return endpoint


def _referer_path(request: Request) -> str:
    referer = request.headers.get("referer", "")
    path = "/" + referer.split("://", 1)[-1].partition("/")[2] if referer else "/admin/"
    return path if path.startswith("/admin") else "/admin/"


# An uploaded file is a credential document (oauth_creds.json, cookies.txt): small.
UPLOAD_BYTES = 256 * 1024


async def _form(request: Request) -> dict[str, list[str]]:
    """The form's fields as text; an uploaded file as its text, under its field's name."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        body = (await request.body()).decode("utf-8", "replace")
        form: dict[str, list[str]] = {}
        for name, text in parse_qsl(body, keep_blank_values=True):
            form.setdefault(name, []).append(text)
        return form
    form = {}
    try:
        data = await request.form(max_files=4, max_fields=50, max_part_size=UPLOAD_BYTES)
    except MultiPartException as exc:
        raise InvalidRequest(f"the form could not be read: {exc.message}") from None
    try:
        for name, value in data.multi_items():
            if isinstance(value, str):
                form.setdefault(name, []).append(value)
                continue
            raw = await value.read(UPLOAD_BYTES + 1)
            if len(raw) > UPLOAD_BYTES:
                raise InvalidRequest(
                    f"{value.filename or name} is over {UPLOAD_BYTES // 1024} KB: not a "
                    "credential file"
                )
            if raw:
                # A file is a text document; undecodable bytes become U+FFFD and fail parsing.
                form.setdefault(name, []).append(raw.decode("utf-8-sig", "replace"))
    finally:
        await data.close()
    return form


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


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
    form = await _form(request)
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


# -- credentials ------------------------------------------------------------------------------


# Rows on one page of the board: broken and cooling credentials sort first, so they are on the
# first page; a few hundred rows would make the page slow to paint for nothing.
BOARD_ROWS = 100
STATE_ORDER = {"invalid": 0, "cooling": 1, "ok": 2, "disabled": 3}


@page
async def board(request: Request, session: Session) -> Response:
    gateway = gateway_of(request)
    # What needs the operator comes first: broken, then cooling, then working, then disabled.
    credentials = sorted(
        await live_credentials(gateway, quota_readings(request)),
        key=lambda c: (STATE_ORDER.get(c["state"], 9), c["id"]),
    )
    counts = dict.fromkeys(STATE_ORDER, 0)
    for cred in credentials:
        counts[cred["state"]] = counts.get(cred["state"], 0) + 1
    show = _board_filter(request.query_params)
    shown = [c for c in credentials if _shown(c, show)]
    pages = max(1, -(-len(shown) // BOARD_ROWS))
    number = min(show["page"], pages)
    first = (number - 1) * BOARD_ROWS
    return render(
        request,
        "credentials.html",
        session=session,
        nav="credentials",
        # As attributes: Jinja looks `c.state` up as an attribute first, a key only after.
        credentials=[SimpleNamespace(**c) for c in shown[first : first + BOARD_ROWS]],
        total=len(credentials),
        matching=len(shown),
        first=first,
        number=number,
        pages=pages,
        show=show,
        counts=counts,
        channels=key_service.CHANNELS,
        quota_channels=quota.REPORTING,
        words=STATE_WORDS,
    )


def _board_filter(params: Any) -> dict[str, Any]:
    """What the board is asked to show: a state, a channel, words in the label, a page."""
    state = params.get("state", "")
    channel = params.get("channel", "")
    raw_page = params.get("page", "1")
    return {
        "state": state if state in STATE_ORDER else "",
        "channel": channel if channel in key_service.CHANNELS else "",
        "q": params.get("q", "").strip()[:200],
        "page": int(raw_page) if raw_page.isdigit() and int(raw_page) >= 1 else 1,
    }


def _shown(cred: dict[str, Any], show: dict[str, Any]) -> bool:
    if show["state"] and cred["state"] != show["state"]:
        return False
    if show["channel"] and cred["channel"] != show["channel"]:
        return False
    words = show["q"].lower()
    if not words:
        return True
    if words.lstrip("#") == str(cred["id"]):
        return True
    return words in cred["label"].lower() or words in str(cred["secret"].get("email", "")).lower()


STATE_WORDS = {"ok": "Working", "cooling": "Cooling", "invalid": "Broken", "disabled": "Disabled"}


@page
async def new_credential(request: Request, session: Session) -> Response:
    return render(
        request,
        "credential_new.html",
        session=session,
        nav="credentials",
        kinds=_kinds(),
        google_login=oauth_import.CHANNEL in credential_service.KINDS,
        # Signing in goes on to Google's sign-in page.
        form_leads_to=_origin(gateway_of(request).settings.google_accounts_base),
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _kinds() -> list[credential_service.CredentialKind]:
    order = {channel: n for n, channel in enumerate(key_service.CHANNELS)}
    return sorted(credential_service.KINDS.values(), key=lambda k: order.get(k.channel, 99))


@page
async def add_credential(request: Request, session: Session) -> Response:
    gateway = gateway_of(request)
    channel = session.get("channel")
    values = {name: values[-1] for name, values in session.form.items()}
    kind = credential_service.KINDS.get(channel)
    for field in kind.fields if kind else ():
        # A document may be pasted or uploaded as a file (`<name>_file`), not both.
        uploaded = values.pop(field.name + "_file", "")
        if field.kind == "document" and uploaded.strip():
            if values.get(field.name, "").strip():
                raise InvalidRequest(f"give the {field.label} once: pasted or uploaded, not both")
            values[field.name] = uploaded
    record = await credential_service.add(
        gateway.store,
        channel,
        values,
        label=session.get("label"),
        proxy=session.get("proxy"),
    )
    await gateway.reload()
    return back("/admin/", f"Added credential {record.id} ({record.label}) to {channel}.")


def _cred_action(action: str) -> Callable[[Request], Awaitable[Response]]:
    @page
    async def endpoint(request: Request, session: Session) -> Response:
        gateway = gateway_of(request)
        raw = request.path_params["cred_id"]
        if not raw.isdigit():
            raise InvalidRequest(f"no credential {raw!r}")
        cred_id = int(raw)
        kind = "ok"
        if action == "quota":
            record = await credential_service.find(gateway.store, cred_id)
            reading = await quota_readings(request).read(
                gateway.store, gateway.settings, record, gateway.channels.get(record.channel)
            )
            text, kind = _quota_words(record.id, reading)
            return back(_board_path(request, record.id), text, kind)
        if action == "test":
            result = await credential_service.test(gateway.store, gateway.channels, cred_id)
            text, kind = result.message, "ok" if result.ok else "error"
        elif action == "remove":
            record = await credential_service.remove(gateway.store, cred_id)
            quota_readings(request).forget(record.id)
            text = f"Removed credential {record.id} ({record.label})."
        else:
            enabled = action == "enable"
            record = await credential_service.set_enabled(gateway.store, cred_id, enabled)
            done = "Enabled" if enabled else "Disabled"
            text = f"{done} credential {record.id} ({record.label})."
        await gateway.reload()
        return back(_board_path(request, cred_id), text, kind)

    return endpoint


def _board_path(request: Request, cred_id: int) -> str:
    """Back to the board as the admin was looking at it (its filter and page), at the row."""
    path = _referer_path(request).partition("#")[0]
    if not (path == "/admin/" or path.startswith("/admin/?")):
        path = "/admin/"
    return f"{path}#credential-{cred_id}"


def _quota_words(cred_id: int, reading: dict[str, Any]) -> tuple[str, str]:
    if reading["error"]:
        return f"Could not read the quota of credential {cred_id}: {reading['error']}", "error"
    lowest = reading["lowest"]
    if lowest is None:
        return f"Google reports no quota for credential {cred_id}.", "ok"
    return (
        f"Quota of credential {cred_id}: {len(reading['models'])} models, the lowest "
        f"{lowest['model']} with {lowest['left']} left.",
        "ok",
    )


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
    if gateway.usage.pending:
        await gateway.usage.flush()
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
    # Its pages are made with this module's helpers, so it is imported once both exist.
    from gemgate.admin import google_login

    return [
        Route("/", board, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/credentials/new", new_credential, methods=["GET"]),
        Route("/credentials", add_credential, methods=["POST"]),
        *(
            Route(f"/credentials/{{cred_id}}/{action}", _cred_action(action), methods=["POST"])
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
