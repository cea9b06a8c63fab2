"""Upstream credentials: adding, masking and turning stored rows into pool credentials."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from gemgate.errors import InvalidRequest, NotFound
from gemgate.pool import Credential
from gemgate.store import CredentialRecord, Store


def mask(secret: str) -> str:
    """A secret as it may be shown: its first and last four characters at most."""
    if len(secret) < 12:
        return "****"
    return f"{secret[:4]}…{secret[-4:]}"


# What the outbound HTTP client (aiohttp) can speak to; it would talk HTTP to a SOCKS proxy.
PROXY_SCHEMES = ("http", "https")


def checked_proxy(proxy: str | None) -> str | None:
    """A credential's proxy URL, refused when it is added rather than failing every request."""
    if proxy is None:
        return None
    proxy = proxy.strip()
    parts = urlsplit(proxy)
    if parts.scheme.lower() in ("socks4", "socks5", "socks5h"):
        raise InvalidRequest(
            "--proxy: SOCKS proxies are not supported yet; give an http:// or https:// proxy"
        )
    try:
        valid = (
            parts.scheme.lower() in PROXY_SCHEMES
            and bool(parts.hostname)
            and parts.port != 0  # reading .port refuses a port that is not a number
            and parts.path in ("", "/")
            and not parts.query
            and not parts.fragment
        )
    except ValueError:
        valid = False
    if not valid:
        raise InvalidRequest(
            f"--proxy must be a URL like http://host:port, its scheme one of "
            f"{', '.join(PROXY_SCHEMES)}, not {_mask_proxy(proxy)!r}"
        )
    return proxy


async def add_gemini(
    store: Store, api_key: str, *, label: str | None = None, proxy: str | None = None
) -> CredentialRecord:
    proxy = checked_proxy(proxy)
    api_key = api_key.strip()
    if not api_key or any(c.isspace() for c in api_key):
        raise InvalidRequest("an API key is one word without spaces")
    for existing in await store.list_credentials("gemini"):
        if existing.secret.get("api_key") == api_key:
            raise InvalidRequest(
                f"this API key is already credential {existing.id} ({existing.label})"
            )
    return await store.add_credential(
        channel="gemini",
        label=label or f"key {mask(api_key)}",
        secret={"api_key": api_key},
        proxy=proxy,
    )


async def find(store: Store, ident: int | str) -> CredentialRecord:
    """A credential by id, or by label when no id matches; an ambiguous label is refused."""
    text = str(ident).strip()
    if text.isdigit():
        record = await store.get_credential(int(text))
        if record is not None:
            return record
    matches = [r for r in await store.list_credentials() if r.label == text]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(str(r.id) for r in matches)
        raise InvalidRequest(f"{len(matches)} credentials are labelled {text!r}: use an id ({ids})")
    raise NotFound(f"no credential with id or label {text!r}")


async def set_enabled(store: Store, cred_id: int, enabled: bool) -> CredentialRecord:
    await find(store, cred_id)
    # Enabling again is how an operator says "I fixed it": the stored invalid mark goes too.
    values: dict[str, Any] = {"enabled": enabled}
    if enabled:
        values.update(status="ok", status_reason=None)
    record = await store.update_credential(cred_id, **values)
    assert record is not None
    return record


async def save_secret(store: Store, cred_id: int, secret: dict[str, Any]) -> None:
    """Write back what a channel learnt about a credential's secret (a refreshed OAuth token, a
    rotated cookie), so that a restart, the CLI and other instances see the new value. The
    pool's `Credential` stays the operator's configuration; this is the one way to change it
    from the data path."""
    await store.update_credential(cred_id, secret=secret)


async def mark_invalid(store: Store, cred_id: int, reason: str) -> None:
    await store.update_credential(cred_id, status="invalid", status_reason=reason)


# Facts about an account kept beside its secrets, not secrets themselves: shown as they are.
PLAIN_FIELDS = frozenset({"email", "project_id", "tier", "client_id"})


def describe(
    record: CredentialRecord, cooldowns: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A credential as the operator sees it: every secret masked; the models it rests for."""
    return {
        "id": record.id,
        "channel": record.channel,
        "label": record.label,
        "secret": {
            k: v if k in PLAIN_FIELDS else mask(v) if isinstance(v, str) else "****"
            for k, v in record.secret.items()
        },
        "proxy": _mask_proxy(record.proxy),
        "enabled": record.enabled,
        "status": record.status,
        "status_reason": record.status_reason,
        "cooldowns": [
            {
                "model": c["model"],
                "since": c["started_at"],
                "until": c["until"],
                "reason": c["reason"],
            }
            for c in cooldowns or ()
            if c["credential_id"] == record.id
        ],
    }


def cooldown_row(
    cred_id: int, model: str, seconds: float, reason: str, now: float | None = None
) -> dict[str, Any]:
    """A cooldown as stored: wall-clock start and end, so other processes can read it."""
    start = time.time() if now is None else now
    return {
        "credential_id": cred_id,
        "model": model,
        "started_at": start,
        "until": start + seconds,
        "reason": reason,
    }


def _mask_proxy(proxy: str | None) -> str | None:
    # A proxy URL may carry a password (http://user:pass@host).
    if proxy and "@" in proxy:
        scheme, _, rest = proxy.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return proxy


def to_pool(record: CredentialRecord) -> Credential:
    return Credential(
        id=record.id,
        channel=record.channel,
        label=record.label,
        secret=record.secret,
        proxy=record.proxy,
        enabled=record.enabled,
    )
