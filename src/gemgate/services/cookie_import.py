"""Browser cookies in, a `gemini_official` credential out.

Accepted: a `Cookie:` header as the browser sent it, a Netscape `cookies.txt`, or the JSON of a
cookie-export extension (a list of objects with name, value and domain). Only Google's cookies
are kept (`.google.com` and its subdomains); `__Secure-1PSID` is required.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from gemgate.errors import InvalidRequest
from gemgate.services import credentials as credential_service
from gemgate.services.credentials import checked_proxy, mask
from gemgate.store import CredentialRecord, Store

PSID, PSIDTS = "__Secure-1PSID", "__Secure-1PSIDTS"


def steps(add: str) -> tuple[str, ...]:
    """How to take a session from a browser so that gemgate can keep it alive (why Firefox:
    reference/gemini-web-protocol.md, "Changes 2026-11" item 6). `add`: how to add them here."""
    return (
        "Use Firefox. Chrome binds its Google sessions to the device (DBSC): cookies exported "
        "from Chrome cannot be renewed by a server and die within about 30 minutes to 2 hours. "
        "Firefox sessions can be renewed, so export from Firefox.",
        "Open a private window and sign in at https://gemini.google.com (sign out and in "
        "again if you were signed in). A dedicated Google account is best.",
        "Open the developer tools, Storage > Cookies > https://gemini.google.com, and copy the "
        "values of __Secure-1PSID and __Secure-1PSIDTS (or export all cookies with a cookie "
        "extension, or copy the Cookie header of a request to gemini.google.com).",
        f"Add them at once: {add}.",
        "Close the private window without chatting, so the browser does not rotate the "
        "session that gemgate now keeps alive.",
    )


GUIDE = "How to get the cookies:\n" + "\n".join(
    textwrap.fill(step, 94, initial_indent=f"  {n}. ", subsequent_indent="     ")
    for n, step in enumerate(
        steps(
            "gemgate credentials add gemini_official --psid VALUE --psidts VALUE "
            "(or --cookies FILE, or --cookies - to read them from standard input)"
        ),
        1,
    )
)


def parse(text: str) -> dict[str, str]:
    """Google's cookies, by name, from any of the accepted export forms."""
    text = text.strip().lstrip("\ufeff")
    if not text:
        raise InvalidRequest("the cookies are empty")
    if text[0] in "[{":
        cookies = _from_json(text)
    elif "\t" in text or text.startswith("# Netscape") or text.startswith("# HTTP Cookie"):
        cookies = _from_netscape(text)
    else:
        cookies = _from_header(text)
    if not cookies.get(PSID):
        raise InvalidRequest(
            f"no {PSID} cookie for google.com found: export the cookies of gemini.google.com "
            "while signed in"
        )
    return cookies


def _is_google(domain: str) -> bool:
    domain = domain.lstrip(".").lower()
    return domain == "google.com" or domain.endswith(".google.com")


def _from_json(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the cookie export is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("cookies", [data])
    if not isinstance(data, list):
        raise InvalidRequest("the cookie export must be a list of cookies")
    cookies = {}
    for item in data:
        if not isinstance(item, dict) or "name" not in item or "value" not in item:
            continue
        domain = str(item.get("domain") or item.get("host") or "")
        if _is_google(domain):
            cookies[str(item["name"])] = str(item["value"])
    return cookies


def _from_netscape(text: str) -> dict[str, str]:
    cookies = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#HttpOnly_"):
            line = line[len("#HttpOnly_") :]
        elif not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) >= 7 and _is_google(fields[0]):
            cookies[fields[5]] = fields[6]
    return cookies


def _from_header(text: str) -> dict[str, str]:
    if text.lower().startswith("cookie:"):
        text = text[len("cookie:") :]
    cookies = {}
    for item in text.split(";"):
        name, sep, value = item.strip().partition("=")
        if sep and name:
            cookies[name.strip()] = value.strip()
    return cookies


def secret_of(cookies: dict[str, str]) -> dict[str, Any]:
    others = {k: v for k, v in cookies.items() if k not in (PSID, PSIDTS)}
    secret: dict[str, Any] = {"psid": cookies[PSID]}
    if cookies.get(PSIDTS):
        secret["psidts"] = cookies[PSIDTS]
    if others:
        secret["cookies"] = others
    return secret


async def add_gemini_official(
    store: Store,
    *,
    psid: str | None = None,
    psidts: str | None = None,
    cookies_text: str | None = None,
    label: str | None = None,
    proxy: str | None = None,
) -> CredentialRecord:
    proxy = checked_proxy(proxy)
    if cookies_text is not None:
        cookies = parse(cookies_text)
    elif psid:
        cookies = {PSID: psid.strip()}
        if psidts:
            cookies[PSIDTS] = psidts.strip()
    else:
        raise InvalidRequest("gemini_official needs --psid (and --psidts) or --cookies")
    for value in (cookies[PSID], cookies.get(PSIDTS, "")):
        if any(c.isspace() or c == ";" for c in value):
            raise InvalidRequest("a cookie value is one word without spaces or semicolons")
    secret = secret_of(cookies)
    for existing in await store.list_credentials("gemini_official"):
        if existing.secret.get("psid") == secret["psid"]:
            raise InvalidRequest(
                f"this account's cookie is already credential {existing.id} ({existing.label})"
            )
    return await store.add_credential(
        channel="gemini_official",
        label=label or f"web {mask(secret['psid'])}",
        secret=secret,
        proxy=proxy,
    )


async def _add_kind(
    store: Store, values: dict[str, str], label: str | None, proxy: str | None
) -> CredentialRecord:
    # One of the two ways: the whole export pasted, or the two values.
    pasted = values.get("cookies", "").strip()
    psid = values.get("psid", "").strip()
    if pasted and psid:
        raise InvalidRequest("give either the cookie export or the two cookie values, not both")
    if not pasted and not psid:
        raise InvalidRequest(
            f"gemini_official needs the cookies: paste the export, or give {PSID} (and {PSIDTS})"
        )
    return await add_gemini_official(
        store,
        psid=psid or None,
        psidts=values.get("psidts") or None,
        cookies_text=pasted or None,
        label=label,
        proxy=proxy,
    )


credential_service.register(
    credential_service.CredentialKind(
        channel="gemini_official",
        title="Gemini web session",
        fields=(
            credential_service.SecretField(
                "cookies",
                "Cookies: a Cookie header, cookies.txt or a cookie-extension JSON export",
                kind="document",
                required=False,
                hint="__Secure-1PSID=…; __Secure-1PSIDTS=…",
            ),
            credential_service.SecretField("psid", PSID, required=False, hint="g.a000…"),
            credential_service.SecretField("psidts", PSIDTS, required=False, hint="sidts-…"),
        ),
        add=_add_kind,
        steps=steps("paste them here and press Add, before anything else"),
    )
)
