"""Downloading the images the web app made, with the account's cookies, the way the reference
measured that it works (§8.2, §8.3):

- only the cookies of domain `.google.com` go along (sending the host-only `accounts.google.com`
  ones too gives 403), on every hop;
- redirects are followed by hand, because HTTP clients drop cookies across hosts and the
  `gg-dl` URLs redirect to another host;
- a `gg-dl` URL answers with a text pointer where `rd-gg-dl` answers with the bytes, so a hop
  to `gg-dl` is rewritten to `rd-gg-dl`; a text pointer that still comes is followed.

Cookies only ever go to Google's media hosts, the web app's own host and loopback (a fake).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from gemgate.channels.gemini_web.client import PSID, PSIDTS, TooLarge, WebSession

MAX_HOPS = 8
# Cookies a `.google.com` export can hold that are not domain cookies of .google.com: host-only
# cookies of accounts.google.com and www.google.com.
_NOT_DOMAIN_COOKIES = frozenset({"LSID", "ACCOUNT_CHOOSER", "SMSV", "OTZ", "LSOLH"})
_COOKIE_HOSTS = (".google.com", ".googleusercontent.com")
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
)


@dataclass(slots=True)
class Downloaded:
    data: bytes
    mime_type: str


class DownloadFailed(Exception):
    """Why a media URL gave no bytes (HTTP status or what came instead), for the log and
    the client's error; never carries a cookie."""


class DownloadTooLarge(DownloadFailed):
    """A file past GEMGATE_WEB_DOWNLOAD_MAX_BYTES: cut off, whatever the cookies."""


class StillRendering(DownloadFailed):
    """HTTP 206 (or a 200 without bytes): a video the web app is still making (§8.5)."""


def google_cookies(session: WebSession) -> str:
    names = [
        n for n in session.cookies if not n.startswith("__Host-") and n not in _NOT_DOMAIN_COOKIES
    ]
    # The session pair first, as a browser orders them.
    names.sort(key=lambda n: (n not in (PSID, PSIDTS), n))
    return "; ".join(f"{n}={session.cookies[n]}" for n in names)


def rd_gg_dl(url: str) -> str:
    """A `gg-dl` media URL as its `rd-gg-dl` twin, which answers with bytes."""
    parts = urlsplit(url)
    if not parts.path.startswith("/gg-dl/"):
        return url
    return parts._replace(path="/rd-gg-dl/" + parts.path[len("/gg-dl/") :]).geturl()


async def fetch(session: WebSession, url: str) -> Downloaded:
    """The bytes behind a media URL the web app gave, with every hop done by hand."""
    client = session.client
    web_host = urlsplit(client.web_base).hostname
    cookie = google_cookies(session)
    seen: set[str] = set()
    # A URL this client rewrote to rd-gg-dl -> the one it was given, tried if the rewrite fails.
    given: dict[str, str] = {}
    last = "no answer"
    for _ in range(MAX_HOPS):
        if url in seen:
            raise DownloadFailed("the media URL redirects in a loop")
        seen.add(url)
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http"):
            raise DownloadFailed(f"the web app gave a media URL that is not http(s): {last}")
        headers = {
            "Origin": "https://gemini.google.com",
            "Referer": "https://gemini.google.com/",
        }
        if _takes_cookies(parts.hostname or "", web_host):
            headers["Cookie"] = cookie
        try:
            reply = await client.send(
                session, "GET", url, headers=headers, cookies=False, redirects=False
            )
        except TooLarge as cut:
            raise DownloadTooLarge(f"{parts.hostname}: {cut.failure.error.message}") from None
        if reply.status in (301, 302, 303, 307, 308):
            location = reply.location
            if not location:
                raise DownloadFailed(f"HTTP {reply.status} without a Location")
            url = _rewritten(urljoin(url, location), given)
            last = f"HTTP {reply.status}"
            continue
        if reply.status == 206 or (reply.status == 200 and not reply.content):
            raise StillRendering(f"HTTP {reply.status} from {parts.hostname}")
        if reply.status != 200:
            if url in given and given[url] not in seen:
                url = given[url]
                continue
            raise DownloadFailed(f"HTTP {reply.status} from {parts.hostname}")
        mime = _media_type(reply.content)
        if mime is not None:
            return Downloaded(reply.content, mime)
        pointer = reply.text.strip()
        if pointer.startswith(("https://", "http://")) and len(pointer) < 8192:
            # A text pointer (the gg-dl and full-size routes answer with the next URL).
            url = _rewritten(pointer.split()[0], given)
            last = "a text pointer"
            continue
        rewritten = rd_gg_dl(url)
        if rewritten != url and rewritten not in seen:
            url = rewritten
            continue
        raise DownloadFailed(f"{parts.hostname} answered with something that is not media")
    raise DownloadFailed(f"more than {MAX_HOPS} hops")


def _rewritten(url: str, given: dict[str, str]) -> str:
    rewritten = rd_gg_dl(url)
    if rewritten != url:
        given[rewritten] = url
    return rewritten


def _takes_cookies(host: str, web_host: str | None) -> bool:
    host = host.lower()
    if host == web_host or host.endswith(_COOKIE_HOSTS) or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _media_type(data: bytes) -> str | None:
    """The image (or video) type by the file's own signature (a media host's Content-Type is often a
    generic one, and a text pointer is served as text)."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data.startswith(b"\x1aE\xdf\xa3"):
        return "video/webm"
    return None
