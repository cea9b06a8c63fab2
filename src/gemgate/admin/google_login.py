"""Signing a gemini_cli account in with Google from the admin page, with Gemini CLI's OAuth
client (reference/api-protocols.md §B.1).

That client is an installed app: Google sends a browser back only to a loopback address or to
its own page that shows the code. So when the page is opened on a loopback address (on the
server itself, or through an SSH tunnel), Google sends the browser back to our callback here;
otherwise Google shows the code and the operator pastes it into the page. Either way: PKCE, a
random `state`, and the code traded for tokens by the same call `gemgate login` uses.

What a sign-in must remember until Google answers (its state, PKCE verifier and what the admin
asked for) travels sealed with the store's secret key in a cookie of the browser that started
it, not in this process: with `--workers N` or several instances the answer may reach another
process, and any of them can open it. The callback cannot lean on the session cookie
(SameSite=Strict: not sent on the way back from Google); the sealed cookie (SameSite=Lax,
HTTP-only, ten minutes) holding the state Google echoes is what ties the answer to a sign-in an
admin started, and it is dropped once used."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import asdict, dataclass
from ipaddress import ip_address

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gemgate.admin.rendering import back, render, set_flash
from gemgate.admin.session import Session, gateway_of, page
from gemgate.channels import google_oauth
from gemgate.channels.gemini_cli import GeminiCLI
from gemgate.errors import GatewayError, InvalidRequest
from gemgate.services import credentials as credential_service
from gemgate.services import oauth_import
from gemgate.store.errors import StoreError

CALLBACK = "/admin/oauth/gemini_cli/callback"
PENDING_COOKIE = "gemgate_oauth"
# Long enough to sign in and consent; a Google code itself lives only minutes.
PENDING_SECONDS = 600


@dataclass(frozen=True, slots=True)
class Pending:
    """One sign-in under way: what Google must echo back, and what the admin asked for."""

    state: str
    verifier: str
    redirect_uri: str
    label: str | None
    proxy: str | None
    project: str | None
    expires: float

    @classmethod
    def new(
        cls, redirect_uri: str, label: str | None, proxy: str | None, project: str | None
    ) -> tuple[Pending, str]:
        """A new sign-in and its PKCE challenge."""
        verifier, challenge = google_oauth.pkce_pair()
        pending = cls(
            state=secrets.token_hex(32),
            verifier=verifier,
            redirect_uri=redirect_uri,
            label=label,
            proxy=proxy,
            project=project,
            expires=time.time() + PENDING_SECONDS,
        )
        return pending, challenge


def _remember(request: Request, response: Response, pending: Pending) -> None:
    response.set_cookie(
        PENDING_COOKIE,
        gateway_of(request).store.box.seal(asdict(pending)),
        max_age=PENDING_SECONDS,
        path="/admin/oauth",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def _recall(request: Request, state: str) -> Pending | None:
    """The sign-in this browser started, if Google's answer names its state and it is fresh."""
    sealed = request.cookies.get(PENDING_COOKIE)
    if not sealed or not state:
        return None
    try:
        pending = Pending(**gateway_of(request).store.box.open(sealed))
    except (StoreError, TypeError):
        return None  # not sealed by gemgate, or by another version of it
    if pending.expires < time.time() or not hmac.compare_digest(pending.state, state):
        return None
    return pending


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@page
async def start(request: Request, session: Session) -> Response:
    label = session.get("label").strip() or None
    if label and len(label) > 200:
        raise InvalidRequest("a label is at most 200 characters")
    proxy = credential_service.checked_proxy(session.get("proxy").strip() or None)
    project = session.get("project").strip() or None
    # Google takes a loopback address back only over plain http.
    loopback = request.url.scheme == "http" and _loopback(request.url.hostname)
    redirect_uri = (
        str(request.base_url).rstrip("/") + CALLBACK if loopback else google_oauth.PASTE_REDIRECT
    )
    pending, challenge = Pending.new(redirect_uri, label, proxy, project)
    url = google_oauth.authorize_url(
        gateway_of(request).settings.google_accounts_base, redirect_uri, pending.state, challenge
    )
    if loopback:
        response: Response = RedirectResponse(url, status_code=303)
    else:
        response = render(
            request,
            "oauth_paste.html",
            session=session,
            nav="credentials",
            url=url,
            state=pending.state,
        )
    _remember(request, response, pending)
    return response


async def callback(request: Request) -> Response:
    """Where Google sends the browser back (loopback only)."""
    query = request.query_params
    pending = _recall(request, query.get("state", ""))
    if pending is None:
        return _done(
            request,
            400,
            "This sign-in is unknown, already used or expired (or was started in another "
            "browser). Nothing was added; start again.",
        )
    if query.get("error"):
        return _done(request, 400, f"Google did not sign the account in: {query['error']}.")
    if not query.get("code"):
        return _done(request, 400, "Google sent no code. Nothing was added; start again.")
    ok, message, cred_id = await _finish(request, pending, query["code"])
    return _done(request, 200 if ok else 400, message, cred_id)


@page
async def pasted(request: Request, session: Session) -> Response:
    """The paste-the-code variant: the code Google showed, for the state it was shown for."""
    pending = _recall(request, session.get("state"))
    if pending is None or pending.redirect_uri != google_oauth.PASTE_REDIRECT:
        message = "This sign-in is unknown, already used or expired; start again."
        return _forget(back("/admin/credentials/new", message, "error"))
    code = session.get("code").strip()
    if not code:
        return back("/admin/credentials/new", "No code was pasted; start again.", "error")
    ok, message, cred_id = await _finish(request, pending, code)
    if not ok:
        return _forget(back("/admin/credentials/new", message, "error"))
    return _forget(back(f"/admin/#credential-{cred_id}", message))


def _forget(response: Response) -> Response:
    response.delete_cookie(PENDING_COOKIE, path="/admin/oauth")
    return response


async def _finish(request: Request, pending: Pending, code: str) -> tuple[bool, str, int | None]:
    """Trade the code, store the account and ask Google once whether it works."""
    gateway = gateway_of(request)
    try:
        record, renewed = await oauth_import.signed_in(
            gateway.store,
            gateway.settings,
            code,
            pending.redirect_uri,
            verifier=pending.verifier,
            label=pending.label,
            proxy=pending.proxy,
            project=pending.project,
        )
    except GatewayError as error:
        return False, error.message, None
    await gateway.reload()
    channel = gateway.channels.get(oauth_import.CHANNEL)
    said = ""
    if isinstance(channel, GeminiCLI):
        try:
            said = ": " + await oauth_import.check(channel, gateway.store, record)
        except GatewayError as error:
            said = f": not checked ({error.message})"
        await gateway.reload()
    done = "Renewed" if renewed else "Added"
    return True, f"{done} credential {record.id} ({record.label}) in gemini_cli{said}", record.id


def _done(request: Request, status: int, message: str, cred_id: int | None = None) -> Response:
    # A page, not a redirect: after Google's redirect the browser would not send the
    # SameSite=Strict session cookie to the board; from this page's own link (or its refresh)
    # it does.
    response = render(
        request, "oauth_done.html", status, message=message, cred_id=cred_id, ok=status == 200
    )
    _forget(response)
    if cred_id is not None:
        set_flash(response, message)
    return response


def routes() -> list[BaseRoute]:
    return [
        Route("/oauth/gemini_cli/start", start, methods=["POST"]),
        Route("/oauth/gemini_cli/callback", callback, methods=["GET"]),
        Route("/oauth/gemini_cli/code", pasted, methods=["POST"]),
    ]
