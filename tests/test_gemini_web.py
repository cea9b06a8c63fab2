"""The gemini_official channel through the official SDKs against a running gemgate and the fake
web app (tests/fakes/gemini_web.py)."""

from __future__ import annotations

import asyncio
import base64
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import anthropic
import openai
import pytest
from google.genai import types

from tests.fakes.gemini_web import FAST, GUEST_MODEL, PRO, FakeGeminiWeb, WebReply
from tests.harness import Gemgate
from tests.web_sdk import claude, google, oai

TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNoaPj/HwAGggL/s75RMwAAAABJRU5ErkJggg=="
)
PREFIX = "/gemini_official"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGeminiWeb]:
    with FakeGeminiWeb() as server:
        yield server


@pytest.fixture
def web(fake: FakeGeminiWeb) -> Iterator[FakeGeminiWeb]:
    fake.reset()
    yield fake
    fake.reset()


def start(
    tmp: Path, fake: FakeGeminiWeb, psids: list[str], env: dict[str, str] | None = None
) -> Gemgate:
    server = Gemgate(
        tmp,
        {
            **fake.env(),
            "GEMGATE_WEB_MIN_INTERVAL_MS": "0",
            "GEMGATE_WEB_ROTATE_INTERVAL": "86400",
            **(env or {}),
        },
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    for psid in psids:
        account = fake.accounts.get(psid) or fake.add_account(psid, tier=2)
        server.cli(
            "credentials", "add", "gemini_official", "--psid", psid,
            "--psidts", account.psidts, "--label", psid.rsplit("-", 1)[-1],
        )  # fmt: skip
    return server.start()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeGeminiWeb) -> Iterator[Gemgate]:
    server = start(tmp_path_factory.mktemp("web"), fake, ["g.a000psid-main"])
    yield server
    server.stop()


def header_of(web: FakeGeminiWeb) -> list[object]:
    import json

    return json.loads(web.chats()[-1].headers["x-goog-ext-525001261-jspb"])  # type: ignore[no-any-return]


# -- chat on every front and model ------------------------------------------------------------

MODELS = [
    # name, model id in the header, thinking flag
    ("gemini-3-fast", FAST, 1),
    ("gemini-3-thinking", FAST, 2),
    ("gemini-3-pro", PRO, 1),
    ("gemini-2.5-flash", FAST, 1),
    ("gemini-2.5-pro", PRO, 1),
]


@pytest.mark.parametrize(("model", "model_id", "thinking"), MODELS)
def test_chat_and_stream_on_every_front(
    gateway: Gemgate, web: FakeGeminiWeb, model: str, model_id: str, thinking: int
) -> None:
    expected = "You said: Say hi. Emoji 🙂 & done."
    answer = oai(gateway).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hi"}]
    )
    assert answer.choices[0].message.content == expected
    assert answer.model == model
    header = header_of(web)
    assert (header[4], header[14 + 1]) == (model_id, thinking)
    assert web.chats()[-1].inner[80] == thinking  # type: ignore[index]
    reasoning = (answer.choices[0].message.model_extra or {}).get("reasoning_content")
    assert bool(reasoning) == (thinking == 2)

    # Frames apart in time, as the web app sends them (what arrives in one read goes on as
    # one piece): the answer reaches the client in pieces.
    web.script(WebReply(delay=0.05))
    stream = oai(gateway).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hi"}], stream=True
    )
    chunks = [c for c in stream if c.choices]
    deltas = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert "".join(deltas) == expected and len(deltas) > 1
    # The web app's frames that add nothing (no text yet, thoughts unchanged) send nothing:
    # one role chunk opens the answer, and every later chunk carries something.
    empty = [
        c for c in chunks[1:]
        if not c.choices[0].delta.content and not c.choices[0].finish_reason
        and not (c.choices[0].delta.model_extra or {}).get("reasoning_content")
    ]  # fmt: skip
    assert empty == []

    message = claude(gateway).messages.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "Say hi"}]
    )
    texts = [b.text for b in message.content if b.type == "text"]
    assert texts == [expected]
    assert any(b.type == "thinking" for b in message.content) == (thinking == 2)
    with claude(gateway).messages.stream(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "Say hi"}]
    ) as events:
        assert events.get_final_text() == expected

    gclient = google(gateway)
    reply = gclient.models.generate_content(model=model, contents="Say hi")
    assert reply.text == expected
    chunks = list(gclient.models.generate_content_stream(model=model, contents="Say hi"))
    assert "".join(c.text or "" for c in chunks) == expected


def test_first_words_reach_the_client_before_the_answer_is_complete(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    gate = threading.Event()
    web.script(WebReply(text="one two three four five six", chunks=3, gate=gate))
    stream = oai(gateway).chat.completions.create(
        model="gemini-3-fast", messages=[{"role": "user", "content": "Count"}], stream=True
    )
    first = ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = chunk.choices[0].delta.content
            break
    # The fake holds the rest of the answer until now: gemgate did not wait for it.
    gate.set()
    rest = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert first and (first + rest) == "one two three four five six"


def test_first_words_reach_an_anthropic_client_before_the_answer_is_complete(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    """Anthropic's message_start reports the prompt's size, which the web app never gives:
    gemgate's estimate goes with the first words rather than holding them to the end."""
    gate = threading.Event()
    web.script(WebReply(text="one two three four five six", chunks=3, gate=gate))
    # A gemgate that held the words would wait for the rest forever: the fake gives it after
    # 5 s, and the first words must have come before.
    released = threading.Timer(5, gate.set)
    released.start()
    try:
        with claude(gateway).messages.stream(
            model="gemini-3-fast", max_tokens=100, messages=[{"role": "user", "content": "Count"}]
        ) as events:
            seen = []
            for event in events:
                seen.append(event)
                if event.type == "content_block_delta":
                    break
            early = not gate.is_set()
            gate.set()
            assert events.get_final_text() == "one two three four five six"
    finally:
        released.cancel()
    assert early, "the first words waited for the whole answer"
    start = seen[0]
    assert start.type == "message_start" and start.message.usage.input_tokens > 0


def test_placeholders_stripped_and_usage_estimated(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    web.script(WebReply(text="Here is your picture.", placeholder=True))
    answer = oai(gateway).chat.completions.create(
        model="gemini-3-fast", messages=[{"role": "user", "content": "Draw"}]
    )
    assert answer.choices[0].message.content == "Here is your picture."
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert (answer.usage.model_extra or {}).get("estimated") is True


def test_unprefixed_names_route_to_the_web_channel(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    answer = oai(gateway, prefix="").chat.completions.create(
        model="gemini-3-pro", messages=[{"role": "user", "content": "Route me"}]
    )
    assert answer.choices[0].message.content.startswith("You said: Route me")
    assert header_of(web)[4] == PRO


def test_free_suffix_stale_token_and_model_errors(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    client = oai(gateway)
    client.chat.completions.create(
        model="gemini-3-pro-free", messages=[{"role": "user", "content": "Free?"}]
    )
    assert header_of(web)[11] == 1  # the free tier, on an account whose tier is 2
    client.chat.completions.create(
        model="gemini-3-pro", messages=[{"role": "user", "content": "x"}]
    )
    assert header_of(web)[11] == 2

    web.stale_token("g.a000psid-main")
    answer = client.chat.completions.create(
        model="gemini-3-fast", messages=[{"role": "user", "content": "Still there?"}]
    )
    assert (answer.choices[0].message.content or "").startswith("You said: Still there?")
    assert [r.path.rsplit("/", 1)[-1] for r in web.requests[-4:]] == [
        "StreamGenerate", "app", "batchexecute", "StreamGenerate"
    ]  # fmt: skip

    web.script(WebReply.error_code(1052))
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="gemini-3-fast", messages=[{"role": "user", "content": "Model?"}]
        )
    assert "refused the model gemini-3-fast (BardErrorInfo 1052)" in str(refused.value)

    names = {m.id for m in client.models.list()}
    assert {"gemini-3-fast", "gemini-3-thinking", "gemini-3-pro", "gemini-2.5-pro"} <= names


# -- conversations ------------------------------------------------------------------------------


def test_three_turns_continue_one_web_chat(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    client = oai(gateway)
    messages: list[dict[str, str]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question"},
    ]
    prompts, metadata = [], []
    for question in ("Second question", "Third question", None):
        answer = client.chat.completions.create(model="gemini-3-fast", messages=messages)  # type: ignore[arg-type]
        sent = web.chats()[-1]
        prompts.append(sent.prompt)
        metadata.append(sent.inner[2])  # type: ignore[index]
        messages.append({"role": "assistant", "content": answer.choices[0].message.content or ""})
        if question:
            messages.append({"role": "user", "content": question})
    # The first turn carries the labelled history; the next ones only the new question, in
    # the chat the first one opened.
    assert "System:\nBe brief." in prompts[0] and "User:\nFirst question" in prompts[0]
    assert prompts[1:] == ["Second question", "Third question"]
    assert metadata[0][0] == ""
    assert metadata[1][0] == metadata[2][0] != ""
    assert metadata[2][1] != metadata[1][1]  # each turn replies to the latest answer
    assert len(web.conversations[metadata[1][0]].turns) == 3


def test_edited_history_starts_a_new_chat(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    client = oai(gateway)
    first = client.chat.completions.create(
        model="gemini-3-fast", messages=[{"role": "user", "content": "Hello A"}]
    )
    client.chat.completions.create(
        model="gemini-3-fast",
        messages=[
            {"role": "user", "content": "Hello A"},
            {"role": "assistant", "content": (first.choices[0].message.content or "") + " edited"},
            {"role": "user", "content": "Next"},
        ],
    )
    sent = web.chats()[-1]
    assert sent.inner[2][0] == ""  # type: ignore[index]
    assert "User:\nHello A" in sent.prompt and sent.prompt.endswith("User:\nNext")


def test_long_history_goes_as_a_text_file_and_too_long_is_refused(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    long = "word " * 26_000  # 130,000 bytes: past the web app's silent cut
    answer = oai(gateway).chat.completions.create(
        model="gemini-3-fast",
        messages=[
            {"role": "user", "content": long},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "What was my last question about?"},
        ],
    )
    assert "Files: conversation.txt (text/plain" in (answer.choices[0].message.content or "")
    upload = next(u for u in web.uploads.values() if u.name == "conversation.txt")
    assert upload.data.decode().endswith("User:\nWhat was my last question about?")
    assert len(web.chats()[-1].prompt.encode()) < 1000

    with pytest.raises(openai.BadRequestError) as refused:
        oai(gateway).chat.completions.create(
            model="gemini-3-fast", messages=[{"role": "user", "content": "word " * 40_000}]
        )
    message = refused.value.body["message"]  # type: ignore[index]
    assert "200,0" in message and "150,000" in message


# -- inputs ---------------------------------------------------------------------------------------


def test_files_are_uploaded_and_attached(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    pdf = b"%PDF-1.4 fake pdf for the test"
    gclient = google(gateway)
    reply = gclient.models.generate_content(
        model="gemini-3-fast",
        contents=[
            types.Part.from_bytes(data=TINY_PNG, mime_type="image/png"),
            types.Part.from_bytes(data=pdf, mime_type="application/pdf"),
            "What are these?",
        ],
    )
    assert "file1.png (image/png, 70 bytes)" in (reply.text or "")
    assert "file2.pdf (application/pdf" in (reply.text or "")
    stored = {u.mime: u.data for u in web.uploads.values()}
    assert stored["image/png"] == TINY_PNG and stored["application/pdf"] == pdf
    files = web.chats()[-1].files
    assert [f[0][1] for f in files] == [1, 3]  # kind: image, file

    data_url = "data:image/png;base64," + base64.b64encode(TINY_PNG).decode()
    answer = oai(gateway).chat.completions.create(
        model="gemini-3-fast",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe"},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            }
        ],
    )
    assert "(image/png, 70 bytes)" in (answer.choices[0].message.content or "")


# -- tools ----------------------------------------------------------------------------------------


def test_function_tools_are_refused_and_google_search_is_accepted(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as refused:
        oai(gateway).chat.completions.create(
            model="gemini-3-fast",
            messages=[{"role": "user", "content": "Time?"}],
            tools=[tool],  # type: ignore[list-item]
        )
    assert refused.value.body["message"] == (  # type: ignore[index]
        "function calling is not supported on gemini_official; use /gemini or /gemini_cli"
    )
    with pytest.raises(anthropic.BadRequestError) as refused_claude:
        claude(gateway).messages.create(
            model="gemini-3-fast",
            max_tokens=50,
            messages=[{"role": "user", "content": "Time?"}],
            tools=[{"name": "get_time", "input_schema": {"type": "object"}}],
        )
    assert refused_claude.value.body["error"]["message"].startswith(  # type: ignore[index]
        "function calling is not supported on gemini_official"
    )
    assert web.chats() == []  # refused before any upstream call

    gclient = google(gateway)
    reply = gclient.models.generate_content(
        model="gemini-3-fast",
        contents="News?",
        config=types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())]),
    )
    assert (reply.text or "").startswith("You said: News?")

    with pytest.raises(anthropic.BadRequestError) as counting:
        claude_count = claude(gateway).messages.count_tokens
        claude_count(model="gemini-3-fast", messages=[{"role": "user", "content": "Hi"}])
    assert "token counting is not supported on gemini_official" in str(counting.value)


# -- accounts: errors, guests, rotation, pacing ----------------------------------------------------


def test_usage_limit_and_ip_flag_fail_over_to_a_second_account(
    tmp_path: Path, web: FakeGeminiWeb
) -> None:
    a, b = "g.a000psid-failover-a", "g.a000psid-failover-b"
    server = start(tmp_path, web, [a, b])
    try:
        web.script(WebReply.error_code(1037), psid=a)
        answer = oai(server).chat.completions.create(
            model="gemini-3-fast", messages=[{"role": "user", "content": "Limit?"}]
        )
        assert (answer.choices[0].message.content or "").startswith("You said: Limit?")
        assert [r.psid for r in web.chats()] == [a, b]
        # A 5xx or 1013 moves to the other account before the first byte (round robin: the
        # next request starts with B, the one after with A).
        for failing, error in ((b, WebReply(status=500)), (a, WebReply.error_code(1013))):
            web.reset()
            web.script(error, psid=failing)
            answer = oai(server).chat.completions.create(
                model="gemini-3-pro", messages=[{"role": "user", "content": "Retry?"}]
            )
            assert (answer.choices[0].message.content or "").startswith("You said: Retry?")
            assert [r.psid for r in web.chats()] == [failing, a if failing == b else b]
        web.reset()
        # A is rested for gemini-3-fast only: gemini-3-pro still uses it.
        web.script(WebReply.error_code(1060), psid=b)
        for _ in range(2):
            oai(server).chat.completions.create(
                model="gemini-3-pro", messages=[{"role": "user", "content": "Pro?"}]
            )
        assert b in [r.psid for r in web.chats()] and web.chats()[-1].psid == a
        # B rests for every model now, A for gemini-3-fast: nobody is left for it.
        with pytest.raises(openai.RateLimitError):
            oai(server).chat.completions.create(
                model="gemini-3-fast", messages=[{"role": "user", "content": "Anyone?"}]
            )
        listing = server.cli("credentials", "list").stdout.split("gemini_official")
        a_line = next(part for part in listing if "failover-a" in part or " a " in part[:40])
        b_line = next(part for part in listing if part is not a_line and "cooling" in part)
        assert "cooling down for gemini-3-fast" in a_line and "usage limit" in a_line
        assert "cooling down for *" in b_line
        assert "IP flagged by Google; use a proxy for this account" in b_line
    finally:
        server.stop()


def test_an_expired_account_is_taken_out_and_never_answers_as_a_guest(
    tmp_path: Path, web: FakeGeminiWeb
) -> None:
    a, b = "g.a000psid-expired-a", "g.a000psid-expired-b"
    server = start(tmp_path, web, [a, b])
    try:
        answers = []
        for _ in range(2):  # both accounts have served once: their page values are cached
            answers.append(
                oai(server).chat.completions.create(
                    model="gemini-3-pro", messages=[{"role": "user", "content": "Who?"}]
                )
            )
        web.revoke(a)
        for _ in range(3):
            answers.append(
                oai(server).chat.completions.create(
                    model="gemini-3-pro", messages=[{"role": "user", "content": "Who?"}]
                )
            )
        for answer in answers:
            assert answer.choices[0].message.content == "You said: Who?. Emoji 🙂 & done."
        guest_frames = [r for r in web.chats() if r.psid == a and r is not web.chats()[0]]
        assert guest_frames  # A was asked once more, was served as a guest, and was dropped
        listing = server.cli("credentials", "list").stdout
        line_a = next(line for line in listing.splitlines() if "expired-a" in line or " a " in line)
        assert "signed out: cookies expired or revoked — export them again" in line_a
        assert web.accounts[a].psidts not in listing
        # The answer after A's last attempt came from B, never from the guest model.
        assert all(r.psid == b for r in web.chats()[-3:] if r.psid != a) and GUEST_MODEL
    finally:
        server.stop()


def test_an_expired_timestamp_cookie_is_renewed_not_dropped(
    tmp_path: Path, web: FakeGeminiWeb
) -> None:
    a, b = "g.a000psid-renew-a", "g.a000psid-renew-b"
    server = start(tmp_path, web, [a, b])
    try:
        for _ in range(2):
            oai(server).chat.completions.create(
                model="gemini-3-fast", messages=[{"role": "user", "content": "Hi"}]
            )
        web.expire(a)  # A's 1PSIDTS dies; its session can still be renewed
        for _ in range(3):
            answer = oai(server).chat.completions.create(
                model="gemini-3-fast", messages=[{"role": "user", "content": "Hi"}]
            )
            assert answer.choices[0].message.content == "You said: Hi. Emoji 🙂 & done."
        assert web.rotations == 1
        assert web.chats()[-1].cookies["__Secure-1PSIDTS"] in (
            web.accounts[a].psidts,
            web.accounts[b].psidts,
        )
        assert "invalid" not in server.cli("credentials", "list").stdout
        assert web.chats()[-2:][0].psid != web.chats()[-1].psid  # both serve again
    finally:
        server.stop()


def test_rotated_cookie_is_written_back_and_survives_a_restart(
    tmp_path: Path, web: FakeGeminiWeb
) -> None:
    psid = "g.a000psid-rotation"
    account = web.add_account(psid, tier=2)
    first_psidts = account.psidts
    server = start(tmp_path, web, [psid], {"GEMGATE_WEB_ROTATE_INTERVAL": "0"})
    try:
        oai(server).chat.completions.create(
            model="gemini-3-fast", messages=[{"role": "user", "content": "Rotate"}]
        )
        assert web.rotations >= 1 and account.psidts != first_psidts
        listing = server.cli("credentials", "list").stdout
        assert account.psidts not in listing and first_psidts not in listing
    finally:
        server.stop()
    # Only the newest value works now; the one gemgate was given at first is dead.
    account.issued, account.previous = [account.psidts], None
    web.reset()
    server.env["GEMGATE_WEB_ROTATE_INTERVAL"] = "86400"
    server.start()
    try:
        answer = oai(server).chat.completions.create(
            model="gemini-3-fast", messages=[{"role": "user", "content": "Again"}]
        )
        assert (answer.choices[0].message.content or "").startswith("You said: Again")
        assert web.rotations == 0
        assert web.chats()[-1].cookies["__Secure-1PSIDTS"] == account.psidts
    finally:
        server.stop()


def test_pacing_sends_concurrent_requests_to_different_accounts(
    tmp_path: Path, web: FakeGeminiWeb
) -> None:
    a, b = "g.a000psid-pacing-a", "g.a000psid-pacing-b"
    server = start(tmp_path, web, [a, b], {"GEMGATE_WEB_CONCURRENCY": "1"})
    try:
        gate = threading.Event()
        web.script(WebReply(text="held answer", gate=gate))
        client = oai(server)

        def held() -> str:
            stream = client.chat.completions.create(
                model="gemini-3-fast", messages=[{"role": "user", "content": "Hold"}], stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(held)
            while not web.chats():
                threading.Event().wait(0.02)
            # The first account is busy with its one allowed answer: the second takes this.
            second = client.chat.completions.create(
                model="gemini-3-fast", messages=[{"role": "user", "content": "Meanwhile"}]
            )
            gate.set()
            assert first.result(30) == "held answer"
        assert (second.choices[0].message.content or "").startswith("You said: Meanwhile")
        assert {r.psid for r in web.chats()} == {a, b}
    finally:
        server.stop()


def test_structured_output_is_refused_rather_than_ignored(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    """The web app cannot hold an answer to a JSON schema: say so, never answer in prose."""
    sent_before = len(web.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        oai(gateway).chat.completions.create(
            model="gemini-3-fast",
            messages=[{"role": "user", "content": "A JSON list of three colours"}],
            response_format={"type": "json_object"},
        )
    assert refused.value.body["message"] == (  # type: ignore[index]
        "structured output (a JSON response format) is not supported on gemini_official; "
        "use /gemini or /gemini_cli"
    )
    assert len(web.requests) == sent_before


class ForwardProxy:
    """A plain HTTP forward proxy on 127.0.0.1 that notes the request lines it carries."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0)
        )
        ready.set()
        self._loop.run_forever()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readline()
        target = urlsplit(first.split(b" ")[1].decode())
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, note: bool) -> None:
            data = first if note else b""
            while True:
                if note:  # absolute-form request lines, as a client speaks to a proxy
                    self.lines += re.findall(r"(?:GET|POST) http://\S+", data.decode("latin-1"))
                dst.write(data)
                data = await src.read(65536)
                if not data:
                    break
            dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, True), pipe(up_reader, writer, False), return_exceptions=True
        )

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def test_an_account_with_a_proxy_chats_through_it(tmp_path: Path, web: FakeGeminiWeb) -> None:
    proxy = ForwardProxy()
    proxied, direct = "g.a000psid-proxied", "g.a000psid-direct"
    server = Gemgate(tmp_path, {**web.env(), "GEMGATE_WEB_MIN_INTERVAL_MS": "0"})
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    for psid, options in ((proxied, ["--proxy", proxy.url]), (direct, [])):
        account = web.add_account(psid, tier=2)
        server.cli("credentials", "add", "gemini_official", "--psid", psid,
                   "--psidts", account.psidts, *options)  # fmt: skip
    server.start()
    try:
        for _ in range(4):  # round robin: each account twice
            stream = oai(server).chat.completions.create(
                model="gemini-3-fast", messages=[{"role": "user", "content": "Via?"}], stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == "You said: Via?. Emoji 🙂 & done."
        served = [r.psid for r in web.chats()]
        assert sorted(served) == [direct, direct, proxied, proxied]
        # The proxied account's page and answers went through its proxy, the other's never.
        assert any(line.endswith("/app") for line in proxy.lines)
        assert sum("StreamGenerate" in line for line in proxy.lines) == 2
    finally:
        server.stop()
        proxy.close()


def test_words_before_a_failure_mid_answer_reach_the_client(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    """Two frames of words and then an in-band error, all in one write: the words the client
    could have had are sent before the error that ends the stream."""
    text = "alpha beta gamma delta epsilon zeta"
    web.script(WebReply(text=text, chunks=3, error_after=(2, 1013)))
    seen = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in oai(gateway).chat.completions.create(
            model="gemini-3-fast", messages=[{"role": "user", "content": "go"}], stream=True
        ):
            seen += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert seen == text[: len(text) * 2 // 3]
    assert "mid-answer" in str(caught.value)


def test_a_client_that_leaves_mid_answer_frees_its_upstream_stream(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    for _ in range(3):
        gate = threading.Event()
        web.script(WebReply(text="one two three four five six", chunks=3, gate=gate))
        stream = oai(gateway).chat.completions.create(
            model="gemini-3-fast", messages=[{"role": "user", "content": "Count"}], stream=True
        )
        first = next(c for c in stream if c.choices and c.choices[0].delta.content)
        assert first.choices[0].delta.content
        stream.close()  # the client goes away while the web app still has the rest to send
        gate.set()
    # The transfers that were cut left nothing behind: the next answers come whole.
    for word in ("again", "and again"):
        answer = oai(gateway).chat.completions.create(
            model="gemini-3-fast", messages=[{"role": "user", "content": word}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
        assert text == f"You said: {word}. Emoji 🙂 & done."
