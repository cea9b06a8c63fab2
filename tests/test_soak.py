"""A bounded soak: a few thousand requests through real clients while the upstream fails at
random (503s, 429s, connections cut in the middle of an event). Every request must end, in
time, with either the right answer or a well-formed error in its client's own shape: none
hung, none lost, none wrong."""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import API_KEYS, start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate

REQUESTS = 1500
CONCURRENCY = 12


@pytest.fixture
def chaotic(tmp_path: Path, gemini: FakeGeminiAPI) -> Iterator[Gemgate]:
    dice = random.Random(7)
    lock = threading.Lock()

    def respond(model: str, body: dict[str, Any]) -> Reply:
        nonce = body["contents"][-1]["parts"][0]["text"]
        with lock:
            roll = dice.random()
        if roll < 0.10:
            return Reply.error(503)
        if roll < 0.15:
            # A short cooldown: the longer it is, the more a fast gateway's requests find every
            # key cooling at once, and the share of right answers would measure speed, not
            # failover.
            return Reply.error(429, retry_delay="0.05s")
        if roll < 0.22:
            return Reply.cut_mid_event(1)
        return Reply.text(f"echo {nonce}", chunks=3)

    gemini.respond = respond
    server = start_gemgate(tmp_path, gemini)
    server.client_key = server.create_key("soak")  # type: ignore[attr-defined]
    for api_key in sorted(API_KEYS):
        server.add_api_key(api_key)
    server.start()
    yield server
    gemini.respond = None
    server.stop()


def _openai(server: Gemgate, nonce: str, stream: bool) -> str:
    sdk = openai.OpenAI(
        base_url=server.url + "/v1",
        api_key=server.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=15,
    )
    messages: Any = [{"role": "user", "content": nonce}]
    try:
        if stream:
            text = ""
            for chunk in sdk.chat.completions.create(
                model="gemini-2.5-flash", messages=messages, stream=True
            ):
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
        else:
            answer = sdk.chat.completions.create(model="gemini-2.5-flash", messages=messages)
            text = answer.choices[0].message.content or ""
    except openai.APITimeoutError:
        return "hung"
    except openai.APIConnectionError:
        return "lost"
    except openai.APIStatusError as error:
        # A well-formed OpenAI error with one of the statuses the faults explain.
        body = error.body if isinstance(error.body, dict) else {}
        ok = error.status_code in (429, 502, 503, 504) and "message" in body
        return "error" if ok else "wrong"
    except openai.APIError as error:
        # An in-stream error event: the stream broke after text was sent.
        return "error" if stream and error.message else "wrong"
    return "right" if text == f"echo {nonce}" else "wrong"


def _native(server: Gemgate, nonce: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    body = {"contents": [{"role": "user", "parts": [{"text": nonce}]}]}
    try:
        conn.request(
            "POST",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            body=json.dumps(body),
            headers={"x-goog-api-key": server.client_key},  # type: ignore[attr-defined]
        )
        response = conn.getresponse()
        raw = response.read()
    except TimeoutError:
        return "hung"
    except (OSError, http.client.HTTPException):
        return "lost"
    finally:
        conn.close()
    if response.status != 200:
        error = json.loads(raw).get("error", {})
        return "error" if response.status in (429, 502, 503, 504) and error else "wrong"
    try:
        events = [json.loads(e[6:]) for e in raw.split(b"\r\n\r\n") if e.strip()]
    except ValueError:
        return "wrong"  # half an event reached the client
    if "error" in events[-1]:
        return "error"
    text = "".join(e["candidates"][0]["content"]["parts"][0].get("text", "") for e in events)
    return "right" if text == f"echo {nonce}" else "wrong"


def test_soak_under_injected_faults_nothing_hung_lost_or_wrong(chaotic: Gemgate) -> None:
    def one(i: int) -> str:
        nonce = f"n{i}"
        kind = i % 3
        if kind == 0:
            return _openai(chaotic, nonce, stream=False)
        if kind == 1:
            return _openai(chaotic, nonce, stream=True)
        return _native(chaotic, nonce)

    with ThreadPoolExecutor(CONCURRENCY) as workers:
        outcomes = Counter(workers.map(one, range(REQUESTS)))
    print(f"soak: {dict(outcomes)}")
    assert outcomes["hung"] == 0 and outcomes["lost"] == 0 and outcomes["wrong"] == 0
    # Failover turns most upstream faults into right answers.
    assert outcomes["right"] > REQUESTS * 0.8
    assert "Traceback" not in chaotic.log()
