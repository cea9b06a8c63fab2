"""Upstream credentials: adding, masking and turning stored rows into pool credentials."""

from __future__ import annotations

from typing import Any

from gemgate.errors import InvalidRequest, NotFound
from gemgate.pool import Credential
from gemgate.store import CredentialRecord, Store


def mask(secret: str) -> str:
    """A secret as it may be shown: its first and last four characters at most."""
    if len(secret) < 12:
        return "****"
    return f"{secret[:4]}…{secret[-4:]}"


async def add_gemini(
    store: Store, api_key: str, *, label: str | None = None, proxy: str | None = None
) -> CredentialRecord:
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


async def find(store: Store, cred_id: int) -> CredentialRecord:
    record = await store.get_credential(cred_id)
    if record is None:
        raise NotFound(f"no credential {cred_id}")
    return record


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


def describe(record: CredentialRecord) -> dict[str, Any]:
    """A credential as the operator sees it: every secret masked."""
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
