"""Google OAuth as Gemini CLI does it: its installed-app client, refreshing access tokens (one
refresh at a time per credential, written back to the store), reading the account's e-mail from
an id_token, and the two login flows (loopback browser and paste-the-code with PKCE).

Protocol: reference/api-protocols.md §B.1. The client secret is public by design (an
installed-app client), which is why it may sit in the source.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import secrets
import time
import urllib.parse
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from gemgate.channels.base import Exclusive
from gemgate.services.credentials import save_secret
from gemgate.store import Store

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("gemgate.oauth")

CLIENT_ID = "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
CLIENT_SECRET = "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"
SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
)
AUTHORIZE_PATH = "/o/oauth2/v2/auth"
# Where Google shows the code to paste in the headless flow.
PASTE_REDIRECT = "https://codeassist.google.com/authcode"
# google-auth-library refreshes this long before expiry; a long answer must not outlive its token.
REFRESH_AHEAD = 300.0
# What the token endpoint says when a refresh token is dead: the operator must log in again.
LOGIN_ERRORS = frozenset({"invalid_grant", "unauthorized_client", "invalid_client"})


@dataclass(frozen=True, slots=True)
class Grant:
    """What the token endpoint handed out."""

    access_token: str
    expiry: float  # epoch seconds
    refresh_token: str | None = None
    id_token: str | None = None


class TokenRefused(Exception):
    """The token endpoint refused: `error` is OAuth's code, `description` Google's words."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{description} ({error})" if description else error)
        self.status, self.error, self.description = status, error, description

    @property
    def needs_login(self) -> bool:
        return self.error in LOGIN_ERRORS


class TokenUnreachable(Exception):
    """The token endpoint could not be reached or answered nonsense; worth another try."""


async def request_tokens(
    session: aiohttp.ClientSession, token_url: str, form: dict[str, str], proxy: str | None
) -> Grant:
    try:
        async with session.post(
            token_url,
            data=form,
            headers={"accept": "application/json"},
            proxy=proxy,
        ) as response:
            raw = await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TokenUnreachable(
            f"could not reach Google's token endpoint: {type(exc).__name__}"
        ) from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        if status >= 500 or status == 429:
            raise TokenUnreachable(f"Google's token endpoint answered HTTP {status}")
        raise TokenRefused(status, f"http_{status}", raw.decode("utf-8", "replace")[:200])
    if status != 200 or not data.get("access_token"):
        if status >= 500 or status == 429:
            raise TokenUnreachable(f"Google's token endpoint answered HTTP {status}")
        raise TokenRefused(
            status,
            str(data.get("error") or f"http_{status}"),
            str(data.get("error_description") or ""),
        )
    try:
        lifetime = float(data.get("expires_in", 3599))
    except (TypeError, ValueError):
        lifetime = 3599.0
    return Grant(
        access_token=str(data["access_token"]),
        expiry=time.time() + lifetime,
        refresh_token=data.get("refresh_token"),
        id_token=data.get("id_token"),
    )


def client_of(secret: dict[str, Any]) -> tuple[str, str]:
    """The OAuth client a credential's refresh token belongs to (gemini-cli's unless the
    imported file named another one with its secret)."""
    return str(secret.get("client_id") or CLIENT_ID), str(
        secret.get("client_secret") or CLIENT_SECRET
    )


async def refresh(
    session: aiohttp.ClientSession, token_url: str, secret: dict[str, Any], proxy: str | None
) -> Grant:
    client_id, client_secret = client_of(secret)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": str(secret.get("refresh_token") or ""),
        "client_id": client_id,
        "client_secret": client_secret,
    }
    return await request_tokens(session, token_url, form, proxy)


def claims_of(id_token: str | None) -> dict[str, Any]:
    """The claims of an id_token, unverified: only ever used to show whose account it is."""
    if not id_token or id_token.count(".") != 2:
        return {}
    payload = id_token.split(".")[1]
    try:
        data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def email_of(id_token: str | None) -> str | None:
    email = claims_of(id_token).get("email")
    return email if isinstance(email, str) and "@" in email else None


class Tokens:
    """Every gemini_cli credential's current tokens. An access token is refreshed ahead of its
    expiry by one caller at a time per credential (the others wait and use its result), and the
    result is written back to the store so that restarts, the CLI and other instances reuse it.

    Until the pool reloads the credential from the store, what was written back is kept here
    and laid over the pool's copy; once the copy shows it, the copy is used as it is.
    """

    def __init__(
        self,
        via: Callable[[str | None], tuple[aiohttp.ClientSession, str | None]],
        token_url: str,
        store: Store | None,
        exclusive: Exclusive | None = None,
    ) -> None:
        # A credential's proxy -> the session and proxy its calls go out on (Http.via).
        self._via = via
        self.token_url = token_url
        self.store = store
        # With several instances or workers, one refresh at a time across all of them too.
        self._exclusive = exclusive
        # Per credential, each value written back: (the pool's copy before, the value written).
        self._pending: dict[int, dict[str, tuple[Any, Any]]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        # A refresh token Google refused, per credential: not to be tried again.
        self._refused: dict[int, tuple[str, TokenRefused]] = {}

    def secret(self, cred_id: int, configured: dict[str, Any]) -> dict[str, Any]:
        """The newest secret known for a credential: the pool's copy, with what this process
        wrote back laid over it until the copy shows it."""
        pending = self._pending.get(cred_id)
        if pending is None:
            return configured
        overlay, caught_up = {}, True
        for key, (before, after) in pending.items():
            now = configured.get(key)
            if now == before and before != after:
                overlay[key], caught_up = after, False
            elif now != after:
                # Changed by someone else since (a new login, another instance): theirs is newer.
                del self._pending[cred_id]
                return configured
        if caught_up:
            del self._pending[cred_id]
            return configured
        return {**configured, **overlay}

    def lock(self, cred_id: int) -> asyncio.Lock:
        lock = self._locks.get(cred_id)
        if lock is None:
            lock = self._locks[cred_id] = asyncio.Lock()
        return lock

    def fresh(self, secret: dict[str, Any], stale: str | None = None) -> str | None:
        token = secret.get("access_token")
        if token and token != stale and _expiry(secret) - REFRESH_AHEAD > time.time():
            return str(token)
        return None

    async def access_token(
        self,
        cred_id: int,
        configured: dict[str, Any],
        proxy: str | None,
        *,
        stale: str | None = None,
    ) -> str:
        """A usable access token, refreshed through the credential's `proxy` when it must be;
        `stale` is one upstream just refused (401), never returned.
        Raises TokenRefused (the operator must log in again) or TokenUnreachable."""
        token = self.fresh(self.secret(cred_id, configured), stale)
        if token:
            return token
        async with self.lock(cred_id), self.exclusive(f"oauth-refresh:{cred_id}"):
            return await self._refresh_locked(cred_id, configured, proxy, stale)

    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        """One instance (or worker) at a time for `name` when they share state; else nothing
        to do."""
        if self._exclusive is None:
            return contextlib.nullcontext()
        return self._exclusive(name)

    async def _refresh_locked(
        self, cred_id: int, configured: dict[str, Any], proxy: str | None, stale: str | None
    ) -> str:
        secret = self.secret(cred_id, configured)
        token = self.fresh(secret, stale)
        if token:  # refreshed by the caller we waited for
            return token
        stored = await self.stored(cred_id)
        if stored is not None and stored.get("refresh_token") == secret.get("refresh_token"):
            token = self.fresh(stored, stale)
            if token:  # refreshed by another instance (or the CLI)
                self.remember(cred_id, configured, access_token=token, expiry=stored["expiry"])
                return token
        refresh_token = str(secret.get("refresh_token") or "")
        refused = self._refused.get(cred_id)
        if refused is not None and refused[0] == refresh_token:
            raise refused[1]
        try:
            session, through = self._via(proxy)
            grant = await refresh(session, self.token_url, secret, through)
        except TokenRefused as exc:
            if exc.needs_login:
                self._refused[cred_id] = (refresh_token, exc)
            raise
        values: dict[str, Any] = {"access_token": grant.access_token, "expiry": grant.expiry}
        if grant.refresh_token:
            values["refresh_token"] = grant.refresh_token
        email = email_of(grant.id_token)
        if email:
            values["email"] = email
        await self.update(cred_id, configured, **values)
        return grant.access_token

    async def update(self, cred_id: int, configured: dict[str, Any], **values: Any) -> None:
        """Remember, and write back, what was learnt about a credential (tokens, project)."""
        self.remember(cred_id, configured, **values)
        secret = self.secret(cred_id, configured)
        if self.store is None:
            return
        try:
            await save_secret(self.store, cred_id, secret)
        except Exception:
            # It still works in this process; the next change will try to save again.
            log.exception("could not store what was learnt about credential %s", cred_id)

    def remember(self, cred_id: int, configured: dict[str, Any], **values: Any) -> None:
        self.secret(cred_id, configured)  # drops what the copy shows or someone replaced
        pending = self._pending.setdefault(cred_id, {})
        for key, value in values.items():
            before = pending[key][0] if key in pending else configured.get(key)
            pending[key] = (before, value)

    async def stored(self, cred_id: int) -> dict[str, Any] | None:
        if self.store is None:
            return None
        try:
            record = await self.store.get_credential(cred_id)
        except Exception:
            log.exception("could not read credential %s from the store", cred_id)
            return None
        return record.secret if record is not None else None


def _expiry(secret: dict[str, Any]) -> float:
    value = secret.get("expiry")
    return float(value) if isinstance(value, int | float) else 0.0


# -- login ------------------------------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorize_url(
    accounts_base: str, redirect_uri: str, state: str, challenge: str | None = None
) -> str:
    params = {
        "access_type": "offline",
        # Without consent Google may not hand out a refresh token on a second login.
        "prompt": "consent",
        "scope": " ".join(SCOPES),
        "state": state,
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
    }
    if challenge:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    return accounts_base.rstrip("/") + AUTHORIZE_PATH + "?" + urllib.parse.urlencode(params)


class LoginFailed(Exception):
    pass


async def exchange_code(
    session: aiohttp.ClientSession,
    token_url: str,
    code: str,
    redirect_uri: str,
    *,
    verifier: str | None = None,
    proxy: str | None = None,
) -> Grant:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": redirect_uri,
    }
    if verifier:
        form["code_verifier"] = verifier
    try:
        grant = await request_tokens(session, token_url, form, proxy)
    except (TokenRefused, TokenUnreachable) as exc:
        raise LoginFailed(f"Google did not accept the sign-in code: {exc}") from None
    if not grant.refresh_token:
        raise LoginFailed("Google sent no refresh token; sign in again (consent was skipped)")
    return grant


_DONE_PAGE = (
    "<!doctype html><title>gemgate</title><p>{message}</p>"
    "<p>You can close this tab and go back to the terminal.</p>"
)


async def loopback_code(
    announce: Callable[[str], None],
    accounts_base: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    wait: float = 300.0,
) -> tuple[str, str]:
    """Run the browser flow's receiving end: listen on the loopback address, `announce` the
    URL to open, and return (code, redirect_uri) once Google sends the browser back with a code
    for our `state`. Anything else (a wrong state, an error, the timeout) fails the login."""
    # aiohttp's server side (about 2 MB resident) is only for `gemgate login`: not loaded at
    # import, which every `serve` does for the token refresh above.
    from aiohttp import web

    state = secrets.token_hex(32)
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def callback(request: web.Request) -> web.Response:
        query = request.query
        if outcome.done():
            message = "This sign-in has already ended."
        elif query.get("state") != state:
            outcome.set_exception(
                LoginFailed("the answer's state does not match this login; start again")
            )
            message = "Sign-in refused: the state does not match."
        elif query.get("error"):
            outcome.set_exception(LoginFailed(f"Google answered: {query['error']}"))
            message = f"Sign-in failed: {query['error']}."
        elif not query.get("code"):
            outcome.set_exception(LoginFailed("Google sent no code"))
            message = "Sign-in failed: no code."
        else:
            outcome.set_result(query["code"])
            message = "Signed in to gemgate."
        return web.Response(text=_DONE_PAGE.format(message=message), content_type="text/html")

    app = web.Application()
    app.router.add_get("/oauth2callback", callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        redirect_uri = f"http://{host}:{bound}/oauth2callback"
        announce(authorize_url(accounts_base, redirect_uri, state))
        try:
            code = await asyncio.wait_for(outcome, wait)
        except TimeoutError:
            raise LoginFailed(f"no sign-in within {wait:.0f}s") from None
        return code, redirect_uri
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
