"""A strict, scriptable fake of the gemini.google.com web app and the Google hosts it uses.

Every host is served by path from one aiohttp server on 127.0.0.1 (a daemon thread with its own
loop): `/app`, `/_/BardChatUi/data/batchexecute`, `…/StreamGenerate` (gemini.google.com),
`/RotateCookies` (accounts.google.com), `/upload` (content-push.googleapis.com) and `/video/…`
(generated videos, cookie-checked, 206 while rendering). Built from
/work/shared/reference/gemini-web-protocol.md §12: it checks the cookies, `at`, `bl`, `f.sid`,
`_reqid`, the model header against inner slots 79/80, and the request slots; it answers in the
length-prefixed framing (lengths in UTF-16 units) with cumulative text, thoughts, the model that
answered in body[42], in-band BardErrorInfo codes, and serves a signed-out account as a guest
with HTTP 200 and the cheaper model, the way the real one does. Generated images and the media
hosts that serve them are in gemini_web_images.py.

    with FakeGeminiWeb() as fake:
        fake.add_account("psid-a", tier=2)
        fake.script(WebReply.error(1037), psid="psid-a")
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from tests.fakes.gemini_web_images import ImageHost

BUILD_LABEL = "boq_assistant-bard-web-server_20261120.07_p0"
PUSH_ID = "feeds/mcudyrk2a4khkz"
SENTINEL = b'[000,"-0000000000000000000"]'
GUEST_MODEL = "cf41b0e0dd7d53e5"
# How many of an account's latest page tokens are accepted (one per open tab, say).
_LIVE_PAGE_TOKENS = 4
FAST, PRO = "fbb127bbb056c959", "9d8ca3786ebdfbea"
# id -> (category, display name, mode number); what otAQ7b lists to a signed-in account.
MODELS = {
    FAST: ("Fast", "3.6 Flash", 1),
    PRO: ("Pro", "3.1 Pro", 3),
    GUEST_MODEL: ("Flash-Lite", "3.5 Flash-Lite", 6),
}
_ERROR_TYPE = "type.googleapis.com/assistant.boq.bard.application.BardErrorInfo"
_GRPC_FOR = {1037: 8, 1060: 9, 1050: 3, 1052: 3, 1013: 13, 1003: 3, 1100: 7, 1152: 13}
# Deep research (reference §9.2): the task id a report carries until it is written.
PLACEHOLDER_TASK = "agency-placeholder-task-id"
CONFIRM_PROMPT = "Start research"
PREDEFINED_GEMS = {"storybook", "coding-partner"}
VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64
REPORT = (
    "# Tidal power\n\nTidal barrages work like dams [cite: 1]. Stream turbines sit in open "
    "water [cite: 1, 2].\n\nhttp://googleusercontent.com/immersive_entry_chip/0\n"
)
REPORT_SOURCES = [
    ("https://example.org/barrages", "How barrages work"),
    ("https://example.net/turbines", "Tidal stream turbines"),
]


@dataclass
class WebReply:
    """What StreamGenerate answers next."""

    text: str | None = None  # None: echo what the fake received
    thoughts: str = ""
    chunks: int = 3
    delay: float = 0.0
    error: int | None = None  # in-band BardErrorInfo code, before any content
    # In-band BardErrorInfo code after `error_after` text frames: a failure mid-answer.
    error_after: tuple[int, int] | None = None  # (frames, code)
    status: int = 200
    placeholder: bool = False  # add an image placeholder link, as the web app does
    answered_by: str | None = None  # another model id in body[42] (a silent downgrade)
    stall: float = 0.0  # seconds of silence after the metadata frame
    # Held after the first text frame until the test sets it: proves a client saw the first
    # words before the answer was complete.
    gate: threading.Event | None = None
    # Generated images (rich field 7) in the final frame: None makes one when the request asks
    # for image generation (slot 49 = 14). `images_in`: "stream" (positional field 7),
    # "sparse" (the sparse bundle) or "chat" (only in the chat read back with hNvQHb).
    images: int | None = None
    images_in: str = "stream"

    @classmethod
    def error_code(cls, code: int) -> WebReply:
        return cls(error=code)


@dataclass
class Account:
    psid: str
    psidts: str
    tier: int = 1  # capacity: 1 free, 2 Pro, 4 Plus
    revoked: bool = False  # cookies expired or signed out: served as a guest
    # The page tokens (SNlM0e) of the latest page loads: each load makes a new one, and the
    # older ones go on working a while, as the pages open in several tabs of a browser do.
    at: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # every 1PSIDTS this fake gave out
    reset_at: float = 0.0  # the usage window reset jSf9Qc reports
    previous: str | None = None  # the 1PSIDTS a rotation replaced, still accepted for a while
    # Entitlements of a paid plan: a free account (tier 1) has neither.
    video: bool = True
    research: bool = True


@dataclass
class Conversation:
    psid: str
    model: str
    cid: str
    rid: str = ""
    rcid: str = ""
    ctx: str = ""
    turns: list[str] = field(default_factory=list)
    # (rid, prompt, candidate) of every answered turn, oldest first: what hNvQHb reads.
    history: list[tuple[str, str, list[Any]]] = field(default_factory=list)
    research: Research | None = None


@dataclass
class Research:
    """A deep-research task: planned, then confirmed, then written after some reads."""

    confirm: str = CONFIRM_PROMPT
    started: bool = False
    reads: int = 0
    doc_id: str = field(default_factory=lambda: "doc_" + secrets.token_hex(6))


@dataclass
class Video:
    psid: str
    polls_left: int
    data: bytes = VIDEO_BYTES


@dataclass
class Recorded:
    path: str
    psid: str | None
    cookies: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)
    inner: list[Any] | None = None
    prompt: str = ""
    files: list[Any] = field(default_factory=list)
    # When the request arrived (time.monotonic(), the same clock in every process).
    at: float = field(default_factory=time.monotonic)


@dataclass
class Upload:
    ref: str
    name: str
    mime: str
    data: bytes


class Refused(Exception):
    def __init__(self, status: int, text: str = "") -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass
class Special:
    """An answer a request's slots or prompt ask for: its text, rich block, and whether its
    last frame carries the completion mark."""

    text: str | None
    rich: list[Any] | None = None
    complete: bool = True


def _research_slots(inner: list[Any]) -> bool:
    proof, nonce = inner[3], inner[4]
    return (
        isinstance(proof, str)
        and proof.startswith("!")
        and len(proof) > 100
        and not any(c.isspace() for c in proof)
        and isinstance(nonce, str)
        and len(nonce) == 32
        and all(c in "0123456789abcdef" for c in nonce)
        and inner[54] == [[[[[1]]]]]
        and inner[55] == [[1]]
    )


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def frame(entries: list[Any]) -> bytes:
    payload = orjson.dumps(entries).decode()
    return f"{utf16_len(payload) + 2}\n{payload}\n".encode()


def cookie_header(value: str) -> dict[str, str]:
    cookies = {}
    for item in value.split(";"):
        name, sep, val = item.strip().partition("=")
        if sep:
            cookies[name] = val
    return cookies


class FakeGeminiWeb:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.accounts: dict[str, Account] = {}
        self.requests: list[Recorded] = []
        self.uploads: dict[str, Upload] = {}
        self.conversations: dict[str, Conversation] = {}
        self.rotations = 0
        self.default_chunks = 3  # text frames of an unscripted answer
        self.videos: dict[str, Video] = {}
        self.video_polls = 2  # 206 answers a video gives before its bytes
        self.research_reads = 2  # hNvQHb reads that find a report still being written
        # The other places the reference allows: video field 59 positional, the plan in field
        # 56 of the sparse bundle, a report's citations in document [5].
        self.alternate_layout = False
        self._queue: list[tuple[str | None, WebReply]] = []
        self._reqids: dict[str, set[int]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.images = ImageHost(self)

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Settings that point every web host of a gemgate at this fake."""
        return {
            "GEMGATE_GEMINI_WEB_BASE": self.base_url,
            "GEMGATE_GOOGLE_ACCOUNTS_BASE": self.base_url,
            "GEMGATE_WEB_UPLOAD_BASE": self.base_url,
        }

    def start(self, port: int = 0) -> Self:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._startup(port))
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-gemini-web", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        runner = self._runner
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(10)
        asyncio.run_coroutine_threadsafe(self.images.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _startup(self, port: int) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, port).start()
        self.port = self._runner.addresses[0][1]
        await self.images.start()

    # ---- scripting ----------------------------------------------------------------------

    def add_account(self, psid: str, *, tier: int = 1, psidts: str | None = None) -> Account:
        psidts = psidts or "sidts-" + secrets.token_hex(12)
        account = Account(psid, psidts, tier, issued=[psidts])
        with self._lock:
            self.accounts[psid] = account
        return account

    def script(self, reply: WebReply, *, psid: str | None = None) -> None:
        with self._lock:
            self._queue.append((psid, reply))

    def reset(self) -> None:
        """Forget scripts and what was received; accounts and their sessions stay."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.rotations = 0
        self.images.reset()

    def expire(self, psid: str) -> None:
        """The account's 1PSIDTS expires; a rotation from the last issued one revives it."""
        account = self.accounts[psid]
        account.psidts, account.previous = "sidts-gone-" + secrets.token_hex(6), None

    def stale_token(self, psid: str) -> None:
        """The page token gemgate holds goes stale (the web app answers 400 "xsrf")."""
        self.accounts[psid].at = ["AJvLN6-newer-" + secrets.token_hex(6)]

    def revoke(self, psid: str) -> None:
        """Signed out for good (password change, revoked session): no rotation helps."""
        self.accounts[psid].revoked = True

    def chats(self, path_end: str = "StreamGenerate") -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(path_end)]

    def _next_reply(self, psid: str | None) -> WebReply:
        with self._lock:
            for i, (who, reply) in enumerate(self._queue):
                if who is None or who == psid:
                    del self._queue[i]
                    return reply
        return WebReply(chunks=self.default_chunks)

    # ---- requests -----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith(("/gg-dl/", "/rd-gg-dl/", "/ogi/")) and request.method == "GET":
            return await self.images.handle(request)
        try:
            if path.endswith("/app") and request.method == "GET":
                return self._app_page(request)
            if path == "/RotateCookies" and request.method == "POST":
                return await self._rotate(request)
            if path.rstrip("/") == "/upload" and request.method == "POST":
                return await self._upload(request)
            if path.endswith("/data/batchexecute") and request.method == "POST":
                return await self._batchexecute(request)
            if path.endswith("BardFrontendService/StreamGenerate") and request.method == "POST":
                return await self._stream_generate(request)
            if path.startswith("/video/") and request.method == "GET":
                return self._video(request)
        except Refused as refused:
            return web.Response(status=refused.status, text=refused.text or "Error")
        return web.Response(status=404, text="Not Found")

    def _account(self, cookies: dict[str, str]) -> Account | None:
        """The signed-in account these cookies open, or None: a guest."""
        account = self.accounts.get(cookies.get("__Secure-1PSID", ""))
        if account is None or account.revoked:
            return None
        # The value just replaced by a rotation stays good for a while (requests in flight).
        if cookies.get("__Secure-1PSIDTS") not in (account.psidts, account.previous):
            return None  # an expired companion cookie: Google serves a guest, with 200
        return account

    def _record(self, request: web.Request, cookies: dict[str, str], **extra: Any) -> Recorded:
        recorded = Recorded(
            path=request.path,
            psid=cookies.get("__Secure-1PSID"),
            cookies=cookies,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            **extra,
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded

    def _app_page(self, request: web.Request) -> web.Response:
        cookies = cookie_header(request.headers.get("Cookie", ""))
        self._record(request, cookies)
        account = self._account(cookies)
        values = {"cfb2h": BUILD_LABEL, "TuX5cc": "en", "qKIAYe": PUSH_ID}
        if account is not None:
            # A fresh token and session id per page load, as the real page has.
            token = "AJvLN6" + secrets.token_urlsafe(18) + ":" + str(int(time.time()))
            account.at = [*account.at[-(_LIVE_PAGE_TOKENS - 1) :], token]
            values["SNlM0e"] = token
            values["FdrFJe"] = str(-secrets.randbelow(2**63))
        data = ",".join(f'"{k}":"{v}"' for k, v in values.items())
        html = f"<!doctype html><html><script>window.WIZ_global_data = {{{data}}};</script></html>"
        return web.Response(text=html, content_type="text/html")

    def _check_session(
        self, request: web.Request, cookies: dict[str, str], form: dict[str, str]
    ) -> Account | None:
        """The common checks of every POST to gemini.google.com; the signed-in account."""
        account = self._account(cookies)
        query = request.query
        if request.headers.get("X-Same-Domain") != "1":
            raise Refused(400, "missing X-Same-Domain")
        if not request.headers.get("Content-Type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            raise Refused(400, "bad content type")
        if account is not None:
            if "at" not in form:
                raise Refused(400, "signed-in request without at")
            if form["at"] not in account.at:
                raise Refused(400, "Invalid xsrf token")
            if query.get("bl") != BUILD_LABEL:
                raise Refused(405, "Method Not Allowed")
            if not query.get("f.sid"):
                raise Refused(400, "missing f.sid")
        try:
            reqid = int(query.get("_reqid", ""))
        except ValueError:
            raise Refused(400, "bad _reqid") from None
        # Requests of one session count up from a random start in steps of 100000; under
        # concurrency they may arrive out of order, but a value is never used twice.
        session = form.get("at", "") or "guest"
        with self._lock:
            seen = self._reqids.setdefault(session, set())
            if reqid in seen or (seen and (reqid - min(seen)) % 100000):
                raise Refused(400, f"_reqid {reqid} is not the next of this session")
            seen.add(reqid)
        return account

    async def _form(self, request: web.Request) -> dict[str, str]:
        body = (await request.read()).decode()
        return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}

    async def _batchexecute(self, request: web.Request) -> web.Response:
        cookies = cookie_header(request.headers.get("Cookie", ""))
        form = await self._form(request)
        self._record(request, cookies, form=form)
        account = self._check_session(request, cookies, form)
        try:
            calls = orjson.loads(form.get("f.req", ""))[0]
        except (orjson.JSONDecodeError, IndexError, TypeError):
            raise Refused(400, "bad f.req") from None
        rpcids = request.query.get("rpcids", "").split(",")
        if [c[0] for c in calls] != rpcids:
            raise Refused(400, "rpcids do not match f.req")
        body = b")]}'\n\n"
        for call in calls:
            rpcid, ident = call[0], call[3] if len(call) > 3 else "generic"
            answer = self._rpc(rpcid, account, call[1] if len(call) > 1 else "")
            body += frame(
                [["wrb.fr", rpcid, orjson.dumps(answer).decode(), None, None, None, ident]]
            )
        body += frame([["di", 42], ["af.httprm", 41, "-1", 3]])
        return web.Response(body=body, content_type="application/json")

    def _rpc(self, rpcid: str, account: Account | None, payload: str = "") -> Any:
        if rpcid == "otAQ7b":
            status = 1000 if account is not None else 1016
            ids = [GUEST_MODEL] if account is None else [FAST, PRO, GUEST_MODEL]
            models = []
            for model_id in ids:
                category, display, mode = MODELS[model_id]
                entry: list[Any] = [None] * 20
                entry[0], entry[1], entry[11], entry[17] = model_id, category, display, mode
                models.append(entry)
            body: list[Any] = [None] * 25
            body[14], body[15] = status, models
            body[16] = [8] if account is not None and account.tier == 2 else []
            body[17] = [115] if account is not None and account.tier == 4 else []
            return body
        if rpcid == "c8o8Fe":
            return self.images.full_size(payload, account)
        if rpcid == "hNvQHb":
            return self._read_chat(account, payload)
        if rpcid == "jSf9Qc" and account is not None:
            reset = int(account.reset_at or time.time() + 3600)
            return [account.tier, [[0, 1.0, 1, [[reset, 0]]]], 0]
        return []

    def _read_chat(self, account: Account | None, payload: str) -> Any:
        """hNvQHb: the chat's turns, newest first (§10.1); a research turn gets its report
        (§9.2), written only after `research_reads` reads."""
        try:
            args = orjson.loads(payload)
            cid, limit = args[0], args[1]
            assert isinstance(cid, str) and isinstance(limit, int) and args[3:6] == [1, [1], [4]]
        except (orjson.JSONDecodeError, IndexError, TypeError, AssertionError):
            raise Refused(400, "bad hNvQHb payload") from None
        conversation = self.conversations.get(cid)
        if account is None or conversation is None or conversation.psid != account.psid:
            return [[]]
        research = conversation.research
        turns = []
        for rid, prompt, candidate in reversed(conversation.history[-limit:]):
            candidate = list(candidate)
            if research is not None and research.started and rid == conversation.rid:
                candidate[30] = [self._report(research)]
            turns.append([[cid, rid], None, [[prompt]], [[candidate]]])
        if research is not None and research.started:
            research.reads += 1
        return [turns]

    def _report(self, research: Research) -> list[Any]:
        """The immersive document of a research turn: empty under the placeholder task id
        until it is written, then the Markdown body and its citations (field 43 of [17][1])."""
        done = research.reads >= self.research_reads
        body = REPORT if done else ""
        document: list[Any] = [None] * 18
        document[0], document[2] = research.doc_id, "Tidal power"
        document[3] = "task_" + research.doc_id if done else PLACEHOLDER_TASK
        document[4] = body
        rich: list[Any] = [None] * 44
        if done:
            entries = [[None, None, None, [["https://favicon/x.ico", url, title]]]
                       for url, title in REPORT_SOURCES]  # fmt: skip
            rich[43] = [[[" [cite: 1]"], entries[:1]], [[" [cite: 1, 2]"], entries]]
        if self.alternate_layout:
            document[5], document[17] = rich, [body]
        else:
            document[17] = [body, rich]
        return document

    def _video(self, request: web.Request) -> web.Response:
        """A generated video: cookie-checked like every gg-dl download, 206 while it renders."""
        cookies = cookie_header(request.headers.get("Cookie", ""))
        self._record(request, cookies)
        name = request.path.removeprefix("/video/")
        video = self.videos.get(name.removesuffix("/thumb"))
        account = self._account(cookies)
        if video is None:
            raise Refused(404, "Not Found")
        if account is None or account.psid != video.psid:
            raise Refused(403, "Forbidden")
        if name.endswith("/thumb"):
            return web.Response(body=b"\xff\xd8\xff\xe0thumb", content_type="image/jpeg")
        if video.polls_left > 0:
            video.polls_left -= 1
            return web.Response(status=206, body=b"", content_type="video/mp4")
        return web.Response(body=video.data, content_type="video/mp4")

    async def _rotate(self, request: web.Request) -> web.Response:
        cookies = cookie_header(request.headers.get("Cookie", ""))
        self._record(request, cookies)
        if await request.read() != SENTINEL:
            raise Refused(400, "bad rotation payload")
        if set(cookies) - {"__Secure-1PSID", "__Secure-1PSIDTS"}:
            raise Refused(401, "Unauthorized")  # measured: more than the two cookies is a 401
        account = self.accounts.get(cookies.get("__Secure-1PSID", ""))
        if (
            account is None
            or account.revoked
            or cookies.get("__Secure-1PSIDTS") not in account.issued
        ):
            raise Refused(401, "Unauthorized")
        account.previous, account.psidts = account.psidts, "sidts-" + secrets.token_hex(12)
        account.issued.append(account.psidts)
        self.rotations += 1
        response = web.Response(text="[]")
        for name, value in (
            ("__Secure-1PSIDTS", account.psidts),
            ("__Secure-3PSIDTS", account.psidts),
        ):
            response.headers.add(
                "Set-Cookie", f"{name}={value}; Domain=.google.com; Path=/; Secure; HttpOnly"
            )
        return response

    async def _upload(self, request: web.Request) -> web.Response:
        if request.headers.get("Push-ID") != PUSH_ID:
            raise Refused(400, "bad Push-ID")
        if request.headers.get("X-Tenant-Id") != "bard-storage":
            raise Refused(400, "bad X-Tenant-Id")
        reader = await request.multipart()
        part = await reader.next()
        if part is None or getattr(part, "name", None) != "file":
            raise Refused(400, "no file part")
        data = await part.read()  # type: ignore[union-attr]
        mime = part.headers.get("Content-Type", "application/octet-stream")
        ref = "/contrib_service/ttl_1d/" + secrets.token_hex(16)
        with self._lock:
            self.uploads[ref] = Upload(ref, part.filename or "", mime, bytes(data))  # type: ignore[union-attr]
        self._record(request, {})
        return web.Response(text=ref)

    async def _stream_generate(self, request: web.Request) -> web.StreamResponse:
        cookies = cookie_header(request.headers.get("Cookie", ""))
        form = await self._form(request)
        recorded = self._record(request, cookies, form=form)
        account = self._check_session(request, cookies, form)
        try:
            outer = orjson.loads(form["f.req"])
            inner = orjson.loads(outer[1])
            message = inner[0]
            prompt, files, metadata = message[0], message[3] or [], inner[2]
            assert isinstance(prompt, str) and isinstance(metadata, list) and len(metadata) == 10
        except (KeyError, IndexError, TypeError, AssertionError, orjson.JSONDecodeError):
            raise Refused(400, "malformed f.req") from None
        recorded.inner, recorded.prompt, recorded.files = inner, prompt, files
        if len(inner) < 81 or inner[1] != ["en"] or inner[7] != 1:
            raise Refused(400, "short or malformed inner request")
        if inner[59] != orjson.loads(request.headers.get("x-goog-ext-525005358-jspb", "[0]"))[0]:
            raise Refused(400, "request uuid header does not match slot 59")
        reply = self._next_reply(recorded.psid)
        if reply.status != 200:
            raise Refused(reply.status, "scripted")

        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b")]}'\n\n")

        async def error(code: int) -> web.StreamResponse:
            status = [_GRPC_FOR.get(code, 13), None, [[_ERROR_TYPE, [code]]]]
            await response.write(frame([["wrb.fr", None, None, None, None, status], ["di", 9]]))
            await response.write_eof()
            return response

        model, thinking, code = self._model_for(request, inner, account)
        if code is None and files:
            code = self._check_files(files, account)
        if code is None and reply.error is not None:
            code = reply.error
        conversation: Conversation | None = None
        if code is None and metadata[0]:
            conversation = self.conversations.get(metadata[0])
            if (
                conversation is None
                or account is None
                or conversation.psid != account.psid
                or metadata[1:3] != [conversation.rid, conversation.rcid]
            ):
                code = 1013  # the web app has no such turn to continue
            elif conversation.model != model:
                code = 1050
        if code is not None:
            return await error(code)
        if conversation is None:
            conversation = Conversation(
                recorded.psid or "guest", model, "c_" + secrets.token_hex(8)
            )
            if account is not None:
                self.conversations[conversation.cid] = conversation
        conversation.turns.append(prompt)
        special = self._special(inner, prompt, account, conversation)
        rich, complete = special.rich, special.complete
        rid, rcid = "r_" + secrets.token_hex(8), "rc_" + secrets.token_hex(8)
        answered = reply.answered_by or model
        _, display, _ = MODELS.get(answered, ("?", "unknown", 0))
        model_info = [answered, None, None, display, True]
        last: list[Any] = []

        made: list[Any] = []
        drawing = inner[49] == 14 if len(inner) > 49 else False
        count = reply.images if reply.images is not None else (1 if drawing else 0)
        if count and account is not None:
            made = self.images.make(account.psid, conversation.cid, rid, rcid, count)
        image_rich = ImageHost.rich(made, sparse=reply.images_in != "stream") if made else None
        rich = image_rich or rich

        def body(text: str, thoughts: str, done: bool) -> list[Any]:
            final = done
            done = done and complete
            candidate: list[Any] = [None] * 38
            candidate[0], candidate[1], candidate[8] = rcid, [text], [2 if done else 1]
            if thoughts:
                candidate[37] = [[thoughts]]
            if final:
                shown = rich is not None and (image_rich is None or reply.images_in != "chat")
                if shown:
                    candidate[12] = rich
                stored = list(candidate)  # as the chat read back has it, images and all
                stored[12] = rich
                last[:] = [stored]
            out: list[Any] = [None] * 43
            out[1] = [conversation.cid, rid]
            out[4] = [candidate]
            out[42] = model_info
            if done and account is not None:
                out[25] = conversation.ctx = "!ctx-" + secrets.token_hex(6)
            return out

        def wrap(body_value: list[Any]) -> bytes:
            return frame([["wrb.fr", None, orjson.dumps(body_value).decode()]])

        await response.write(wrap([None, [conversation.cid, rid], None, None, None]))
        if made:
            # While the image is made, the frames name the running tool (§6.2).
            running = [None, ["data_analysis_tool", [None, None, "Loading Nano Banana Pro..."]]]
            meta = [conversation.cid, rid]
            await response.write(wrap([None, meta, None, None, None, None, running]))
        if reply.stall:
            await asyncio.sleep(reply.stall)
        text = reply.text if reply.text is not None else special.text
        if text is None:
            text = self._echo(prompt, files, account)
        if drawing and account is None:
            text = "Are you signed in? Sign in to create images."
        elif made and reply.text is None:
            text = "Here you go!"
        if reply.placeholder or made:
            for n in range(max(1, len(made))):
                text += f"\n\nhttp://googleusercontent.com/image_generation_content/{n}\n"
        thoughts = reply.thoughts if thinking == 2 and account is not None else ""
        if thinking == 2 and account is not None and not thoughts:
            thoughts = "**Considering the question**\n\nThe user wants an answer."
        steps = max(1, reply.chunks)
        for i in range(1, steps + 1):
            thought_part = thoughts[: len(thoughts) * i // steps]
            await response.write(wrap(body("", thought_part, False)))
        for i in range(1, steps + 1):
            piece = text[: len(text) * i // steps]
            # A non-final frame "flickers" with a trailing fence the next one drops.
            flicker = "\n```" if i == 1 and steps > 1 else ""
            await response.write(wrap(body(piece + flicker, thoughts, i == steps)))
            if reply.error_after is not None and i == reply.error_after[0]:
                return await error(reply.error_after[1])
            if reply.gate is not None and i == 1:
                gate = reply.gate
                await asyncio.get_running_loop().run_in_executor(None, gate.wait, 30)
            if reply.delay:
                await asyncio.sleep(reply.delay)
        conversation.rid, conversation.rcid = rid, rcid
        conversation.history.append((rid, prompt, last[0]))
        await response.write(frame([["di", 77], ["af.httprm", 76, "-1", 12]]))
        await response.write_eof()
        return response

    def _special(
        self,
        inner: list[Any],
        prompt: str,
        account: Account | None,
        conversation: Conversation,
    ) -> Special:
        """Deep research (slot 49 = 1), a gem (slot 19) or a video asked for in the prompt."""
        if inner[49] == 1:
            if not _research_slots(inner):
                raise Refused(400, "malformed deep research request")
            if account is None or account.tier < 2 or not account.research:
                return Special("Deep Research isn't available with your plan.")
            research = conversation.research
            if research is not None and not research.started and prompt == research.confirm:
                research.started = True
                words = "" if self.alternate_layout else "I'm on it. The report is coming."
                return Special(words, complete=False)
            conversation.research = Research()
            rich: list[Any] = [None] * 70
            steps = [
                [None, "Research Websites", "(1) Find how tidal barrages work."],
                [None, "Analyze Results", "(2) Compare them with stream turbines."],
            ]
            rich[55] = ["Tidal power", steps, "Ready in a few mins", [CONFIRM_PROMPT],
                        ["https://gemini.google.com/deep-research"], ["Edit plan"]]  # fmt: skip
            rich[69] = 1
            if self.alternate_layout:
                rich = [None] * 13 + [{"57": rich[55], "70": 1}]
            return Special("Here's a research plan for that topic.", rich=rich)
        gem = inner[19]
        if gem is not None:
            if gem not in PREDEFINED_GEMS:
                raise Refused(400, f"unknown gem {gem}")
            if gem == "storybook":
                return Special(
                    "Once upon a time, a small robot learned to paint the sea.\n\n"
                    "http://googleusercontent.com/immersive_entry_chip/0\n"
                )
        if "video" in prompt.lower() and account is not None:
            if account.tier < 2 or not account.video:
                # An ineligible account: a refusal, without the completion mark (§8.5).
                return Special("I can't create videos for you yet. Try again later.",
                               complete=False)  # fmt: skip
            name = secrets.token_hex(8)
            self.videos[name] = Video(account.psid, self.video_polls)
            url = f"{self.base_url}/video/{name}"
            info: list[Any] = [None] * 8
            info[7] = [url + "/thumb", url]
            rich = [None] * 13 + [{"60": [[[[info]]]]}]  # field 59, in the sparse bundle
            if self.alternate_layout:
                rich = [None] * 59 + [[[[[info]]]]]
            return Special("Your video is being generated. It will be ready soon.", rich=rich)
        return Special(None)

    def _model_for(
        self, request: web.Request, inner: list[Any], account: Account | None
    ) -> tuple[str, int, int | None]:
        """The model that answers, the thinking flag, and a BardErrorInfo code if refused."""
        raw = request.headers.get("x-goog-ext-525001261-jspb")
        if raw is None:
            return GUEST_MODEL, 1, None  # header beats body: without it, Flash-Lite
        try:
            header = orjson.loads(raw)
            model_id, mode, thinking = header[4], header[14], header[15]
        except (orjson.JSONDecodeError, IndexError, TypeError):
            return GUEST_MODEL, 1, 1052
        if header[-1] is None or header[11] not in (1, 2, 3, 4):
            return GUEST_MODEL, 1, 1052
        if (mode, thinking) != (inner[79], inner[80]):
            return GUEST_MODEL, 1, 1052
        if account is None:
            # A guest asking for any model is silently served by Flash-Lite, without thoughts.
            return GUEST_MODEL, 1, None
        if model_id not in MODELS or MODELS[model_id][2] != mode or thinking not in (1, 2):
            return GUEST_MODEL, 1, 1052
        return model_id, thinking, None

    def _check_files(self, files: list[Any], account: Account | None) -> int | None:
        if account is None:
            return 1100
        for item in files:
            try:
                ref = item[0][0]
            except (IndexError, TypeError):
                return 1003
            if ref not in self.uploads:
                return 1003
        return None

    def _echo(self, prompt: str, files: list[Any], account: Account | None) -> str:
        if account is None:
            return "Hello! I'm Gemini (signed out). How can I help?"
        names = []
        for item in files:
            upload = self.uploads[item[0][0]]
            names.append(f"{upload.name} ({upload.mime}, {len(upload.data)} bytes)")
        seen = f" Files: {'; '.join(names)}." if names else ""
        tail = prompt[-80:].replace("\n", " ")
        return f"You said: {tail}.{seen} Emoji 🙂 & done."


def main() -> None:  # pragma: no cover - standalone for benchmarks
    import argparse
    import signal

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--accounts", default="bench-psid")
    parser.add_argument("--chunks", type=int, default=3)
    args = parser.parse_args()
    fake = FakeGeminiWeb().start(args.port)
    fake.default_chunks = args.chunks
    for psid in args.accounts.split(","):
        fake.add_account(psid, psidts="bench-sidts")
    print(fake.base_url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    fake.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
