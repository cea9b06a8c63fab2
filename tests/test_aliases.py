"""Aliases with glob patterns, as Claude Code meets them: it asks for dated model names
(`claude-haiku-4-5-20251001`) that an operator maps with one pattern; an exact alias wins over
a pattern, and the most specific pattern over a broader one, whatever their order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from gemgate.routing import Aliases
from tests.conftest import start_gemgate
from tests.fakes.gemini_api import FakeGeminiAPI, Reply
from tests.harness import Gemgate, free_port

# Broadest first on purpose: specificity, not order, decides.
ALIASES = {
    "claude-*": "gemini-2.5-pro",
    "claude-haiku-*": "gemini-2.5-flash",
    "claude-haiku-4-5-20251001": "gemini-2.5-flash-lite",
    "claude-sonnet-4-?-*": "gemini/gemini-3-flash-preview",
}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI
) -> Iterator[Gemgate]:
    gate = start_gemgate(
        Path(tmp_path_factory.mktemp("aliases")),
        fake_gemini,
        {"GEMGATE_ALIASES": json.dumps(ALIASES)},
    )
    gate.client_key = gate.create_key("claude-code")  # type: ignore[attr-defined]
    gate.haiku_key = gate.create_key(  # type: ignore[attr-defined]
        "haiku-only", "--models", "claude-haiku-*,gemini-2.5-flash"
    )
    gate.add_api_key("AIzaFakeKeyAlpha0001")
    gate.start()
    yield gate
    gate.stop()


def claude(gate: Gemgate, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gate.url,
        api_key=key or gate.client_key,  # type: ignore[attr-defined]
        max_retries=0,
        timeout=20,
    )


@pytest.mark.parametrize(
    ("asked", "upstream"),
    [
        ("claude-haiku-4-5-20251001", "gemini-2.5-flash-lite"),  # the exact alias
        ("claude-haiku-4-5", "gemini-2.5-flash"),  # the haiku pattern, not claude-*
        ("claude-3-5-haiku-20241022", "gemini-2.5-pro"),  # only claude-* matches
        ("claude-opus-4-1-20250805", "gemini-2.5-pro"),
        ("claude-sonnet-4-5-20250929", "gemini-3-flash-preview"),  # a channel-pinned target
    ],
)
def test_dated_claude_names_reach_the_aliased_model(
    server: Gemgate, gemini: FakeGeminiAPI, asked: str, upstream: str
) -> None:
    gemini.always(Reply.text("Hello from Gemini"))
    message = claude(server).messages.create(model=asked, max_tokens=64, messages=HI)  # type: ignore[arg-type]
    assert message.content[0].text == "Hello from Gemini"  # type: ignore[union-attr]
    # The client sees the name it asked for.
    assert message.model == asked
    with claude(server).messages.stream(model=asked, max_tokens=64, messages=HI) as stream:  # type: ignore[arg-type]
        assert stream.get_final_text() == "Hello from Gemini"
    counted = claude(server).messages.count_tokens(model=asked, messages=HI)  # type: ignore[arg-type]
    assert counted.input_tokens > 0
    assert [r.path for r in gemini.requests] == [
        f"/v1beta/models/{upstream}:generateContent",
        f"/v1beta/models/{upstream}:streamGenerateContent",
        f"/v1beta/models/{upstream}:countTokens",
    ]


def test_a_name_no_alias_matches_is_still_unknown(server: Gemgate, gemini: FakeGeminiAPI) -> None:
    # A pattern's * stays within the name: "claude-*" does not take "gpt-4o".
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude(server).messages.create(model="gpt-4o", max_tokens=8, messages=HI)  # type: ignore[arg-type]
    assert "gpt-4o" in caught.value.body["error"]["message"]  # type: ignore[index]
    assert gemini.requests == []


def test_key_scopes_hold_for_patterns_too(server: Gemgate, gemini: FakeGeminiAPI) -> None:
    key = server.haiku_key  # type: ignore[attr-defined]
    message = claude(server, key).messages.create(
        model="claude-haiku-4-5",
        max_tokens=8,
        messages=HI,  # type: ignore[arg-type]
    )
    assert message.content
    # Asked-for name in scope, but the exact alias leads to a model the key may not use.
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        claude(server, key).messages.create(
            model="claude-haiku-4-5-20251001",
            max_tokens=8,
            messages=HI,  # type: ignore[arg-type]
        )
    assert "gemini-2.5-flash-lite" in caught.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.PermissionDeniedError):
        claude(server, key).messages.create(
            model="claude-opus-4-1",
            max_tokens=8,
            messages=HI,  # type: ignore[arg-type]
        )
    assert [r.path for r in gemini.requests] == ["/v1beta/models/gemini-2.5-flash:generateContent"]


def test_alias_targets_are_checked_when_the_settings_are_read() -> None:
    with pytest.raises(ValueError, match="alias 'x'"):
        Aliases({"x": "gemini-2.5-flash/../gemini-2.5-pro"})
    assert Aliases({"a*": "m1", "ab*": "m2", "abc": "m3"}).target("abd") == "m2"
    assert Aliases({"a*": "m1"}).target("a/b") is None


def test_a_bad_alias_stops_gemgate_with_a_one_line_error(tmp_path: Path) -> None:
    gate = Gemgate(tmp_path, {"GEMGATE_ALIASES": json.dumps({"x": "gemini-2.5-flash/../pro"})})
    result = gate.cli("serve", "--port", str(free_port()), check=False)
    assert result.returncode != 0
    assert (
        "setting GEMGATE_ALIASES: alias 'x' leads to 'gemini-2.5-flash/../pro': not a model name"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
