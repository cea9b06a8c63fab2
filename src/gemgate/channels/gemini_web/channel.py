"""The `gemini_official` channel: the gemini.google.com web app with browser cookies.

Per request: the account's session (page values, status, rotation), the chat to continue or a
new one, files uploaded, StreamGenerate, and the answer's frames turned into IR events as they
arrive. Nothing answered as a guest or by another model than the one asked for reaches the
client: the first content is held until the frame says which model answered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson

from gemgate import errors, ir
from gemgate.channels.base import ModelInfo
from gemgate.channels.features import Features
from gemgate.channels.gemini_web import conversations, frames, uploads
from gemgate.channels.gemini_web.client import (
    SIGNED_OUT,
    Exclusive,
    Reply,
    SecretWriter,
    WebClient,
    WebSession,
    ip_flagged,
    signed_out,
    transient,
)
from gemgate.channels.gemini_web.request import (
    FREE_SUFFIX,
    ModelTable,
    WebModel,
    inner_request,
    new_chat_metadata,
    new_request_id,
)
from gemgate.config import Settings
from gemgate.pool import Credential, Failure, UpstreamFailed
from gemgate.pool.pacing import Pacing
from gemgate.store import Store

log = logging.getLogger("gemgate.gemini_web")

_STREAM_PATH = "/_/BardChatUi/data/assistant.lamda.BardFrontendService/StreamGenerate"
USAGE_COOLDOWN = 3600.0
THINKING = "-thinking"
# Codes that say nothing is wrong with the request or the account: try another account.
_TRANSIENT = {1013, 1003, 1099, 1152, 1155}
_MODEL_ERRORS = {1050, 1052}


class GeminiWeb:
    id = "gemini_official"
    features = Features(
        function_tools=False,
        builtin_tools=frozenset(),
        ignored_builtin_tools=frozenset({"googleSearch"}),
        images_out=False,
        count_tokens=False,
        native_passthrough=False,
        structured_output=False,
        instead="/gemini or /gemini_cli",
    )

    def __init__(
        self,
        settings: Settings,
        store: Store,
        write_secret: SecretWriter,
        exclusive: Exclusive | None = None,
    ) -> None:
        self.settings = settings
        self.models = ModelTable.from_setting(settings.web_models)
        self.store = store
        self.client = WebClient(settings, self.models, write_secret, self._read_secret, exclusive)
        self.chats = conversations.ChatMap(store, settings.web_chat_ttl)
        self.pacing = Pacing(
            concurrency=settings.web_concurrency,
            spacing=settings.web_min_interval_ms / 1000,
            max_wait=settings.pacing_max_wait,
        )

    async def _read_secret(self, cred_id: int) -> dict[str, Any] | None:
        record = await self.store.get_credential(cred_id)
        return record.secret if record is not None else None

    def serves(self, model: str) -> bool:
        # Unprefixed, only the names the web app alone has (the 2.5 names stay the API's);
        # OpenAI clients' `-thinking` suffix reaches channels already split off.
        bare = model.removesuffix(FREE_SUFFIX)
        return bare in self.models.models or f"{bare}{THINKING}" in self.models.models

    def _model(self, request: ir.Request, model: str) -> WebModel:
        if self.models.lookup(model) is None and request.thinking is not None:
            # `gemini-3-thinking` from an OpenAI client arrives as `gemini-3` + thinking.
            free = model.endswith(FREE_SUFFIX)
            thinking = model.removesuffix(FREE_SUFFIX) + THINKING + (FREE_SUFFIX if free else "")
            if self.models.lookup(thinking) is not None:
                return self.models.resolve(thinking)
        return self.models.resolve(model)

    async def preferred_credential(self, request: ir.Request, model: str) -> int | None:
        """The account holding the web chat this request continues, if any."""
        if not self.serves(model) and self.models.lookup(model) is None:
            return None
        found = await self.chats.find(request, model)
        return found[0].credential_id if found else None

    async def list_models(self, credential: Credential) -> list[ModelInfo]:
        """The names this account can serve (its page and status are read once, so this also
        tells `credentials test` whether the cookies still sign in)."""
        _, account = await self.client.session_for(credential).ready()
        names = []
        for name in self.models.names():
            model = self.models.lookup(name)
            capacity = 1 if model is None or model.free else account.capacity
            if model is not None and (
                not account.model_ids or model.id_for(capacity) in account.model_ids
            ):
                names.append(name)
        return [ModelInfo(id=name, display_name=f"Gemini web app: {name}") for name in names]

    async def count_tokens(self, request: ir.Request, model: str, credential: Credential) -> int:
        raise errors.InvalidRequest("token counting is not supported on gemini_official")

    async def close(self) -> None:
        await self.client.close()

    async def generate(
        self, request: ir.Request, model: str, credential: Credential
    ) -> AsyncIterator[ir.Event]:
        session = self.client.session_for(credential)
        try:
            async for event in self._generate(request, model, credential, session):
                yield event
        except UpstreamFailed as failed:
            # Answered as a guest: an expired 1PSIDTS that a rotation renews is not a lost
            # account. This request moves on; the account stays, with its new cookie.
            if failed.failure.reason == SIGNED_OUT and await session.rotate(forced=True):
                session.forget_page()
                raise transient("the account's session had expired and was renewed") from None
            raise

    async def _generate(
        self, request: ir.Request, model: str, credential: Credential, session: WebSession
    ) -> AsyncIterator[ir.Event]:
        web_model = self._model(request, model)
        if session.rotation_due():
            await session.rotate()
        _, account = await session.ready()
        if account.model_ids and web_model.id_for(account.capacity) not in account.model_ids:
            message = f"{model} is not offered to this gemini_official account"
            raise UpstreamFailed(
                Failure("cooldown", errors.RateLimited(message), cooldown=USAGE_COOLDOWN,
                        reason=message)
            )  # fmt: skip
        found = await self.chats.find(request, model)
        chat = found[0] if found and found[0].credential_id == credential.id else None
        if chat is not None and found is not None:
            try:
                async for event in self._turn(request, web_model, session, chat, found[1]):
                    yield event
                return
            except UpstreamFailed as failed:
                # The web app no longer has that turn (continued elsewhere, deleted, expired):
                # start a new chat with the whole history on the same account.
                if failed.failure.action != "retry":
                    raise
                log.info("credential %s: could not continue a web chat; starting a new one",
                         credential.id)  # fmt: skip
        async for event in self._turn(request, web_model, session, None, request.messages):
            yield event

    async def _turn(
        self,
        request: ir.Request,
        model: WebModel,
        session: WebSession,
        chat: conversations.Chat | None,
        messages: list[ir.Message],
    ) -> AsyncIterator[ir.Event]:
        turn = conversations.build_turn(
            request,
            messages,
            continuing=chat is not None,
            prompt_limit=self.settings.web_prompt_max_bytes,
            file_limit=self.settings.web_attachment_max_bytes,
        )
        files: list[Any] = []
        for index, media in enumerate(turn.files):
            data = conversations.media_bytes(media)
            name = uploads.file_name(media.mime_type, index + 1)
            files.append(await uploads.upload(session, name, media.mime_type, data))
        if turn.history_file is not None:
            files.append(
                await uploads.upload(session, "conversation.txt", "text/plain", turn.history_file)
            )
        page, account = await session.ready()
        capacity = self.models.config.get("free_capacity", 1) if model.free else account.capacity
        request_id = new_request_id()
        inner = inner_request(
            turn.prompt,
            model=model,
            language=page.language,
            metadata=chat.metadata() if chat else new_chat_metadata(),
            turn=chat.turn if chat else 0,
            files=files,
            request_id=request_id,
        )
        body = urlencode(
            {"at": page.at, "f.req": orjson.dumps([None, orjson.dumps(inner).decode()]).decode()}
        ).encode()
        reader = AnswerReader(model, self.models.guest_ids, request.model)
        async for event in self._send(session, model, capacity, body, request_id, reader):
            yield event
        answer = reader.answer_text()
        if reader.cid and reader.rid and reader.rcid:
            new_chat = conversations.Chat(
                session.credential.id, request.model, reader.cid, reader.rid, reader.rcid,
                reader.context or "", (chat.turn if chat else 0) + 1,
            )  # fmt: skip
            self.chats.remember(request, request.model, answer, new_chat)
        yield ir.UsageEvent(reader.usage(turn.prompt))

    async def _send(
        self,
        session: WebSession,
        model: WebModel,
        capacity: int,
        body: bytes,
        request_id: str,
        reader: AnswerReader,
    ) -> AsyncIterator[ir.Event]:
        for attempt in range(2):
            page, _ = await session.ready()
            query = {"hl": page.language, "_reqid": str(session.next_reqid()), "rt": "c"}
            if page.build:
                query["bl"] = page.build
            if page.session_id:
                query["f.sid"] = page.session_id
            headers = {
                **self.client.page_headers(),
                "X-Same-Domain": "1",
                "x-goog-ext-525001261-jspb": self.models.header(
                    model, capacity, session.session_uuid
                ),
                "x-goog-ext-73010989-jspb": "[0]",
                "x-goog-ext-73010990-jspb": "[0,0,0]",
                "x-goog-ext-525005358-jspb": orjson.dumps([request_id, 1]).decode(),
            }
            if attempt:
                # The page values changed under this body: put the fresh token in.
                body = _with_token(body, page.at)
            url = f"{self.client.web_base}{_STREAM_PATH}?{urlencode(query)}"
            chunks = self.client.stream(session, url, headers, body)
            try:
                head = await anext(chunks)
                assert isinstance(head, Reply)
                if head.status != 200:
                    retry = await self._refused(session, head.status, attempt)
                    if retry:
                        continue
                try:
                    async for event in reader.read(chunks):
                        yield event
                except UsageLimit:
                    seconds = await session.usage_reset() or USAGE_COOLDOWN
                    message = f"the usage limit of {reader.asked} is reached on this account"
                    raise UpstreamFailed(
                        Failure(
                            "cooldown",
                            errors.RateLimited(message, retry_after=seconds),
                            cooldown=seconds,
                            reason="usage limit reached (1037)",
                        )
                    ) from None
                return
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]

    async def _refused(self, session: WebSession, status: int, attempt: int) -> bool:
        """What a non-200 StreamGenerate means; True to try once more on this account."""
        if status in (400, 405) and attempt == 0:
            # A stale `at` (400 "xsrf") or build label (405): fetch the page again, once.
            session.forget_page()
            return True
        if status in (401, 403):
            if attempt == 0 and await session.rotate(forced=True):
                session.forget_page()
                return True
            raise signed_out()
        if status == 429:
            raise ip_flagged()
        raise transient(f"the Gemini web app answered HTTP {status}")


def _with_token(body: bytes, at: str) -> bytes:
    form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    form["at"] = at
    return urlencode(form).encode()


class AnswerReader:
    """One answer's frames in, IR events out: text deltas of the chosen candidate, thoughts
    as thought text, and the in-band errors turned into pool outcomes."""

    def __init__(self, model: WebModel, guest_ids: frozenset[str], asked: str) -> None:
        self.model = model
        self.guest_ids = guest_ids
        self.asked = asked
        self.started = False  # a part has gone out: too late to fail over
        self.opened = False  # the Start event is made (once, before the first part)
        self.verified = False
        self.held: list[ir.Event] = []
        self.text = frames.TextDiff()
        self.thoughts = frames.TextDiff()
        self.cid: str | None = None
        self.rid: str | None = None
        self.rcid: str | None = None
        self.context: str | None = None
        self.done = False
        self.code: int | None = None
        self._last_payload: Any = None

    async def read(self, chunks: AsyncIterator[Any]) -> AsyncIterator[ir.Event]:
        parser = frames.FrameReader()
        try:
            async for chunk in chunks:
                for payload in parser.feed(chunk):
                    for event in self._payload(payload):
                        yield event
        except (UpstreamFailed, UsageLimit, errors.GatewayError):
            raise
        except Exception as exc:  # the transport broke mid-answer
            if self.started:
                raise errors.UpstreamError(
                    f"the Gemini web app stopped mid-answer: {type(exc).__name__}"
                ) from None
            raise transient(f"the Gemini web app stopped: {type(exc).__name__}") from None
        for payload in parser.end():
            for event in self._payload(payload):
                yield event
        if not self.verified and self.held:
            # No frame said which model answered (an older shape): trust the account status.
            self.verified = True
        for event in self._release():
            yield event
        if not self.started:
            if self.code == 1096 or self.code is None:
                raise transient("the Gemini web app ended without an answer")
            raise transient(f"the Gemini web app failed (BardErrorInfo {self.code})")
        if not self.done:
            log.info("a web answer ended without its completion mark")
        yield ir.Finish("stop")

    def _payload(self, payload: Any) -> list[ir.Event]:
        if payload == self._last_payload:
            return []  # the frame before again (a tool or a queue still at work): nothing new
        self._last_payload = payload
        out: list[ir.Event] = []
        for entry in frames.entries(payload):
            if entry.error_code is not None and entry.error_code != 1096:
                self._error(entry.error_code)
            if entry.body is None:
                continue
            turn = frames.read_body(entry.body, with_model=not self.verified)
            self.cid = turn.cid or self.cid
            self.rid = turn.rid or self.rid
            self.context = turn.context or self.context
            if turn.answered_by and not self.verified:
                self._verify(turn.answered_by, turn.answered_name)
            if not turn.candidates:
                continue
            candidate = turn.candidates[0]
            self.rcid = candidate.rcid or self.rcid
            self.done = self.done or candidate.done
            if not self.opened:
                self.opened = True
                self.held.append(ir.Start(response_id=self.rid, model_version=self.asked))
            thought = self.thoughts.delta(candidate.thoughts, candidate.done)
            if thought:
                self.held.append(ir.PartEvent(ir.Text(thought, thought=True)))
            text = self.text.delta(candidate.text, candidate.done)
            if text:
                self.held.append(ir.PartEvent(ir.Text(text)))
            out.extend(self._release())
        return out

    def _release(self) -> list[ir.Event]:
        if not self.verified or not self.held:
            return []
        held, self.held = self.held, []
        if any(isinstance(e, ir.PartEvent) for e in held):
            self.started = True
        return held

    def _verify(self, answered: str, name: str | None) -> None:
        if answered in self.model.answers or answered == self.model.id:
            self.verified = True
            return
        said = f"{name} ({answered})" if name else answered
        if answered in self.guest_ids:
            raise signed_out()
        message = (
            f"the Gemini web app answered {self.asked} with another model, {said}; "
            "the account may not have that model now"
        )
        raise UpstreamFailed(
            Failure("cooldown", errors.RateLimited(message), cooldown=USAGE_COOLDOWN,
                    reason=message)
        )  # fmt: skip

    def _error(self, code: int) -> None:
        self.code = code
        if self.started:
            raise errors.UpstreamError(
                f"the Gemini web app failed mid-answer (BardErrorInfo {code})"
            )
        if code == 1037:
            raise UsageLimit()
        if code == 1060:
            raise ip_flagged()
        if code in _MODEL_ERRORS:
            raise UpstreamFailed(
                Failure(
                    "final",
                    errors.InvalidRequest(
                        f"gemini_official refused the model {self.asked} (BardErrorInfo {code}): "
                        + ("a continued chat must keep its model" if code == 1050 else
                           "its id or header is not valid for this account; check "
                           "GEMGATE_WEB_MODELS"),
                        param="model",
                        code="model_not_available",
                    ),
                    reason=f"BardErrorInfo {code}",
                )
            )  # fmt: skip
        if code == 1100:
            raise signed_out()
        if code in _TRANSIENT or code:
            raise transient(f"the Gemini web app failed (BardErrorInfo {code})")

    def answer_text(self) -> str:
        return self.text.sent

    def usage(self, prompt: str) -> ir.Usage:
        """The web app reports no token counts: an estimate (about four characters a token)."""
        prompt_tokens = max(1, len(prompt) // 4)
        output = max(1, len(self.text.sent) // 4) if self.text.sent else 0
        thoughts = len(self.thoughts.sent) // 4
        return ir.Usage(
            prompt_tokens=prompt_tokens,
            output_tokens=output,
            thought_tokens=thoughts,
            total_tokens=prompt_tokens + output + thoughts,
            estimated=True,
        )


class UsageLimit(Exception):
    """BardErrorInfo 1037: the account's usage window for this model is spent."""


__all__ = ["SIGNED_OUT", "GeminiWeb"]
