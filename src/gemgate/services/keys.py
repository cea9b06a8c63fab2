"""Client keys ("licences"): creation, scopes and lookup. A key is shown once and stored as its
SHA-256 hash; keys are 256-bit random, so a fast hash is as safe as a slow one here."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

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


LIMITS = ("rpm", "tpm", "quota_tokens")


def scopes(
    channels: str | list[str] | None,
    models: str | list[str] | None,
    endpoints: str | list[str] | None,
) -> dict[str, list[str] | None]:
    """A key's scopes from comma-separated text (the CLI, a form) or lists (JSON)."""
    return {
        "channels": _scope(channels, CHANNELS, "channel"),
        "models": _scope(models, None, "model pattern"),
        "endpoints": _scope(endpoints, ENDPOINTS, "endpoint"),
    }


def _scope(
    value: str | list[str] | None, allowed: tuple[str, ...] | None, what: str
) -> list[str] | None:
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise InvalidRequest(f"each {what} must be a string")
        value = ",".join(value)
    elif value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{what}s must be a list of strings or comma-separated text")
    if value is None or not value.strip():
        return None  # a blank form field or an empty list: no restriction
    return parse_list(value, allowed, what)


def limit(name: str, value: Any) -> int | None:
    """A limit as given: None (no limit) or a whole number of at least 1."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"{name} must be a whole number of at least 1, or empty for no limit")
    return value


async def update(store: Store, ident: str | int, changes: dict[str, Any]) -> KeyRecord:
    """Change a key's scopes and limits; a None value lifts that restriction."""
    record = await find(store, ident)
    if not changes:
        raise InvalidRequest("nothing to change")
    updated = await store.update_key(record.id, **changes)
    assert updated is not None
    return updated


def describe(record: KeyRecord) -> dict[str, Any]:
    """A key as the operator sees it: never the key itself, only a hint."""
    return {
        "id": record.id,
        "name": record.name,
        "key": record.key_hint,
        "channels": record.channels or "all",
        "models": record.models or "all",
        "endpoints": record.endpoints or "all",
        "rpm": record.rpm,
        "tpm": record.tpm,
        "quota_tokens": record.quota_tokens,
        "created_at": record.created_at,
        "revoked_at": record.revoked_at,
    }


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
