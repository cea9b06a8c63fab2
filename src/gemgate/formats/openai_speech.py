"""OpenAI text to speech: `POST /v1/audio/speech` (`model`, `input`, `voice`,
`response_format`, `speed`, `instructions`, `stream_format`).

The answer is the audio itself, with its content type. `instructions` become the speech model's
direction, as a system message would in chat. With `stream_format: "sse"` the audio comes as
`speech.audio.delta` events and one `speech.audio.done` with the usage.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from gemgate import ir, model_names
from gemgate.audio import FORMATS, audio_format
from gemgate.errors import GatewayError, InvalidRequest, UpstreamError
from gemgate.formats.base import load_json_object, number_field, string_field
from gemgate.formats.openai_chat import OpenAIChat
from gemgate.voices import gemini_voice

MIN_SPEED, MAX_SPEED = 0.25, 4.0


class OpenAISpeech:
    endpoint = "speech"
    stream_media_type = "text/event-stream"

    def decode(self, body: bytes, path_model: str | None = None) -> ir.Request:
        data = load_json_object(body)
        model = model_names.check(data.get("model"))
        text = data.get("input")
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest("input must be a non-empty string", param="input")
        if "voice" not in data:
            raise InvalidRequest("you must provide a voice parameter", param="voice")
        fmt = audio_format(string_field(data, "response_format") or "mp3", "response_format")
        speed = number_field(data, "speed")
        if speed is not None and not MIN_SPEED <= speed <= MAX_SPEED:
            raise InvalidRequest(
                f"speed must be between {MIN_SPEED} and {MAX_SPEED}", param="speed"
            )
        instructions = string_field(data, "instructions")
        stream_format = string_field(data, "stream_format") or "audio"
        if stream_format not in ("audio", "sse"):
            raise InvalidRequest("stream_format must be audio or sse", param="stream_format")
        return ir.Request(
            model=model,
            messages=[ir.Message("user", [ir.Text(text)])],
            system=[ir.Text(instructions)] if instructions else [],
            generation=ir.Generation(
                response_modalities=["AUDIO"], speech=ir.Speech(gemini_voice(data["voice"]))
            ),
            stream=stream_format == "sse",
            client_options={"audio_format": fmt.name, "audio_speed": speed or 1.0},
        )

    def encode(self, response: ir.Response, request: ir.Request) -> bytes:
        return b"".join(base64.b64decode(data) for data in _audio_of(response.candidates[0]))

    def answer_media_type(self, request: ir.Request) -> str:
        return FORMATS[request.client_options["audio_format"]].mime_type

    def stream_encoder(self, request: ir.Request) -> SpeechStream:
        return SpeechStream()

    def error_body(self, error: GatewayError) -> bytes:
        return _OPENAI.error_body(error)


_OPENAI = OpenAIChat()


class SpeechStream:
    """`speech.audio.delta` events as the audio comes, then `speech.audio.done`."""

    def __init__(self) -> None:
        self._usage = ir.Usage()

    def event(self, event: ir.Event) -> bytes:
        if isinstance(event, ir.PartEvent) and isinstance(event.part, ir.Media):
            if event.part.data and event.part.mime_type.startswith("audio/"):
                return _sse({"type": "speech.audio.delta", "audio": event.part.data})
        elif isinstance(event, ir.UsageEvent):
            self._usage = event.usage
        return b""

    def end(self) -> bytes:
        u = self._usage
        usage = {
            "input_tokens": u.prompt_tokens,
            "output_tokens": u.output_tokens,
            "total_tokens": u.total_tokens or u.prompt_tokens + u.output_tokens,
        }
        return _sse({"type": "speech.audio.done", "usage": usage})

    def error(self, error: GatewayError) -> bytes:
        return b"data: " + _OPENAI.error_body(error) + b"\n\n"


def _audio_of(candidate: ir.Candidate) -> list[str]:
    found = [
        p.data
        for p in candidate.parts
        if isinstance(p, ir.Media) and p.data and p.mime_type.startswith("audio/")
    ]
    if not found:
        raise UpstreamError("the model answered without audio: is it a speech model?")
    return found


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
