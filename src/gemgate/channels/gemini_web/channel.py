"""The `gemini_official` channel: the gemini.google.com web app with browser cookies.

Per request: the account's session (page values, status, rotation), the chat to continue or a
new one, files uploaded, StreamGenerate, and the answer's frames turned into IR events as they
arrive. Nothing answered as a guest or by another model than the one asked for reaches the
client: the first content is held until the frame says which model answered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson

from gemgate import errors, ir
from gemgate.channels.base import Exclusive, ModelInfo
from gemgate.channels.features import Features
from gemgate.channels.gemini_web import conversations, frames, images, research, uploads, video
from gemgate.channels.gemini_web.client import (
    SIGNED_OUT,
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
    TOOLS,
    ModelTable,
    Tool,
    WebModel,
    inner_request,
    new_chat_metadata,
    new_request_id,
    split_tool,
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

# What follows the answer's text for a model that asks for a tool (TOOLS in request.py), by
# tool name: the tool's artefacts, fetched once the turn is over, as more IR events.
AfterTurn = Callable[[WebSession, "AnswerReader", ir.Request], AsyncIterator[ir.Event]]
_AFTER_TURN: dict[str, AfterTurn] = {
    "image": images.deliver,
}
# What a tool adds to the prompt, by tool name (the web app takes its options in words).
_PROMPT_NOTE: dict[str, Callable[[ir.Request], str]] = {
    "image": images.prompt_note,
    "video": video.prompt_note,
}


class GeminiWeb:
    id = "gemini_official"
    features = Features(
        function_tools=False,
        builtin_tools=frozenset(),
        ignored_builtin_tools=frozenset({"googleSearch"}),
        # Only through a tool model (`-imagen`); the images API picks that tool itself.
        images_out=True,
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
        # A tool suffix is the web app's alone, so it claims the 2.5 names that carry one.
        bare = model.removesuffix(FREE_SUFFIX)
        if split_tool(bare)[1] is not None:
            return self.models.lookup(bare) is not None
        return bare in self.models.models or f"{bare}{THINKING}" in self.models.models

    def _model(self, request: ir.Request, model: str) -> WebModel:
        found = self.models.lookup(model)
        if found is None and request.thinking is not None:
            # `gemini-3-thinking` from an OpenAI client arrives as `gemini-3` + thinking.
            free = model.endswith(FREE_SUFFIX)
            named, _ = split_tool(model.removesuffix(FREE_SUFFIX))
            suffix = model.removesuffix(FREE_SUFFIX)[len(named) :]
            found = self.models.lookup(named + THINKING + suffix + (FREE_SUFFIX if free else ""))
        web_model = found or self.models.resolve(model)
        modalities = request.generation.response_modalities or ()
        if web_model.tool is None and any(m.upper() == "IMAGE" for m in modalities):
            # The images API (or a client asking for image output) wants the image tool.
            web_model = replace(web_model, tool=TOOLS["-imagen"])
        return web_model

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
        paid = account.capacity > self._free_capacity
        for name in self.models.names():
            model = self.models.lookup(name)
            capacity = 1 if model is None or model.free else account.capacity
            if model is None or (model.tool is not None and model.tool.paid and not paid):
                continue
            if not account.model_ids or model.id_for(capacity) in account.model_ids:
                names.append(name)
        return [ModelInfo(id=name, display_name=f"Gemini web app: {name}") for name in names]

    async def count_tokens(self, request: ir.Request, model: str, credential: Credential) -> int:
        raise errors.InvalidRequest("token counting is not supported on gemini_official")

    async def close(self) -> None:
        await self.client.close()

    async def generate(
        self, request: ir.Request, model: str, credential: Credential
    ) -> AsyncIterator[ir.Event | ir.Batch]:
        session = self.client.session_for(credential)
        try:
            async for events in self._generate(request, model, credential, session):
                yield events
        except UpstreamFailed as failed:
            # Answered as a guest: an expired 1PSIDTS that a rotation renews is not a lost
            # account. This request moves on; the account stays, with its new cookie.
            if failed.failure.reason == SIGNED_OUT and await session.rotate(forced=True):
                session.forget_page()
                raise transient("the account's session had expired and was renewed") from None
            raise

    async def _generate(
        self, request: ir.Request, model: str, credential: Credential, session: WebSession
    ) -> AsyncIterator[ir.Event | ir.Batch]:
        web_model = self._model(request, model)
        tool = web_model.tool
        if tool is not None and tool.paid and web_model.free:
            raise errors.InvalidRequest(
                f"{model}: {_suffix(tool)} needs an account's paid Gemini plan, and -free runs "
                "without the account's tier",
                param="model",
                code="model_not_available",
            )
        if session.rotation_due():
            await session.rotate()
        _, account = await session.ready()
        if account.model_ids and web_model.id_for(account.capacity) not in account.model_ids:
            message = f"{model} is not offered to this gemini_official account"
            raise UpstreamFailed(
                Failure("cooldown", errors.RateLimited(message), cooldown=USAGE_COOLDOWN,
                        reason=message)
            )  # fmt: skip
        if tool is not None and tool.paid:
            if account.capacity <= self._free_capacity:
                raise cannot_serve(model, tool, "the account has no paid Gemini plan")
            # A video or a research is a task of its own, never a continued chat.
            async for events in self._turn(request, web_model, session, None, request.messages):
                yield events
            return
        found = await self.chats.find(request, model)
        chat = found[0] if found and found[0].credential_id == credential.id else None
        if chat is not None and found is not None:
            try:
                async for events in self._turn(request, web_model, session, chat, found[1]):
                    yield events
                return
            except UpstreamFailed as failed:
                # The web app no longer has that turn (continued elsewhere, deleted, expired):
                # start a new chat with the whole history on the same account.
                if failed.failure.action != "retry":
                    raise
                log.info("credential %s: could not continue a web chat; starting a new one",
                         credential.id)  # fmt: skip
        async for events in self._turn(request, web_model, session, None, request.messages):
            yield events

    @property
    def _free_capacity(self) -> int:
        return int(self.models.config.get("free_capacity", 1))

    async def _turn(
        self,
        request: ir.Request,
        model: WebModel,
        session: WebSession,
        chat: conversations.Chat | None,
        messages: list[ir.Message],
    ) -> AsyncIterator[ir.Event | ir.Batch]:
        """One turn of a web chat: the answer's events in a batch per read, then what the
        tool adds, then the end and the usage together."""
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
        capacity = self._free_capacity if model.free else account.capacity
        request_id = new_request_id()
        note = _PROMPT_NOTE.get(model.tool.name) if model.tool is not None else None
        inner = inner_request(
            turn.prompt + (note(request) if note is not None else ""),
            model=model,
            language=page.language,
            metadata=chat.metadata() if chat else new_chat_metadata(),
            turn=chat.turn if chat else 0,
            files=files,
            request_id=request_id,
        )
        if model.tool is not None and model.tool.name == "deepsearch":
            research.prepare(inner)
        reader = AnswerReader(model, self.models.guest_ids, request.model)
        sent = self._send(session, model, capacity, _body(page.at, inner), request_id, reader)
        if model.tool is not None and model.tool.name in ("video", "deepsearch"):
            # Held until the answer shows the video or the plan: an account that answers
            # with a refusal instead gives a clear error before anything is sent.
            held = [event async for batch in sent for event in batch]
            follow = self._follow(request, model, session, capacity, reader, model.tool)
            if model.tool.name == "deepsearch":
                held = research.as_reasoning(held)
            shown = {False: 0, True: 0}  # characters of answer and of thoughts
            async for event in after_start(held, follow):
                if isinstance(event, ir.PartEvent) and isinstance(event.part, ir.Text):
                    shown[event.part.thought] += len(event.part.text)
                yield event
            usage = estimate(turn.prompt, shown[False], shown[True])
            yield [ir.Finish("stop"), ir.UsageEvent(usage)]
            return
        prompt_size: ir.Batch = [ir.UsageEvent(estimate(turn.prompt, 0, 0))]
        async for batch in sent:
            # The web app counts no tokens: the prompt's estimate goes with the first words,
            # so a client that reports the prompt's size before the answer (Anthropic's
            # message_start) does not hold the answer back until its end.
            yield batch + prompt_size if prompt_size else batch
            prompt_size = []
        after = _AFTER_TURN.get(model.tool.name) if model.tool is not None else None
        if after is not None:
            async for event in after(session, reader, request):
                yield event
        answer = reader.answer_text()
        if reader.cid and reader.rid and reader.rcid:
            new_chat = conversations.Chat(
                session.credential.id, request.model, reader.cid, reader.rid, reader.rcid,
                reader.context or "", (chat.turn if chat else 0) + 1,
            )  # fmt: skip
            self.chats.remember(request, request.model, answer, new_chat)
        yield [ir.Finish("stop"), ir.UsageEvent(reader.usage(turn.prompt))]

    def _follow(
        self,
        request: ir.Request,
        model: WebModel,
        session: WebSession,
        capacity: int,
        reader: AnswerReader,
        tool: Tool,
    ) -> AsyncIterator[ir.Event]:
        """What comes after a video's or a research's first turn: the video awaited, or the
        plan confirmed and the report awaited. Raises before anything when the answer has
        neither (the account is not entitled)."""
        settings = self.settings
        if tool.name == "video":
            found = video.find(reader.rich)
            if found is None:
                raise cannot_serve(request.model, tool, _refusal(reader))
            return video.rendered(
                session, found,
                interval=settings.web_poll_interval, limit=settings.web_video_timeout,
            )  # fmt: skip
        plan = research.find_plan(reader.rich)
        if plan is None or not reader.cid or not reader.rid or not reader.rcid:
            raise cannot_serve(request.model, tool, _refusal(reader))
        chat = [reader.cid, reader.rid, reader.rcid, None, None, None, None, None, None,
                reader.context or ""]  # fmt: skip

        async def confirm(prompt: str) -> AsyncIterator[ir.Event]:
            page, _ = await session.ready()
            request_id = new_request_id()
            inner = inner_request(
                prompt, model=model, language=page.language, metadata=chat, turn=1,
                files=None, request_id=request_id,
            )  # fmt: skip
            research.prepare(inner)
            answer = AnswerReader(model, self.models.guest_ids, request.model, wordless=True)
            async for batch in self._send(
                session, model, capacity, _body(page.at, inner), request_id, answer
            ):
                for event in batch:
                    yield event

        return research.carried_out(
            session, reader.cid, plan, confirm,
            interval=settings.web_poll_interval, limit=settings.web_research_timeout,
        )  # fmt: skip

    async def _send(
        self,
        session: WebSession,
        model: WebModel,
        capacity: int,
        body: bytes,
        request_id: str,
        reader: AnswerReader,
    ) -> AsyncIterator[ir.Batch]:
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
                    async for batch in reader.read(chunks):
                        yield batch
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


def _body(at: str, inner: list[Any]) -> bytes:
    return urlencode(
        {"at": at, "f.req": orjson.dumps([None, orjson.dumps(inner).decode()]).decode()}
    ).encode()


def _suffix(tool: Tool) -> str:
    return next(suffix for suffix, known in TOOLS.items() if known is tool)


def cannot_serve(model: str, tool: Tool, why: str) -> UpstreamFailed:
    """This account cannot serve a tool: another account may; if none can, the client gets
    this 400 naming the suffix."""
    message = f"{model}: this gemini_official account cannot serve {_suffix(tool)} ({why})"
    return UpstreamFailed(
        Failure(
            "retry",
            errors.InvalidRequest(message, param="model", code="model_not_available"),
            reason=message,
        )
    )


async def after_start(
    first: list[ir.Event], rest: AsyncIterator[ir.Event]
) -> AsyncIterator[ir.Event]:
    """The first turn's events, then the rest: once the answer has begun, an account failure
    can no longer move the request to another account, so it reaches the client as the
    error it carries."""
    for event in first:
        yield event
    try:
        async for event in rest:
            yield event
    except UpstreamFailed as failed:
        raise failed.failure.error from None


def _refusal(reader: AnswerReader) -> str:
    text = " ".join(reader.answer_text().split())
    return f"the web app answered: {text[:200]!r}" if text else "the web app gave nothing"


def _with_token(body: bytes, at: str) -> bytes:
    form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    form["at"] = at
    return urlencode(form).encode()


class AnswerReader:
    """One answer's frames in, IR events out: text deltas of the chosen candidate, thoughts
    as thought text, and the in-band errors turned into pool outcomes."""

    def __init__(
        self, model: WebModel, guest_ids: frozenset[str], asked: str, wordless: bool = False
    ) -> None:
        self.model = model
        self.guest_ids = guest_ids
        self.asked = asked
        # An answer that may end without words (a research confirmed in a known chat: the
        # work goes on on the server).
        self.wordless = wordless
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
        self.rich: Any = None  # the chosen candidate's latest rich-content block
        self.raw_text = ""  # its text as it came: placeholders say what a tool made
        self._last_payload: Any = None
        # The newest candidate of the read under way: the text is cumulative, so its deltas
        # are taken once a read is done, from the newest frame only.
        self._latest: frames.Candidate | None = None

    async def read(self, chunks: AsyncIterator[Any]) -> AsyncIterator[ir.Batch]:
        """The answer's events, those of one read together."""
        parser = frames.FrameReader()
        try:
            async for chunk in chunks:
                batch, failure = self._batch(parser.feed(chunk))
                # Not kept while the next read is awaited: a read holds the whole text so far.
                del chunk
                if batch:
                    yield batch
                del batch
                if failure is not None:
                    raise failure
        except (UpstreamFailed, UsageLimit, errors.GatewayError):
            raise
        except Exception as exc:  # the transport broke mid-answer
            if self.started:
                raise errors.UpstreamError(
                    f"the Gemini web app stopped mid-answer: {type(exc).__name__}"
                ) from None
            raise transient(f"the Gemini web app stopped: {type(exc).__name__}") from None
        batch, failure = self._batch(parser.end())
        if failure is not None:
            if batch:
                yield batch
            raise failure
        if not self.verified and self.held:
            # No frame said which model answered (an older shape): trust the account status.
            self.verified = True
        if batch := batch + self._release():
            yield batch
        if not self.started and self.wordless and self.code in (None, 1096):
            return
        if not self.started and not self._made_something():
            if self.code == 1096 or self.code is None:
                raise transient("the Gemini web app ended without an answer")
            raise transient(f"the Gemini web app failed (BardErrorInfo {self.code})")
        if not self.done:
            log.info("a web answer ended without its completion mark")

    def _batch(
        self, payloads: list[Any]
    ) -> tuple[ir.Batch, UpstreamFailed | UsageLimit | errors.GatewayError | None]:
        """The events of the payloads of one read. One that fails ends the batch: the events
        before it are kept, and the failure is handed back to be raised once they have been
        passed on."""
        batch: ir.Batch = []
        try:
            for payload in payloads:
                self._payload(payload, batch)
        except (UpstreamFailed, UsageLimit, errors.GatewayError) as failure:
            return batch, failure
        return batch + self._deltas(), None

    def _payload(self, payload: Any, out: ir.Batch) -> None:
        """Reads one payload; what may go out is added to `out` at once, so that it is kept
        when a later entry raises."""
        if payload == self._last_payload:
            return  # the frame before again (a tool or a queue still at work): nothing new
        self._last_payload = payload
        for entry in frames.entries(payload):
            if entry.error_code is not None and entry.error_code != 1096:
                out.extend(self._deltas())  # the words before the error are the client's
                self._error(entry.error_code)
            if entry.body is None:
                continue
            turn = frames.read_body(entry.body, with_model=not self.verified)
            self.cid = turn.cid or self.cid
            self.rid = turn.rid or self.rid
            self.context = turn.context or self.context
            if turn.answered_by and not self.verified:
                out.extend(self._deltas())
                self._verify(turn.answered_by, turn.answered_name)
            if not turn.candidates:
                continue
            candidate = turn.candidates[0]
            self.rcid = candidate.rcid or self.rcid
            self.done = self.done or candidate.done
            self.rich = candidate.rich or self.rich
            self.raw_text = candidate.text or self.raw_text
            if not self.opened:
                self.opened = True
                self.held.append(ir.Start(response_id=self.rid, model_version=self.asked))
            self._latest = candidate

    def _deltas(self) -> list[ir.Event]:
        """The new thoughts and words of the newest frame read, and what may now go out."""
        candidate, self._latest = self._latest, None
        if candidate is not None:
            thought = self.thoughts.delta(candidate.thoughts, candidate.done)
            if thought:
                self.held.append(ir.PartEvent(ir.Text(thought, thought=True)))
            text = self.text.delta(candidate.text, candidate.done)
            if text:
                self.held.append(ir.PartEvent(ir.Text(text)))
        return self._release()

    def _made_something(self) -> bool:
        """An answer with no words of its own can still be one: an image and its placeholder."""
        return self.rich is not None or "googleusercontent.com/" in self.raw_text

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
        if self.model.tool is not None and self.model.tool.selector is not None:
            # A turn of a selected tool may name the tool's own model (Nano Banana makes the
            # images); only a guest's model says the session was lost.
            log.info("a %s turn of %s was answered by %s", self.model.tool.name, self.asked, said)
            self.verified = True
            return
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
        return estimate(prompt, len(self.text.sent), len(self.thoughts.sent))


def estimate(prompt: str, answer_chars: int, thought_chars: int) -> ir.Usage:
    """The web app reports no token counts: an estimate (about four characters a token)."""
    prompt_tokens = max(1, len(prompt) // 4)
    output = max(1, answer_chars // 4) if answer_chars else 0
    thoughts = thought_chars // 4
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
