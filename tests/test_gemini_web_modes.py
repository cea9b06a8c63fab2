"""The web channel's mode suffixes (`-video`, `-deepsearch`, `-canvas`, `-storybook`) through
the official SDKs and raw HTTP against a running gemgate and the fake web app."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from tests.fakes.gemini_web import (
    CONFIRM_PROMPT,
    PLACEHOLDER_TASK,
    REPORT_SOURCES,
    VIDEO_BYTES,
    FakeGeminiWeb,
    WebReply,
)
from tests.harness import Gemgate
from tests.web_sdk import claude, google, oai

PREFIX = "/gemini_official"
PAID = "g.a000psid-modes-paid"
REPORT_TEXT = "# Tidal power\n\nTidal barrages work like dams [cite: 1]. Stream turbines sit in open water [cite: 1, 2]."  # noqa: E501


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGeminiWeb]:
    with FakeGeminiWeb() as server:
        yield server


@pytest.fixture
def web(fake: FakeGeminiWeb) -> Iterator[FakeGeminiWeb]:
    fake.reset()
    fake.video_polls, fake.research_reads = 2, 2
    yield fake
    fake.alternate_layout = False
    fake.reset()


def start(
    tmp: Path, fake: FakeGeminiWeb, accounts: dict[str, dict[str, object]], **env: str
) -> Gemgate:
    server = Gemgate(
        tmp,
        {
            **fake.env(),
            "GEMGATE_WEB_MIN_INTERVAL_MS": "0",
            "GEMGATE_WEB_ROTATE_INTERVAL": "86400",
            "GEMGATE_WEB_POLL_INTERVAL": "0.2",
            **env,
        },
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    for psid, options in accounts.items():
        account = fake.accounts.get(psid) or fake.add_account(
            psid, tier=int(options.get("tier", 2))
        )  # type: ignore[call-overload]
        account.video = bool(options.get("video", True))
        account.research = bool(options.get("research", True))
        server.cli(
            "credentials", "add", "gemini_official", "--psid", psid,
            "--psidts", account.psidts, "--label", psid.rsplit("-", 1)[-1],
        )  # fmt: skip
    return server.start()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake: FakeGeminiWeb) -> Iterator[Gemgate]:
    server = start(tmp_path_factory.mktemp("modes"), fake, {PAID: {"tier": 2}})
    yield server
    server.stop()


def ask(model: str, text: str = "A cat surfing a wave") -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def video_link(content: str) -> str:
    start = content.index("[video](") + len("[video](")
    return content[start : content.index(")", start)]


def post(gateway: Gemgate, body: dict[str, object]) -> tuple[int, bytes]:
    """A raw chat completions POST, to see the stream's bytes as they are."""
    request = urllib.request.Request(
        f"{gateway.url}{PREFIX}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {gateway.client_key}",  # type: ignore[attr-defined]
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def stream_lines(gateway: Gemgate, body: dict[str, object]) -> list[str]:
    status, raw = post(gateway, {**body, "stream": True})
    assert status == 200, raw
    return [line for line in raw.decode().split("\n") if line]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()  # type: ignore[no-any-return]


# -- video ------------------------------------------------------------------------------------


def test_video_is_awaited_and_linked_by_default(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    answer = oai(gateway).chat.completions.create(**ask("gemini-3-fast-video"))  # type: ignore[call-overload]
    content = answer.choices[0].message.content
    assert content.startswith("Your video is being generated.")
    link = video_link(content)
    assert link.startswith(f"{gateway.url}/media/")
    assert fetch(link) == VIDEO_BYTES
    # Two 206 answers while it rendered, then the bytes; every poll with the account's cookies.
    polls = [r for r in web.requests if r.path.startswith("/video/")]
    assert len(polls) == 3 and all(r.psid == PAID for r in polls)
    assert "video" in web.chats()[-1].prompt.lower()


def test_video_as_base64_on_request(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    answer = oai(gateway).chat.completions.create(
        **ask("gemini-3-pro-video"),  # type: ignore[call-overload]
        extra_body={"media_format": "b64_json"},
    )
    content = answer.choices[0].message.content
    data_url = video_link(content)
    assert data_url.startswith("data:video/mp4;base64,")
    assert base64.b64decode(data_url.split(",", 1)[1]) == VIDEO_BYTES


def test_video_stream_stays_alive_with_progress_comments(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    web.video_polls = 4
    lines = stream_lines(gateway, ask("gemini-3-fast-video"))
    progress = [i for i, line in enumerate(lines) if line.startswith(": video rendering")]
    assert len(progress) == 4
    video_at = next(i for i, line in enumerate(lines) if "[video](" in line)
    first_text = next(i for i, line in enumerate(lines) if "Your video" in line)
    # The words came first, the keep-alive comments while it rendered, then the video.
    assert first_text < progress[0] < progress[-1] < video_at
    assert lines[-1] == "data: [DONE]"

    # The SDK skips the comments and gets the whole answer.
    web.video_polls = 2
    stream = oai(gateway).chat.completions.create(**ask("gemini-3-fast-video"), stream=True)  # type: ignore[call-overload]
    content = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert fetch(video_link(content)) == VIDEO_BYTES


def test_video_through_anthropic(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    message = claude(gateway).messages.create(
        model="gemini-3-fast-video",
        max_tokens=100,
        messages=[{"role": "user", "content": "A cat surfing a wave"}],
    )
    text = "".join(b.text for b in message.content if b.type == "text")
    assert fetch(video_link(text)) == VIDEO_BYTES
    web.video_polls = 3
    with claude(gateway).messages.stream(
        model="gemini-3-fast-video",
        max_tokens=100,
        messages=[{"role": "user", "content": "A cat surfing a wave"}],
    ) as events:
        text = events.get_final_text()
    assert fetch(video_link(text)) == VIDEO_BYTES


def test_a_rendering_video_does_not_hold_up_other_requests(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    web.video_polls = 15  # three seconds of rendering at 0.2 s a poll
    done: dict[str, float] = {}

    def make_video() -> None:
        oai(gateway).chat.completions.create(**ask("gemini-3-fast-video"))  # type: ignore[call-overload]
        done["video"] = time.monotonic()

    worker = threading.Thread(target=make_video)
    worker.start()
    deadline = time.monotonic() + 10
    while not any(r.path.startswith("/video/") for r in web.requests):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    answer = oai(gateway).chat.completions.create(**ask("gemini-3-fast", "Say hi"))
    done["chat"] = time.monotonic()
    worker.join(20)
    assert answer.choices[0].message.content.startswith("You said: Say hi")
    assert "video" in done and done["chat"] < done["video"] - 1


# -- deep research ----------------------------------------------------------------------------


def test_deep_research_plan_confirmed_polled_and_reported(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    answer = oai(gateway).chat.completions.create(**ask("gemini-3-pro-deepsearch", "Tidal power?"))  # type: ignore[call-overload]
    message = answer.choices[0].message
    listing = "\n\nSources:\n" + "".join(
        f"{n}. [{title}]({url})\n" for n, (url, title) in enumerate(REPORT_SOURCES, 1)
    )
    assert message.content == REPORT_TEXT + listing
    assert answer.usage is not None and answer.usage.completion_tokens >= len(REPORT_TEXT) // 4
    reasoning = (message.model_extra or {}).get("reasoning_content") or ""
    assert "Research plan: Tidal power" in reasoning and "Find how tidal barrages work" in reasoning
    annotations = message.annotations or []
    assert [a.url_citation.url for a in annotations] == [u for u, _ in REPORT_SOURCES]

    first, second = web.chats()[-2:]
    assert first.inner is not None and second.inner is not None
    assert (first.inner[49], second.inner[49]) == (1, 1)
    assert first.inner[3] != second.inner[3]  # a fresh token for each turn
    assert second.prompt == CONFIRM_PROMPT
    assert second.inner[2][0] == first.inner[2][0] or second.inner[2][0].startswith("c_")
    reads = [r for r in web.requests if r.query.get("rpcids") == "hNvQHb"]
    assert len(reads) == 3  # twice under the placeholder task id, then the report
    cid = json.loads(json.loads(reads[0].form["f.req"])[0][0][1])[0]
    assert cid == second.inner[2][0]


def test_deep_research_streams_progress_then_the_report(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    web.research_reads = 3
    lines = stream_lines(gateway, ask("gemini-3-fast-deepsearch", "Tidal power?"))
    progress = [i for i, line in enumerate(lines) if line.startswith(": deep research running")]
    assert len(progress) == 3
    report_at = next(i for i, line in enumerate(lines) if "Tidal barrages work" in line)
    assert progress[-1] < report_at

    web.research_reads = 1
    stream = oai(gateway).chat.completions.create(
        **ask("gemini-3-fast-deepsearch", "Tidal power?"),
        stream=True,  # type: ignore[call-overload]
    )
    content = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert content.startswith(REPORT_TEXT) and REPORT_SOURCES[1][0] in content


def test_deep_research_through_anthropic(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    message = claude(gateway).messages.create(
        model="gemini-3-pro-deepsearch",
        max_tokens=100,
        messages=[{"role": "user", "content": "Tidal power?"}],
    )
    text = "".join(b.text for b in message.content if b.type == "text")
    thinking = "".join(b.thinking for b in message.content if b.type == "thinking")
    assert text.startswith(REPORT_TEXT)
    assert all(url in text for url, _ in REPORT_SOURCES)
    assert "Research plan" in thinking
    assert PLACEHOLDER_TASK not in text


# -- canvas and storybook ---------------------------------------------------------------------


def test_canvas_answer_without_its_placeholders(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    web.script(
        WebReply(text="Here is your page.\n\nhttp://googleusercontent.com/immersive_entry_chip/0\n")
    )
    answer = oai(gateway).chat.completions.create(**ask("gemini-3-fast-canvas", "A todo app"))  # type: ignore[call-overload]
    assert answer.choices[0].message.content == "Here is your page."
    inner = web.chats()[-1].inner
    assert inner is not None and inner[19] is None and inner[49] is None


def test_storybook_uses_its_gem(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    answer = oai(gateway).chat.completions.create(**ask("gemini-3-pro-storybook", "A robot"))  # type: ignore[call-overload]
    assert answer.choices[0].message.content == (
        "Once upon a time, a small robot learned to paint the sea."
    )
    inner = web.chats()[-1].inner
    assert inner is not None and inner[19] == "storybook"
    stream = oai(gateway).chat.completions.create(
        **ask("gemini-3-pro-storybook", "A robot"),
        stream=True,  # type: ignore[call-overload]
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Once upon a time, a small robot learned to paint the sea."


def test_models_list_the_suffixes(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    names = {m.id for m in oai(gateway).models.list()}
    assert {"gemini-3-fast-video", "gemini-3-pro-deepsearch", "gemini-3-fast-canvas",
            "gemini-3-pro-storybook"} <= names  # fmt: skip


# -- what an account or a model cannot serve --------------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, fake: FakeGeminiWeb) -> Iterator[Gemgate]:
    server = start(
        tmp_path_factory.mktemp("limited"),
        fake,
        {"g.a000psid-modes-free": {"tier": 1}},
        GEMGATE_WEB_VIDEO_TIMEOUT="1",
    )
    yield server
    server.stop()


def test_a_free_account_gets_a_400_naming_the_suffix(limited: Gemgate, web: FakeGeminiWeb) -> None:
    paid = (("gemini-3-fast-video", "-video"), ("gemini-3-pro-deepsearch", "-deepsearch"))
    for model, suffix in paid:
        with pytest.raises(openai.BadRequestError) as raised:
            oai(limited).chat.completions.create(**ask(model))  # type: ignore[call-overload]
        assert suffix in raised.value.message and "paid Gemini plan" in raised.value.message
    assert web.chats() == []  # refused before anything was asked of the web app
    # Canvas and storybook need no plan.
    oai(limited).chat.completions.create(**ask("gemini-3-fast-canvas"))  # type: ignore[call-overload]
    names = {m.id for m in oai(limited).models.list()}
    assert "gemini-3-fast-canvas" in names and "gemini-3-fast-video" not in names


def test_free_model_with_a_paid_suffix_is_refused(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        oai(gateway).chat.completions.create(**ask("gemini-3-fast-video-free"))  # type: ignore[call-overload]
    assert "-video" in raised.value.message and "-free" in raised.value.message
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude(gateway).messages.create(
            model="gemini-3-fast-deepsearch-free", max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
        )  # fmt: skip
    assert "-deepsearch" in refused.value.message


def test_an_account_without_the_entitlement_gets_a_clear_error(
    tmp_path: Path, fake: FakeGeminiWeb, web: FakeGeminiWeb
) -> None:
    server = start(
        tmp_path, fake, {"g.a000psid-modes-nov": {"tier": 2, "video": False, "research": False}}
    )
    try:
        started = time.monotonic()
        with pytest.raises(openai.BadRequestError) as raised:
            oai(server).chat.completions.create(**ask("gemini-3-fast-video"))  # type: ignore[call-overload]
        assert "-video" in raised.value.message and "can't create videos" in raised.value.message
        with pytest.raises(openai.BadRequestError) as raised:
            oai(server).chat.completions.create(**ask("gemini-3-fast-deepsearch"))  # type: ignore[call-overload]
        assert "-deepsearch" in raised.value.message and "isn't available" in raised.value.message
        assert time.monotonic() - started < 10
        # A stream gets the same error as an HTTP error, before any byte of an answer.
        status, raw = post(server, {**ask("gemini-3-fast-video"), "stream": True})
        assert status == 400
        assert json.loads(raw)["error"]["code"] == "model_not_available"
    finally:
        server.stop()


def test_a_video_or_research_that_never_finishes_times_out(
    tmp_path: Path, fake: FakeGeminiWeb, web: FakeGeminiWeb
) -> None:
    web.video_polls, web.research_reads = 1000, 1000
    server = start(
        tmp_path,
        fake,
        {PAID: {"tier": 2}},
        GEMGATE_WEB_VIDEO_TIMEOUT="1",
        GEMGATE_WEB_RESEARCH_TIMEOUT="1",
    )
    try:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as raised:
            oai(server).chat.completions.create(**ask("gemini-3-fast-video"))  # type: ignore[call-overload]
        assert raised.value.status_code == 504
        assert "still rendering" in raised.value.message
        assert time.monotonic() - started < 5
        # Once a stream has begun, the time-out is the stream's last event.
        lines = stream_lines(server, ask("gemini-3-pro-deepsearch", "Tidal?"))
        error = json.loads(lines[-1].removeprefix("data: "))["error"]
        assert "deep research was still running" in error["message"]
        assert any(line.startswith(": deep research running") for line in lines)
    finally:
        server.stop()


def test_research_and_video_through_gemini_native(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    client = google(gateway)
    urls = [url for url, _ in REPORT_SOURCES]
    reply = client.models.generate_content(model="gemini-3-pro-deepsearch", contents="Tidal?")
    assert reply.text == REPORT_TEXT
    grounding = reply.candidates[0].grounding_metadata  # type: ignore[index]
    assert [c.web.uri for c in grounding.grounding_chunks] == urls  # type: ignore[union-attr]

    # The stream's keep-alive (blank lines) does not trouble the SDK; sources come last.
    web.research_reads = 3
    chunks = list(
        client.models.generate_content_stream(model="gemini-3-pro-deepsearch", contents="Tidal?")
    )
    parts = [p for c in chunks if c.candidates and c.candidates[0].content for p in c.candidates[0].content.parts or ()]  # noqa: E501
    assert "".join(p.text or "" for p in parts if not p.thought) == REPORT_TEXT
    last = chunks[-1].candidates[0].grounding_metadata  # type: ignore[index]
    assert [c.web.uri for c in last.grounding_chunks] == urls  # type: ignore[union-attr]

    reply = client.models.generate_content(model="gemini-3-fast-video", contents="A cat surfing")
    files = [p.file_data for p in reply.candidates[0].content.parts if p.file_data]  # type: ignore[index, union-attr]
    assert files and files[0].mime_type == "video/mp4"
    assert fetch(files[0].file_uri) == VIDEO_BYTES  # type: ignore[arg-type]


def test_the_other_layouts_the_reference_allows(gateway: Gemgate, web: FakeGeminiWeb) -> None:
    web.alternate_layout = True
    answer = oai(gateway).chat.completions.create(**ask("gemini-3-fast-video"))  # type: ignore[call-overload]
    assert fetch(video_link(answer.choices[0].message.content)) == VIDEO_BYTES
    answer = oai(gateway).chat.completions.create(**ask("gemini-3-pro-deepsearch", "Tidal?"))  # type: ignore[call-overload]
    message = answer.choices[0].message
    assert message.content.startswith(REPORT_TEXT)
    assert [a.url_citation.url for a in message.annotations or []] == [u for u, _ in REPORT_SOURCES]


def test_video_through_the_responses_api_and_a_bad_media_format(
    gateway: Gemgate, web: FakeGeminiWeb
) -> None:
    response = oai(gateway).responses.create(model="gemini-3-fast-video", input="A cat surfing")
    assert fetch(video_link(response.output_text)) == VIDEO_BYTES
    web.reset()
    with pytest.raises(openai.BadRequestError) as raised:
        oai(gateway).chat.completions.create(
            **ask("gemini-3-fast-video"),  # type: ignore[call-overload]
            extra_body={"media_format": "mp4"},
        )
    assert "media_format" in raised.value.message
    assert web.chats() == []
