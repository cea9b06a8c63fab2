"""gemini_cli credentials in: gemini-cli's own `oauth_creds.json`, the `{token: {...},
project_id, email}` shape other gateways write, several files or a folder at once, or a fresh
`gemgate login`; each account checked once with Google and stored with what Google said."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from gemgate.channels import google_oauth
from gemgate.channels._http import Http
from gemgate.channels.gemini_cli import GeminiCLI
from gemgate.config import Settings
from gemgate.errors import InvalidRequest
from gemgate.pool import UpstreamFailed
from gemgate.services import credentials as credential_service
from gemgate.store import CredentialRecord, Store

CHANNEL = "gemini_cli"


def files_of(paths: list[str]) -> list[Path]:
    """The files named, with each folder standing for the .json files directly in it."""
    if not paths:
        raise InvalidRequest("gemini_cli needs --oauth-file FILE (or a folder of them)")
    found: list[Path] = []
    for name in paths:
        path = Path(name).expanduser()
        if path.is_dir():
            inside = sorted(p for p in path.glob("*.json") if p.is_file())
            if not inside:
                raise InvalidRequest(f"{path}: no .json files in this folder")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise InvalidRequest(f"{path}: no such file or folder")
    return found


def parse(path: Path) -> dict[str, Any]:
    """The credential secret in one file, or an InvalidRequest naming what is missing."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path}: cannot read it ({exc.__class__.__name__})") from None
    return parse_text(text, path)


def parse_text(text: str, path: Path | str) -> dict[str, Any]:
    """The credential secret in a file's text (`path` names it in errors)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"{path}: not an OAuth credential: a JSON object is expected")
    # Other gateways nest the tokens under "token" and keep project and e-mail beside them.
    token = data["token"] if isinstance(data.get("token"), dict) else data
    refresh_token = token.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token.strip():
        raise InvalidRequest(f"{path}: not an OAuth credential: no refresh_token")
    secret: dict[str, Any] = {"refresh_token": refresh_token.strip()}
    access_token = token.get("access_token")
    if isinstance(access_token, str) and access_token:
        secret["access_token"] = access_token
        expiry = _expiry(token)
        if expiry is None:
            raise InvalidRequest(
                f"{path}: not an OAuth credential: access_token without expiry_date or expiry"
            )
        secret["expiry"] = expiry
    email = data.get("email") or google_oauth.email_of(token.get("id_token"))
    if isinstance(email, str) and email:
        secret["email"] = email
    project = data.get("project_id") or token.get("project_id")
    if isinstance(project, str) and project:
        secret["project_id"] = project
    client_id = token.get("client_id")
    if isinstance(client_id, str) and client_id and client_id != google_oauth.CLIENT_ID:
        # A token minted for another client refreshes only with that client's secret.
        secret["client_id"] = client_id
        if isinstance(token.get("client_secret"), str):
            secret["client_secret"] = token["client_secret"]
    return secret


def _expiry(token: dict[str, Any]) -> float | None:
    value = token.get("expiry_date")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0  # gemini-cli writes epoch milliseconds
    value = token.get("expiry")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def secret_of(grant: google_oauth.Grant) -> dict[str, Any]:
    secret: dict[str, Any] = {
        "refresh_token": grant.refresh_token,
        "access_token": grant.access_token,
        "expiry": grant.expiry,
    }
    email = google_oauth.email_of(grant.id_token)
    if email:
        secret["email"] = email
    return secret


async def store_account(
    store: Store,
    secret: dict[str, Any],
    *,
    label: str | None = None,
    proxy: str | None = None,
    project: str | None = None,
) -> tuple[CredentialRecord, bool]:
    """Add the account, or renew the stored one with the same e-mail or refresh token (a new
    login is how an operator fixes an account marked invalid). True when it was renewed."""
    proxy = credential_service.checked_proxy(proxy)
    secret = dict(secret)
    if project:
        secret["project_id"] = project
    for existing in await store.list_credentials(CHANNEL):
        same_email = secret.get("email") and existing.secret.get("email") == secret.get("email")
        if not same_email and existing.secret.get("refresh_token") != secret["refresh_token"]:
            continue
        kept = {k: existing.secret[k] for k in ("project_id", "tier") if k in existing.secret}
        if project and project != kept.get("project_id"):
            kept = {}  # another project: set up again
        values: dict[str, Any] = {
            "secret": {**kept, **secret},
            "status": "ok",
            "status_reason": None,
        }
        if label:
            values["label"] = label
        if proxy:
            values["proxy"] = proxy
        record = await store.update_credential(existing.id, **values)
        assert record is not None
        return record, True
    default_label = secret.get("email") or (
        "oauth " + credential_service.mask(secret["refresh_token"])
    )
    record = await store.add_credential(
        channel=CHANNEL, label=label or default_label, secret=secret, proxy=proxy
    )
    return record, False


async def check(channel: GeminiCLI, store: Store, record: CredentialRecord) -> str:
    """Ask Google once whether the account works; a refusal is stored as the reason."""
    try:
        state = await channel.check(credential_service.to_pool(record))
    except UpstreamFailed as failed:
        reason = failed.failure.reason or failed.failure.error.message
        if failed.failure.action == "invalidate":
            await credential_service.mark_invalid(store, record.id, reason)
            return f"Google refuses it, marked invalid: {reason}"
        return f"not checked (it stays usable): {reason}"
    return f"{state.get('tier')}, project {state.get('project_id')}"


async def add_files(
    store: Store,
    settings: Settings,
    paths: list[str],
    *,
    label: str | None = None,
    proxy: str | None = None,
    project: str | None = None,
    verify: bool = True,
) -> list[str]:
    """Import every file, or none when one of them is not an OAuth credential."""
    files = files_of(paths)
    if label and len(files) > 1:
        raise InvalidRequest("--label names one credential; give one file with it")
    secrets_ = [parse(path) for path in files]
    records = [
        await store_account(store, s, label=label, proxy=proxy, project=project) for s in secrets_
    ]
    return await _report(store, settings, records, verify)


async def _report(
    store: Store,
    settings: Settings,
    records: list[tuple[CredentialRecord, bool]],
    verify: bool,
) -> list[str]:
    http = Http(settings)
    channel = GeminiCLI(settings, http, store)
    lines = []
    try:
        for record, renewed in records:
            line = f"{'renewed' if renewed else 'added'} credential {record.id} ({record.label})"
            line += f" in {CHANNEL}"
            if verify:
                line += ": " + await check(channel, store, record)
            lines.append(line)
    finally:
        await http.close()
    return lines


async def login(
    store: Store,
    settings: Settings,
    *,
    announce: Callable[[str], None],
    read_code: Callable[[], Awaitable[str]] | None = None,
    port: int = 0,
    wait: float = 300.0,
    label: str | None = None,
    proxy: str | None = None,
    project: str | None = None,
    verify: bool = True,
) -> list[str]:
    """Sign an account in with Gemini CLI's OAuth client and store it. With `read_code`, the
    headless variant: PKCE, and the operator pastes the code Google shows."""
    try:
        if read_code is None:
            code, redirect_uri = await google_oauth.loopback_code(
                announce, settings.google_accounts_base, port=port, wait=wait
            )
            verifier = None
        else:
            verifier, challenge = google_oauth.pkce_pair()
            redirect_uri = google_oauth.PASTE_REDIRECT
            announce(
                google_oauth.authorize_url(
                    settings.google_accounts_base,
                    redirect_uri,
                    secrets.token_hex(32),
                    challenge,
                )
            )
            code = (await asyncio.wait_for(read_code(), wait)).strip()
            if not code:
                raise google_oauth.LoginFailed("no code was pasted")
    except google_oauth.LoginFailed as exc:
        raise InvalidRequest(f"login failed: {exc}") from None
    except TimeoutError:
        raise InvalidRequest("login failed: no code within the time allowed") from None
    record = await signed_in(
        store,
        settings,
        code,
        redirect_uri,
        verifier=verifier,
        label=label,
        proxy=proxy,
        project=project,
    )
    return await _report(store, settings, [record], verify)


async def signed_in(
    store: Store,
    settings: Settings,
    code: str,
    redirect_uri: str,
    *,
    verifier: str | None = None,
    label: str | None = None,
    proxy: str | None = None,
    project: str | None = None,
) -> tuple[CredentialRecord, bool]:
    """Trade the code Google gave a sign-in for tokens and store the account (True: an
    account already here was renewed). Shared by `gemgate login` and the admin page."""
    proxy = credential_service.checked_proxy(proxy)
    http = Http(settings)
    session, through = http.via(proxy)
    try:
        grant = await google_oauth.exchange_code(
            session, settings.oauth_token_url, code, redirect_uri, verifier=verifier, proxy=through
        )
    except google_oauth.LoginFailed as exc:
        raise InvalidRequest(f"login failed: {exc}") from None
    finally:
        await http.close()
    return await store_account(store, secret_of(grant), label=label, proxy=proxy, project=project)


async def quota(
    store: Store,
    settings: Settings,
    record: CredentialRecord,
    channel: GeminiCLI | None = None,
) -> list[dict[str, Any]]:
    """What Google says is left of each model's quota on this account (retrieveUserQuota):
    model, percent left and reset time; or one row saying why it could not be read. `channel`:
    a running server's, so its token cache is used; else one made for this call."""
    http = Http(settings) if channel is None else None
    if http is not None:
        channel = GeminiCLI(settings, http, store)
    assert channel is not None
    try:
        buckets = await channel.quota(credential_service.to_pool(record))
    except UpstreamFailed as failed:
        return [{"error": failed.failure.reason or failed.failure.error.message}]
    finally:
        if http is not None:
            await http.close()
    rows = []
    for bucket in buckets:
        fraction = bucket.get("remainingFraction")
        rows.append(
            {
                "model": bucket.get("modelId"),
                "left": f"{fraction * 100:.0f}%" if isinstance(fraction, int | float) else None,
                "resets": bucket.get("resetTime"),
            }
        )
    return rows


async def _add_pasted(
    store: Store, values: dict[str, str], label: str | None, proxy: str | None
) -> CredentialRecord:
    secret = parse_text(values["oauth_creds"], "oauth_creds.json")
    record, _ = await store_account(
        store, secret, label=label, proxy=proxy, project=values.get("project") or None
    )
    return record


credential_service.register(
    credential_service.CredentialKind(
        channel=CHANNEL,
        title="Gemini CLI account",
        fields=(
            credential_service.SecretField(
                "oauth_creds",
                "oauth_creds.json",
                kind="document",
                hint='{"access_token": "…", "refresh_token": "…", "expiry_date": …}',
            ),
            credential_service.SecretField(
                "project", "Google Cloud project", kind="text", required=False
            ),
        ),
        add=_add_pasted,
        guide="Run gemini (the Gemini CLI) once and log in with Google; paste the file it "
        "writes at ~/.gemini/oauth_creds.json. The project is found by itself unless you name one. "
        "Adding an account that is already here renews its tokens.",
    )
)
