"""The credential pages: the board (every upstream account and how it is doing), adding one of
each channel's kind, and the buttons on each row."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from gemgate.admin.api import live_credentials, quota_readings
from gemgate.admin.rendering import back, render
from gemgate.admin.session import Session, gateway_of, page, referer_path
from gemgate.errors import InvalidRequest
from gemgate.services import credentials as credential_service
from gemgate.services import keys as key_service
from gemgate.services import oauth_import
from gemgate.services import quota_readings as quota

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


def cred_action(action: str) -> Callable[[Request], Awaitable[Response]]:
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
    path = referer_path(request).partition("#")[0]
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
