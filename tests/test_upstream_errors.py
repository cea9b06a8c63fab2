"""Upstream error bodies that are not Google's JSON (a proxy's HTML page, a crashed server's
text) reach each client as an error in its own shape, with the upstream status and a short,
readable excerpt: on the IR path and on the Gemini-native relay alike."""

from __future__ import annotations

import http.client
import json
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate
from tests.openai_sdk import client as openai_client

NGINX = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
    "</body>\r\n</html>\r\n"
)
ENVOY = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
PORTAL = "<html><body><h1>Access denied</h1><p>" + "Your network policy blocks this. " * 40
HI = [{"role": "user", "content": "hi"}]


def anthropic_client(gateway: Gemgate) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.url,
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=20,
    )


def native(gateway: Gemgate, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)
    conn.request(
        "POST",
        path,
        body=json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode(),
        headers={
            "content-type": "application/json",
            "x-goog-api-key": gateway.client_key,  # type: ignore[attr-defined]
        },
    )
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, response.getheader("content-type") or "", body


def assert_wrapped(message: str, status: int, excerpt: str) -> None:
    assert f"upstream answered HTTP {status}, not with a Google error" in message
    assert excerpt in message
    assert "<" not in message and ">" not in message


@pytest.mark.parametrize("stream", [False, True])
def test_openai_client_gets_a_proxy_page_as_an_openai_error(
    gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool
) -> None:
    gemini.always(Reply.raw(502, NGINX))
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(gateway).chat.completions.create(
            model="gemini-2.5-flash",
            messages=HI,  # type: ignore[arg-type]
            stream=stream,
        )
    assert caught.value.status_code == 502
    assert caught.value.response.headers["content-type"] == "application/json"
    body: Any = caught.value.body
    assert body["type"] == "server_error"
    assert_wrapped(body["message"], 502, "502 Bad Gateway 502 Bad Gateway nginx/1.25.3")


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_client_gets_a_crashed_upstream_as_an_anthropic_error(
    gateway: Gemgate, gemini: FakeGeminiAPI, stream: bool
) -> None:
    gemini.always(Reply.raw(503, ENVOY, "text/plain"))
    client = anthropic_client(gateway)
    with pytest.raises(anthropic.APIStatusError) as caught:
        if stream:
            with client.messages.stream(
                model="gemini-2.5-flash",
                max_tokens=10,
                messages=HI,  # type: ignore[arg-type]
            ) as events:
                events.get_final_message()
        else:
            client.messages.create(model="gemini-2.5-flash", max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert caught.value.status_code == 503
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
    assert_wrapped(body["error"]["message"], 503, ENVOY)


@pytest.mark.parametrize(
    "action",
    ["generateContent", "streamGenerateContent?alt=sse", "streamGenerateContent"],
)
def test_native_relay_wraps_a_proxy_page_in_googles_shape(
    gateway: Gemgate, gemini: FakeGeminiAPI, action: str
) -> None:
    gemini.always(Reply.raw(502, NGINX))
    status, content_type, body = native(gateway, f"/v1beta/models/gemini-2.5-flash:{action}")
    assert status == 502
    assert content_type == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == 502
    assert_wrapped(error["message"], 502, "502 Bad Gateway")


def test_google_sdk_sees_a_long_page_as_a_short_excerpt(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    gemini.always(Reply.raw(500, PORTAL))
    sdk = genai.Client(
        api_key=gateway.client_key,  # type: ignore[attr-defined]
        http_options=types.HttpOptions(base_url=gateway.url, api_version="v1beta"),
    )
    with pytest.raises(genai_errors.ServerError) as caught:
        sdk.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert caught.value.code == 500
    message = caught.value.message or ""
    assert_wrapped(message, 500, "Access denied Your network policy blocks this.")
    assert len(message) < 300


def test_a_proxy_403_page_does_not_disable_the_credential(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    # Google says "your key is bad" in JSON; an HTML 403 is someone else's opinion, so the
    # client hears it and the credential stays in service.
    gemini.script(Reply.raw(403, PORTAL))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        openai_client(gateway).chat.completions.create(model="gemini-2.5-flash", messages=HI)  # type: ignore[arg-type]
    assert_wrapped(caught.value.message, 403, "Access denied")
    answer = openai_client(gateway).chat.completions.create(
        model="gemini-2.5-flash",
        messages=HI,  # type: ignore[arg-type]
    )
    assert answer.choices[0].message.content
    listed = gateway.cli("credentials", "list").stdout
    assert "invalid" not in listed
