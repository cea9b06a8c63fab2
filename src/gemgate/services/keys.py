"""Client keys ("licences"): creation, scopes and lookup. A key is shown once and stored as its
SHA-256 hash; keys are 256-bit random, so a fast hash is as safe as a slow one here."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from gemgate import model_names
from gemgate.errors import InvalidRequest, NotFound, PermissionDenied
from gemgate.store import KeyRecord, Store

CHANNELS = ("gemini", "gemini_cli", "gemini_official")
ENDPOINTS = ("chat", "messages", "native", "images", "embeddings", "speech")
KEY_PREFIX = "gg-"


@dataclass(frozen=True, slots=True)
class ClientKey:
    id: int
    name: str
    channels: frozenset[str] | None
    models: tuple[str, ...] | None
    endpoints: frozenset[str] | None
    rpm: int | None
    tpm: int | None
    quota_tokens: int | None

    def check(self, channel: str, asked: str, upstream: str, endpoint: str) -> None:
        """Raise 403 when this key may not use that channel or endpoint, or the model: both
        the one asked for and the one it becomes upstream (after aliases and suffixes)."""
        self.check_endpoint(endpoint)
        if self.channels is not None and channel not in self.channels:
            raise PermissionDenied(f"this key may not use the {channel} channel")
        for model in (asked, upstream):
            if not self.may_use_model(model):
                raise PermissionDenied(f"this key may not use model {model!r}", param="model")

    def check_endpoint(self, endpoint: str) -> None:
        if self.endpoints is not None and endpoint not in self.endpoints:
            raise PermissionDenied(f"this key may not use the {endpoint} endpoint")

    def may_use_model(self, model: str) -> bool:
        return self.models is None or any(model_names.matches(model, p) for p in self.models)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hint(secret: str) -> str:
    """Enough of a key to recognise it in a list, never enough to use it."""
    return f"{secret[:7]}…{secret[-4:]}"


UNRESTRICTED = ("all", "*")


def parse_list(
    value: str | None, allowed: tuple[str, ...] | None = None, what: str = "models"
) -> list[str] | None:
    """A comma-separated scope; None (not given), 'all' or '*' mean no restriction."""
    if value is None:
        return None
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise InvalidRequest(f"--{what} is empty: name at least one, or 'all' for no restriction")
    if any(item.lower() in UNRESTRICTED for item in items):
        if len(items) > 1:
            raise InvalidRequest(f"--{what}: 'all' means every one and stands alone")
        return None
    if allowed is not None:
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise InvalidRequest(
                f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)}, or all)"
            )
    return items


async def create(
    store: Store,
    name: str,
    *,
    channels: list[str] | None = None,
    models: list[str] | None = None,
    endpoints: list[str] | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    quota_tokens: int | None = None,
) -> tuple[KeyRecord, str]:
    name = name.strip()
    if not name:
        raise InvalidRequest("a key needs a name: --name NAME")
    if name.isdigit():
        raise InvalidRequest("a key name cannot be a number")
    if await store.get_key(name) is not None:
        raise InvalidRequest(f"a key named {name!r} exists already")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    record = await store.create_key(
        name=name,
        key_hash=hash_key(secret),
        key_hint=hint(secret),
        channels=channels,
        models=models,
        endpoints=endpoints,
        rpm=rpm,
        tpm=tpm,
        quota_tokens=quota_tokens,
    )
    return record, secret


async def find(store: Store, ident: str | int) -> KeyRecord:
    record = await store.get_key(ident)
    if record is None:
        raise NotFound(f"no key {ident!r}")
    return record


async def revoke(store: Store, ident: str | int) -> KeyRecord:
    record = await find(store, ident)
    updated = await store.update_key(record.id, revoked_at=record.revoked_at or time.time())
    assert updated is not None
    return updated


def to_client_key(record: KeyRecord) -> ClientKey:
    return ClientKey(
        id=record.id,
        name=record.name,
        channels=frozenset(record.channels) if record.channels else None,
        models=tuple(record.models) if record.models else None,
        endpoints=frozenset(record.endpoints) if record.endpoints else None,
        rpm=record.rpm,
        tpm=record.tpm,
        quota_tokens=record.quota_tokens,
    )


class KeyRing:
    """The keys a server accepts, by hash: one dict lookup per request."""

    def __init__(self) -> None:
        self._by_hash: dict[str, ClientKey] = {}

    def replace(self, records: list[KeyRecord]) -> None:
        self._by_hash = {r.key_hash: to_client_key(r) for r in records if r.revoked_at is None}

    def lookup(self, secret: str) -> ClientKey | None:
        return self._by_hash.get(hash_key(secret))

    def forget(self, key_id: int) -> None:
        self._by_hash = {h: k for h, k in self._by_hash.items() if k.id != key_id}
