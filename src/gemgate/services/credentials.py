"""Upstream credentials: adding, masking and turning stored rows into pool credentials."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from gemgate.errors import GatewayError, InvalidRequest, NotFound
from gemgate.pool import Credential, CredentialState, UpstreamFailed
from gemgate.store import CredentialRecord, Store


def mask(secret: str) -> str:
    """A secret as it may be shown: its first and last four characters at most."""
    if len(secret) < 12:
        return "****"
    return f"{secret[:4]}…{secret[-4:]}"


# What every channel's transport speaks to: aiohttp names an HTTP(S) proxy per request and
# reaches a SOCKS5 one through a connector of its own; curl_cffi speaks all of them.
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def checked_proxy(proxy: str | None) -> str | None:
    """A credential's proxy URL, refused when it is added rather than failing every request."""
    if proxy is None:
        return None
    proxy = proxy.strip()
    parts = urlsplit(proxy)
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


# -- adding, one kind per channel ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecretField:
    """One value an operator gives to add a credential (a form field, a JSON member)."""

    name: str
    label: str
    # secret: masked input; text: one line; document: a pasted or uploaded file (JSON).
    kind: Literal["secret", "text", "document"] = "secret"
    required: bool = True
    hint: str = ""


Adder = Callable[[Store, dict[str, str], str | None, str | None], Awaitable[CredentialRecord]]


@dataclass(frozen=True, slots=True)
class CredentialKind:
    """How credentials of one channel are added: what to ask for, and the call that checks and
    stores it. A channel module registers its kind; the CLI, the admin API and the admin page
    all add through `add`, so a new channel needs no change there."""

    channel: str
    title: str
    fields: tuple[SecretField, ...]
    add: Adder
    # A few words beside the form: where to find the value; or numbered steps.
    guide: str = ""
    steps: tuple[str, ...] = ()
    # The form may hold a file to upload (its `document` fields).
    upload: bool = False


KINDS: dict[str, CredentialKind] = {}


def register(kind: CredentialKind) -> None:
    KINDS[kind.channel] = kind


async def add(
    store: Store,
    channel: str,
    values: Mapping[str, Any],
    *,
    label: str | None = None,
    proxy: str | None = None,
) -> CredentialRecord:
    kind = KINDS.get(channel)
    if kind is None:
        known = ", ".join(KINDS) or "none"
        raise InvalidRequest(f"credentials for {channel!r} cannot be added here (can: {known})")
    given: dict[str, str] = {}
    for spec in kind.fields:
        value = values.get(spec.name)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"{spec.name} must be a string")
        if spec.required and not (value or "").strip():
            raise InvalidRequest(f"{channel} needs {spec.name} ({spec.label})")
        given[spec.name] = value or ""
    label = (label or "").strip() or None
    if label and len(label) > 200:
        raise InvalidRequest("a label is at most 200 characters")
    proxy = checked_proxy((proxy or "").strip() or None)
    return await kind.add(store, given, label, proxy)


async def _add_gemini_kind(
    store: Store, values: dict[str, str], label: str | None, proxy: str | None
) -> CredentialRecord:
    return await add_gemini(store, values["api_key"], label=label, proxy=proxy)


register(
    CredentialKind(
        channel="gemini",
        title="Gemini API key",
        fields=(SecretField("api_key", "API key", hint="AIza…"),),
        add=_add_gemini_kind,
        guide="Create a key at aistudio.google.com/apikey. Each key is one pool member; keys "
        "from different Google Cloud projects have separate quotas.",
    )
)


# -- one credential -----------------------------------------------------------------------------


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


async def remove(store: Store, ident: int | str) -> CredentialRecord:
    record = await find(store, ident)
    await store.remove_credential(record.id)
    return record


@dataclass(frozen=True, slots=True)
class TestResult:
    ok: bool
    message: str


async def test(store: Store, channels: Mapping[str, Any], ident: int | str) -> TestResult:
    """Ask the upstream whether a credential works. A credential found broken is marked
    invalid with the upstream's words; one found working loses an old invalid mark."""
    record = await find(store, ident)
    channel = channels.get(record.channel)
    if channel is None:
        raise InvalidRequest(f"the {record.channel} channel is not available in this version yet")
    credential = to_pool(record)
    name = f"credential {record.id} ({record.label})"
    try:
        probe = getattr(channel, "probe", None)
        if probe is not None:
            said = await probe(credential)
        else:
            said = f"{len(await channel.list_models(credential))} models"
    except UpstreamFailed as failed:
        reason = failed.failure.reason or failed.failure.error.message
        if failed.failure.action == "invalidate":
            await mark_invalid(store, record.id, reason)
        return TestResult(False, f"{name} failed: {reason}")
    except GatewayError as error:
        return TestResult(False, f"{name} failed: {error.message}")
    if record.status != "ok":
        await store.update_credential(record.id, status="ok", status_reason=None)
    return TestResult(True, f"{name} works: {said}")


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


def live(record: CredentialRecord, state: CredentialState | None) -> dict[str, Any]:
    """A credential with what the running pool knows of it: its state in one word, why, its
    cooldowns per model with their end (wall clock), and its last hour."""
    view = describe(record)
    now, mono = time.time(), time.monotonic()
    cooldowns = []
    if state is not None:
        for model, until in sorted(state.cooldown_until.items()):
            if until > mono:
                cooldowns.append(
                    {"model": model, "until": now + until - mono, "seconds_left": until - mono}
                )
    invalid = record.status == "invalid" or (state is not None and state.invalid_reason)
    if not record.enabled:
        word = "disabled"
    elif invalid:
        word = "invalid"
    elif cooldowns:
        word = "cooling"
    else:
        word = "ok"
    requests, errors = state.last_hour(now) if state is not None else (0, 0)
    view.update(
        state=word,
        reason=reason_in_words(record, state, cooldowns),
        cooldowns=cooldowns,
        last_error=state.last_error if state else None,
        last_error_at=state.last_error_at if state else None,
        last_success_at=state.last_success_at if state else None,
        requests_last_hour=requests,
        errors_last_hour=errors,
    )
    return view


def reason_in_words(
    record: CredentialRecord, state: CredentialState | None, cooldowns: list[dict[str, Any]]
) -> str:
    if not record.enabled:
        return "Disabled by an operator: never used until enabled again."
    reason = record.status_reason or (state.invalid_reason if state else None)
    if record.status == "invalid" or reason:
        return (
            f"The upstream refused this credential ({reason or 'no reason given'}). "
            "Fix or replace it, then enable it again."
        )
    if cooldowns:
        models = ", ".join(c["model"] for c in cooldowns)
        return f"Rate limited for {models}; used again for them when the cooldown ends."
    if state is not None and state.last_success_at:
        return "Working."
    return "Not used yet."


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
