"""One web session per account: the transport (curl_cffi with browser impersonation, in
`transport.py`), the cookies, the page values, the account status, and the rotation of
`__Secure-1PSIDTS`.

Cookies are sent and read by hand (the transport's jar is off): the hosts can be pointed at a
fake on 127.0.0.1 where `.google.com` cookies would never be sent, and what Google sets must be
merged and written back to the store anyway. Reference §1-§3, §11.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from gemgate import errors
from gemgate.channels.base import Exclusive
from gemgate.channels.gemini_web import frames
from gemgate.channels.gemini_web.request import ModelTable
from gemgate.config import Settings
from gemgate.pool import Credential, Failure, UpstreamFailed

if TYPE_CHECKING:
    from gemgate.channels.gemini_web.transport import Transport

log = logging.getLogger("gemgate.gemini_web")

SIGNED_OUT = "signed out: cookies expired or revoked — export them again"
IP_FLAGGED = "IP flagged by Google; use a proxy for this account"
# A blocked exit recovers in 106-121 minutes (reference §2.4).
IP_REST = 2 * 3600.0
ROTATE_SENTINEL = b'[000,"-0000000000000000000"]'
# Google answers 429 when 1PSIDTS is rotated more often than this.
ROTATE_FLOOR = 60.0
_PAGE_KEYS = ("SNlM0e", "cfb2h", "FdrFJe", "TuX5cc", "qKIAYe")
_DEFAULT_PUSH_ID = "feeds/mcudyrk2a4khkz"
_STREAM_PATH = "/_/BardChatUi/data/assistant.lamda.BardFrontendService/StreamGenerate"
_BATCH_PATH = "/_/BardChatUi/data/batchexecute"
# Only the two session cookies are needed; the rotation refuses a whole jar (§3.0).
PSID, PSIDTS = "__Secure-1PSID", "__Secure-1PSIDTS"

SecretWriter = Callable[[Credential, dict[str, Any]], Awaitable[None]]
SecretReader = Callable[[int], Awaitable[dict[str, Any] | None]]


@dataclass(slots=True)
class PageValues:
    at: str
    build: str | None
    session_id: str | None
    language: str
    push_id: str


@dataclass(slots=True)
class Account:
    signed_in: bool
    capacity: int
    model_ids: set[str] = field(default_factory=set)


def signed_out() -> UpstreamFailed:
    return UpstreamFailed(
        Failure("invalidate", errors.Unavailable(f"a gemini_official account is {SIGNED_OUT}"),
                reason=SIGNED_OUT)
    )  # fmt: skip


def ip_flagged() -> UpstreamFailed:
    return UpstreamFailed(
        Failure(
            "cooldown",
            errors.RateLimited(f"a gemini_official account rests: {IP_FLAGGED}"),
            cooldown=IP_REST,
            reason=IP_FLAGGED,
            whole_credential=True,
        )
    )


def transient(message: str) -> UpstreamFailed:
    return UpstreamFailed(Failure("retry", errors.UpstreamError(message), reason=message))


class TooLarge(UpstreamFailed):
    """An answer longer than GEMGATE_WEB_DOWNLOAD_MAX_BYTES, cut off as it came."""

    def __init__(self, limit: int) -> None:
        message = f"the answer was larger than GEMGATE_WEB_DOWNLOAD_MAX_BYTES ({limit} bytes)"
        super().__init__(Failure("final", errors.UpstreamError(message), reason=message))


class WebSession:
    """What gemgate knows about one account's web session. One page fetch and one rotation
    at a time (a lock each); everything else is shared by concurrent requests."""

    def __init__(self, credential: Credential, client: WebClient) -> None:
        self.credential = credential
        self.client = client
        secret = credential.secret
        self.cookies: dict[str, str] = dict(secret.get("cookies") or {})
        self.cookies[PSID] = secret["psid"]
        if secret.get("psidts"):
            self.cookies[PSIDTS] = secret["psidts"]
        # A cookie just imported needs no renewal: the first is due one interval from now.
        self.rotated_at = float(secret.get("rotated_at") or time.time())
        self._last_attempt = 0.0  # of this process, for the floor between two rotations
        # Every 1PSIDTS this session has held: a credential still carrying an older one was
        # loaded before our own write-back reached the pool, and is the same session.
        self.held_psidts = {self.cookies.get(PSIDTS)}
        self.page: PageValues | None = None
        self.account: Account | None = None
        self.session_uuid = str(uuid.uuid4()).upper()
        self._reqid = secrets.randbelow(90000) + 10000
        self._page_lock = asyncio.Lock()
        self._rotate_lock = asyncio.Lock()

    def same_secret(self, credential: Credential) -> bool:
        secret = credential.secret
        return secret.get("psid") == self.cookies.get(PSID) and (
            secret.get("psidts") in self.held_psidts
        )

    def next_reqid(self) -> int:
        self._reqid += 100000
        return self._reqid

    def cookie_header(self, only_session: bool = False) -> str:
        names = (PSID, PSIDTS) if only_session else tuple(self.cookies)
        return "; ".join(f"{n}={self.cookies[n]}" for n in names if n in self.cookies)

    def merge(self, set_cookies: list[str]) -> bool:
        """Take in what Google set; True when 1PSIDTS changed. A reply that would swap the
        session identity itself is refused, so one account's jar never lands in another's."""
        changed = False
        for line in set_cookies:
            name, sep, rest = line.partition("=")
            if not sep:
                continue
            name, value = name.strip(), rest.split(";", 1)[0].strip()
            if name == PSID and value != self.cookies.get(PSID):
                log.warning(
                    "credential %s: ignoring a reply that changes 1PSID", self.credential.id
                )
                return False
            if not value or self.cookies.get(name) == value:
                continue
            self.cookies[name] = value
            if name == PSIDTS:
                self.held_psidts.add(value)
                changed = True
        return changed

    def secret(self) -> dict[str, Any]:
        secret = dict(self.credential.secret)
        secret["psid"] = self.cookies[PSID]
        if PSIDTS in self.cookies:
            secret["psidts"] = self.cookies[PSIDTS]
        secret["rotated_at"] = self.rotated_at
        return secret

    # -- page values and account status --------------------------------------------------

    async def ready(self) -> tuple[PageValues, Account]:
        """Page values and account status, fetched once and reused until they go stale."""
        if self.page is None or self.account is None:
            async with self._page_lock:
                if self.page is None or self.account is None:
                    await self._load()
        assert self.page is not None and self.account is not None
        return self.page, self.account

    def forget_page(self) -> None:
        self.page = None

    async def _load(self) -> None:
        page = await self._fetch_page()
        if not page.at:
            # A page without a token is a guest's: try one rotation before giving up.
            if await self.rotate(forced=True):
                page = await self._fetch_page()
            if not page.at:
                raise signed_out()
        self.page = page
        self.account = await self._account_status(page)
        if not self.account.signed_in:
            self.page = None
            raise signed_out()

    async def _fetch_page(self) -> PageValues:
        response = await self.client.send(
            self, "GET", self.client.web_base + "/app", headers=self.client.page_headers()
        )
        if response.status == 429 or "/sorry/" in response.url:
            raise ip_flagged()
        if response.status in (401, 403):
            raise signed_out()
        if response.status != 200:
            raise transient(f"gemini.google.com/app answered HTTP {response.status}")
        found = {k: _page_value(response.text, k) for k in _PAGE_KEYS}
        return PageValues(
            at=found["SNlM0e"] or "",
            build=found["cfb2h"],
            session_id=found["FdrFJe"],
            language=found["TuX5cc"] or "en",
            push_id=found["qKIAYe"] or _DEFAULT_PUSH_ID,
        )

    async def _account_status(self, page: PageValues) -> Account:
        body = await self.batch(page, "otAQ7b", "[]")
        status = frames.at(body, 14)
        models = frames.at(body, 15) or []
        ids = {m[0] for m in models if isinstance(m, list) and m and isinstance(m[0], str)}
        tier_flags = frames.at(body, 16) if isinstance(frames.at(body, 16), list) else []
        capability_flags = frames.at(body, 17) if isinstance(frames.at(body, 17), list) else []
        capacity = self.client.models.capacity(tier_flags, capability_flags)
        # 1000 is "available"; a body without a status is read as available (tolerance).
        return Account(signed_in=status in (1000, None), capacity=capacity, model_ids=ids)

    async def batch(self, page: PageValues, rpcid: str, payload: str, path: str = "/app") -> Any:
        query = {"rpcids": rpcid, "hl": page.language, "_reqid": str(self.next_reqid()), "rt": "c",
                 "source-path": path}  # fmt: skip
        if page.build:
            query["bl"] = page.build
        if page.session_id:
            query["f.sid"] = page.session_id
        form = {
            "at": page.at,
            "f.req": orjson.dumps([[[rpcid, payload, None, "generic"]]]).decode(),
        }
        response = await self.client.send(
            self,
            "POST",
            f"{self.client.web_base}{_BATCH_PATH}?{urlencode(query)}",
            headers=self.client.post_headers(self.session_uuid),
            body=urlencode(form).encode(),
        )
        if response.status == 429:
            raise ip_flagged()
        if response.status != 200:
            self.forget_page()
            raise transient(f"batchexecute {rpcid} answered HTTP {response.status}")
        reader = frames.FrameReader()
        for payload_value in [*reader.feed(response.content), *reader.end()]:
            for entry in frames.entries(payload_value):
                if entry.rpcid == rpcid:
                    if frames.at(entry.status, 0) == 7:
                        raise signed_out()
                    return entry.body
        return None

    async def usage_reset(self) -> float | None:
        """Seconds until the account's nearest usage window resets (jSf9Qc), if it says."""
        if self.page is None:
            return None
        try:
            body = await self.batch(self.page, "jSf9Qc", "[]", path="/usage")
        except UpstreamFailed:
            return None
        now = time.time()
        resets = []
        for item in frames.at(body, 1) or ():
            reset = frames.at(item, 3, 0, 0)
            if isinstance(reset, int | float) and reset > now:
                resets.append(reset - now)
        return min(resets) if resets else None

    # -- rotation ------------------------------------------------------------------------

    def rotation_due(self) -> bool:
        return time.time() - self.rotated_at >= self.client.settings.web_rotate_interval

    async def rotate(self, forced: bool = False) -> bool:
        """Renew 1PSIDTS with the sentinel payload (§3.0), one rotation at a time per account,
        and write the new value back; True when a new value came. A failure says nothing about
        whether chat works, so it never takes the account out by itself."""
        async with self._rotate_lock:
            # Requests that found a rotation due wait here for it, so none of them fetches a
            # page or chats with the value being replaced; after it, they find it done.
            if forced and time.time() - self._last_attempt < ROTATE_FLOOR:
                return False
            if not forced and not self.rotation_due():
                return False
            shared = self.client.exclusive
            name = f"gemini_official:rotate:{self.credential.id}"
            async with shared(name) if shared is not None else contextlib.nullcontext():
                # Another instance (sharing the store) may have rotated since this one loaded
                # the account, or while it waited for the lock: its value is the live one now,
                # and the one held here may already be dead.
                if await self._adopt_stored():
                    return True
                try:
                    return await self._rotate()
                finally:
                    self.rotated_at = time.time()

    async def _adopt_stored(self) -> bool:
        """Take the stored 1PSIDTS when it is one this session never held: values only move
        forward, so it is newer. (Not by `rotated_at`: a session made from a secret without
        one counts from its own start, which may come after the other instance's rotation.)"""
        secret = await self.client.read_secret(self.credential.id)
        stored = secret.get("psidts") if secret else None
        if (
            not secret
            or not stored
            or secret.get("psid") != self.cookies.get(PSID)
            or stored in self.held_psidts
        ):
            return False
        self.cookies[PSIDTS] = stored
        self.held_psidts.add(stored)
        self.rotated_at = float(secret.get("rotated_at") or time.time())
        self.page = None  # a page fetched with the old value may carry a stale token
        return True

    async def _rotate(self) -> bool:
        self._last_attempt = time.time()
        try:
            response = await self.client.send(
                self,
                "POST",
                self.client.accounts_base + "/RotateCookies",
                headers={
                    "Content-Type": "application/json",
                    "Origin": "https://accounts.google.com",
                },
                body=ROTATE_SENTINEL,
                only_session_cookies=True,
            )
        except UpstreamFailed:
            return False
        if response.status == 401:
            log.warning(
                "credential %s: RotateCookies refused the session (device-bound or signed "
                "out; Chrome exports cannot be renewed, export from Firefox)",
                self.credential.id,
            )
            return False
        if response.status != 200 or PSIDTS not in "".join(response.set_cookies):
            log.warning("credential %s: RotateCookies gave no new 1PSIDTS (HTTP %s)",
                        self.credential.id, response.status)  # fmt: skip
            return False
        self.rotated_at = time.time()
        await self.client.write_back(self)
        return True


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file sent as multipart/form-data (the transport builds curl's form from it)."""

    name: str
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Reply:
    status: int
    url: str
    set_cookies: list[str]
    content: bytes = b""
    location: str | None = None  # where a redirect points, when it was not followed

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class WebClient:
    """The transport seam: every call to the web hosts goes through `send` or `stream`."""

    def __init__(
        self,
        settings: Settings,
        models: ModelTable,
        write_secret: SecretWriter,
        read_secret: SecretReader,
        exclusive: Exclusive | None = None,
    ) -> None:
        self.settings = settings
        self.read_secret = read_secret
        self.exclusive = exclusive
        self.models = models
        self.web_base = settings.gemini_web_base.rstrip("/")
        self.accounts_base = settings.google_accounts_base.rstrip("/")
        self.upload_base = settings.web_upload_base.rstrip("/")
        self._write_secret = write_secret
        self._sessions: dict[int, WebSession] = {}
        self._transport: Transport | None = None

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            # The one place curl_cffi gets loaded (see transport.py for why it waits).
            from gemgate.channels.gemini_web.transport import Transport

            self._transport = Transport(self.settings)
        return self._transport

    def session_for(self, credential: Credential) -> WebSession:
        session = self._sessions.get(credential.id)
        if session is None or not session.same_secret(credential):
            # New, or its cookies were replaced in the store (an operator re-import, or a
            # rotation written by another instance): start over from the stored values.
            session = self._sessions[credential.id] = WebSession(credential, self)
        else:
            session.credential = credential
        return session

    async def write_back(self, session: WebSession) -> None:
        try:
            await self._write_secret(session.credential, session.secret())
        except Exception:
            log.exception(
                "credential %s: could not store the rotated cookie", session.credential.id
            )

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    def page_headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/x-www-form-urlencoded;charset=utf-8",
            "Origin": "https://gemini.google.com",
            "Referer": "https://gemini.google.com/",
        }

    def post_headers(self, session_uuid: str) -> dict[str, str]:
        return {
            **self.page_headers(),
            "X-Same-Domain": "1",
            "x-goog-ext-525001261-jspb": (
                f"[1,null,null,null,null,null,null,null,[4,5,6,8],null,null,null,null,null,"
                f'null,null,"{session_uuid}"]'
            ),
            "x-goog-ext-73010989-jspb": "[0]",
        }

    def _proxy(self, session: WebSession) -> str | None:
        return session.credential.proxy or self.settings.proxy

    async def send(
        self,
        session: WebSession,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes | None = None,
        upload: FilePart | None = None,
        only_session_cookies: bool = False,
        cookies: bool = True,
        redirects: bool = True,
    ) -> Reply:
        if cookies:
            headers = {**headers, "Cookie": session.cookie_header(only_session_cookies)}
        reply = await self.transport.request(
            method,
            url,
            headers=headers,
            body=body,
            upload=upload,
            proxy=self._proxy(session),
            redirects=redirects,
        )
        if cookies:
            session.merge(reply.set_cookies)
        return reply

    async def stream(
        self, session: WebSession, url: str, headers: dict[str, str], body: bytes
    ) -> AsyncIterator[Reply | bytes]:
        """POST and yield the reply head, then its body as it arrives."""
        headers = {**headers, "Cookie": session.cookie_header()}
        head, chunks = await self.transport.open_stream(url, headers, body, self._proxy(session))
        try:
            reply = Reply(head.status, url, head.set_cookies)
            session.merge(reply.set_cookies)
            yield reply
            async for chunk in chunks:
                assert isinstance(chunk, bytes)
                yield chunk
        finally:
            await chunks.aclose()


def _page_value(html: str, key: str) -> str | None:
    found = re.search(rf'"{key}":\s*"(.*?)"', html)
    return found.group(1) if found else None
