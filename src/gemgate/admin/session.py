"""Who is on an admin page: the logged-in admin's session (no session → the login page), the
CSRF token every form must send back (a POST without it changes nothing), and the form they
sent, uploads included."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from urllib.parse import parse_qsl

from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gemgate.admin.auth import SESSION_COOKIE, AdminAuth
from gemgate.admin.rendering import back, render
from gemgate.errors import GatewayError, InvalidRequest
from gemgate.gateway import Gateway

Page = Callable[[Request, "Session"], Awaitable[Response]]


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
                session.form = await read_form(request)
            except GatewayError as error:
                return back(referer_path(request), error.message, "error")
            if not auth.check_csrf(session_id, session.get("csrf")):
                return render(request, "refused.html", 403, reason="csrf")
        try:
            return await func(request, session)
        except GatewayError as error:
            if request.method != "POST":
                return render(
                    request, "refused.html", error.status, reason="error", message=error.message
                )
            return back(referer_path(request), error.message, "error")

    return endpoint


def referer_path(request: Request) -> str:
    referer = request.headers.get("referer", "")
    path = "/" + referer.split("://", 1)[-1].partition("/")[2] if referer else "/admin/"
    return path if path.startswith("/admin") else "/admin/"


# An uploaded file is a credential document (oauth_creds.json, cookies.txt): small.
UPLOAD_BYTES = 256 * 1024


async def read_form(request: Request) -> dict[str, list[str]]:
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
