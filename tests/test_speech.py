"""Speech out: a TTS model through OpenAI chat completions (message.audio, delta.audio) and
OpenAI's /v1/audio/speech, against the fake Gemini API's PCM; encoded formats are checked by
decoding them with ffmpeg."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from google.genai import types

from tests.conftest import start_gemgate
from tests.fakes.gemini_api import TTS_RATE, FakeGeminiAPI, speech_pcm
from tests.harness import Gemgate
from tests.openai_sdk import client
from tests.test_gemini_native import client as genai_client

TTS = "gemini-2.5-flash-preview-tts"
TEXT = "Welcome to the gateway, where every voice is heard."
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def _speak(gateway: Gemgate, **options: Any) -> Any:
    return client(gateway).chat.completions.create(
        model=TTS, messages=[{"role": "user", "content": TEXT}], **options
    )


def _wav_samples(data: bytes) -> tuple[tuple[int, int, int, int], bytes]:
    """(rate, channels, sample width, frames) and the samples of a WAV file."""
    with wave.open(io.BytesIO(data), "rb") as reader:
        header = (
            reader.getframerate(),
            reader.getnchannels(),
            reader.getsampwidth(),
            reader.getnframes(),
        )
        return header, reader.readframes(reader.getnframes())


def _decode(data: bytes) -> bytes:
    """Any audio file, decoded by ffmpeg to 24 kHz 16-bit mono PCM."""
    done = subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-i", "pipe:0"),
            *("-f", "s16le", "-ac", "1", "-ar", str(TTS_RATE), "pipe:1"),
        ],
        input=data,
        capture_output=True,
        check=True,
    )
    return done.stdout


def test_chat_answers_with_wav_audio(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    answer = _speak(gateway, modalities=["audio"], audio={"voice": "alloy", "format": "wav"})
    audio = answer.choices[0].message.audio
    assert audio is not None and audio.id.startswith("audio_")
    assert audio.transcript == TEXT
    assert answer.choices[0].message.content is None
    header, samples = _wav_samples(base64.b64decode(audio.data))
    pcm = speech_pcm(TEXT)
    assert header == (TTS_RATE, 1, 2, len(pcm) // 2)
    assert samples == pcm
    sent = gemini.requests[-1].body
    assert sent["contents"] == [{"role": "user", "parts": [{"text": TEXT}]}]
    assert sent["generationConfig"]["responseModalities"] == ["AUDIO"]
    # alloy is mapped onto a Gemini voice of the same character.
    voice = sent["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]
    assert voice == {"voiceName": "Achird"}
    assert answer.usage is not None and answer.usage.completion_tokens > 0


def test_streamed_wav_chunks_join_to_the_same_file(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    whole = _speak(gateway, modalities=["audio"], audio={"voice": "Kore", "format": "wav"})
    expected = base64.b64decode(whole.choices[0].message.audio.data)  # type: ignore[union-attr]
    stream = _speak(
        gateway, modalities=["audio"], audio={"voice": "Kore", "format": "wav"}, stream=True
    )
    pieces, transcript, ids = [], "", set()
    for chunk in stream:
        for choice in chunk.choices:
            audio = choice.delta.audio
            if audio is None:
                continue
            ids.add(audio.id)
            if audio.data:
                pieces.append(base64.b64decode(audio.data))
            transcript += audio.transcript or ""
    assert b"".join(pieces) == expected
    assert transcript == TEXT
    assert len(ids) == 1
    # A Gemini voice name goes up as it is.
    config = gemini.requests[-1].body["generationConfig"]
    assert config["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"] == "Kore"


def test_pcm16_streams_as_the_model_speaks(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    stream = _speak(
        gateway, modalities=["audio"], audio={"voice": "echo", "format": "pcm16"}, stream=True
    )
    pieces = [
        base64.b64decode(choice.delta.audio.data)
        for chunk in stream
        for choice in chunk.choices
        if choice.delta.audio is not None and choice.delta.audio.data
    ]
    # The fake speaks in three pieces; each went out as it came.
    assert len(pieces) == 3
    assert b"".join(pieces) == speech_pcm(TEXT)


def test_a_system_message_directs_the_voice(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    answer = client(gateway).chat.completions.create(
        model=TTS,
        messages=[
            {"role": "system", "content": "Say cheerfully"},
            {"role": "user", "content": "earlier turn"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": TEXT},
        ],
    )
    sent = gemini.requests[-1].body
    assert sent["contents"] == [{"role": "user", "parts": [{"text": f"Say cheerfully: {TEXT}"}]}]
    assert "systemInstruction" not in sent
    # Asked for nothing in particular, a chat client still gets playable WAV.
    audio = answer.choices[0].message.audio
    assert audio is not None
    _, samples = _wav_samples(base64.b64decode(audio.data))
    assert samples == speech_pcm(f"Say cheerfully: {TEXT}")


def test_an_unknown_voice_is_a_400_listing_the_voices(
    gateway: Gemgate, gemini: FakeGeminiAPI
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _speak(gateway, modalities=["audio"], audio={"voice": "robot", "format": "wav"})
    body = caught.value.body
    assert body["param"] == "audio.voice"  # type: ignore[index]
    assert "alloy" in body["message"] and "Zephyr" in body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        _speak(gateway, modalities=["audio"], audio={"voice": "alloy", "format": "ogg"})
    assert "wav" in caught.value.body["message"]  # type: ignore[index]
    assert gemini.requests == []


def test_tools_are_refused_for_a_speech_model(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _speak(
            gateway,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    assert "speech model" in caught.value.body["message"]  # type: ignore[index]
    assert gemini.requests == []


@needs_ffmpeg
@pytest.mark.parametrize("fmt", ["mp3", "flac", "opus"])
def test_chat_audio_in_encoded_formats(gateway: Gemgate, gemini: FakeGeminiAPI, fmt: str) -> None:
    answer = _speak(gateway, modalities=["audio"], audio={"voice": "nova", "format": fmt})
    audio = answer.choices[0].message.audio
    assert audio is not None
    decoded = _decode(base64.b64decode(audio.data))
    expected = speech_pcm(TEXT)
    if fmt == "flac":
        assert decoded == expected  # lossless
    else:
        # Lossy codecs pad and trim a few milliseconds.
        assert abs(len(decoded) - len(expected)) < TTS_RATE * 2 // 10


def test_audio_speech_in_wav(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    response = client(gateway).audio.speech.create(
        model=TTS, input=TEXT, voice="shimmer", response_format="wav", instructions="Whisper"
    )
    assert response.response.headers["content-type"] == "audio/wav"
    _, samples = _wav_samples(response.content)
    assert samples == speech_pcm(f"Whisper: {TEXT}")
    voice = gemini.requests[-1].body["generationConfig"]["speechConfig"]["voiceConfig"]
    assert voice == {"prebuiltVoiceConfig": {"voiceName": "Zephyr"}}


@needs_ffmpeg
def test_audio_speech_in_mp3_decodes(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    response = client(gateway, "/gemini").audio.speech.create(model=TTS, input=TEXT, voice="onyx")
    assert response.response.headers["content-type"] == "audio/mpeg"
    decoded = _decode(response.content)
    assert abs(len(decoded) - len(speech_pcm(TEXT))) < TTS_RATE * 2 // 10


@needs_ffmpeg
def test_audio_speech_speed(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    response = client(gateway).audio.speech.create(
        model=TTS, input=TEXT, voice="alloy", response_format="pcm", speed=2.0
    )
    assert response.response.headers["content-type"] == "audio/pcm"
    # Twice as fast: half as long.
    assert abs(len(response.content) - len(speech_pcm(TEXT)) // 2) < TTS_RATE // 10


def test_audio_speech_refusals(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    for options, words in (
        ({"voice": "alloy", "speed": 9}, "speed must be between"),
        ({"voice": "nobody"}, "unknown voice"),
        ({"voice": "alloy", "response_format": "midi"}, "unknown audio format"),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            client(gateway).audio.speech.create(model=TTS, input=TEXT, **options)
        assert words in caught.value.body["message"]  # type: ignore[index]
    assert gemini.requests == []


def test_the_speech_scope(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    key = gateway.create_key("chat-only-speech", "--endpoints", "chat")
    gateway.wait_reload()
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk.audio.speech.create(model=TTS, input=TEXT, voice="alloy")
    assert "speech endpoint" in caught.value.body["message"]  # type: ignore[index]


def test_native_speech_passes_through(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    answer = genai_client(gateway).models.generate_content(
        model=TTS,
        contents=TEXT,
        config=types.GenerateContentConfig(
            response_modalities=["AUDIO"],
            speech_config=types.SpeechConfig(
                voice_config=types.VoiceConfig(
                    prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Leda")
                )
            ),
        ),
    )
    blob = answer.candidates[0].content.parts[0].inline_data  # type: ignore[index,union-attr]
    # Gemini's own PCM, untouched.
    assert blob is not None and blob.mime_type.startswith("audio/L16")
    assert blob.data == speech_pcm(TEXT)


def test_audio_speech_as_server_sent_events(gateway: Gemgate, gemini: FakeGeminiAPI) -> None:
    response = client(gateway).audio.speech.create(
        model=TTS, input=TEXT, voice="coral", response_format="pcm", stream_format="sse"
    )
    assert response.response.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line[len("data: ") :])
        for line in response.content.decode().splitlines()
        if line.startswith("data: ")
    ]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    # pcm goes out as the model speaks: one delta per piece the fake spoke.
    assert len(deltas) == 3
    assert b"".join(base64.b64decode(e["audio"]) for e in deltas) == speech_pcm(TEXT)
    done = events[-1]
    assert done["type"] == "speech.audio.done" and done["usage"]["output_tokens"] > 0


@pytest.fixture(scope="module")
def no_ffmpeg(
    tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiAPI
) -> Iterator[Gemgate]:
    server = start_gemgate(
        Path(tmp_path_factory.mktemp("no-ffmpeg")),
        fake_gemini,
        {"GEMGATE_FFMPEG": "/nonexistent/ffmpeg"},
    )
    server.client_key = server.create_key("tests")  # type: ignore[attr-defined]
    server.add_api_key("AIzaFakeKeyAlpha0001")
    server.start()
    yield server
    server.stop()


def test_without_ffmpeg_encoded_formats_are_a_clear_400(
    no_ffmpeg: Gemgate, gemini: FakeGeminiAPI
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(no_ffmpeg).audio.speech.create(model=TTS, input=TEXT, voice="alloy")
    assert "ffmpeg is not installed" in caught.value.body["message"]  # type: ignore[index]
    assert gemini.requests == []
    # WAV and PCM need nothing but gemgate.
    response = client(no_ffmpeg).audio.speech.create(
        model=TTS, input=TEXT, voice="alloy", response_format="wav"
    )
    assert _wav_samples(response.content)[1] == speech_pcm(TEXT)
