"""Audio out: what Gemini's speech models return (raw 16-bit little-endian mono PCM, 24 kHz)
turned into the format a client asked for.

WAV is the PCM behind a RIFF header, written with the standard library's `wave`; `pcm16` is the
PCM itself. MP3, FLAC, Opus (in Ogg) and AAC are encoded by an `ffmpeg` binary run as a
separate process (found on PATH, or at `GEMGATE_FFMPEG`), so no encoder is linked into gemgate;
without ffmpeg those formats get a 400 that says so. A speed other than 1 also needs ffmpeg (its
`atempo` filter).
"""

from __future__ import annotations

import asyncio
import io
import shutil
import wave
from dataclasses import dataclass

from gemgate.errors import InternalError, InvalidRequest, UpstreamError

PCM_RATE = 24000
SAMPLE_WIDTH = 2
_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class AudioFormat:
    name: str
    mime_type: str
    # ffmpeg output options; None for the formats gemgate writes itself.
    encoder: tuple[str, ...] | None = None


FORMATS: dict[str, AudioFormat] = {
    f.name: f
    for f in (
        AudioFormat("wav", "audio/wav"),
        AudioFormat("pcm16", "audio/pcm"),
        AudioFormat("mp3", "audio/mpeg", ("-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3")),
        AudioFormat("flac", "audio/flac", ("-c:a", "flac", "-f", "flac")),
        AudioFormat("opus", "audio/ogg", ("-c:a", "libopus", "-b:a", "48k", "-f", "ogg")),
        AudioFormat("aac", "audio/aac", ("-c:a", "aac", "-b:a", "96k", "-f", "adts")),
    )
}
# OpenAI's speech endpoint says `pcm` for what chat completions call `pcm16`.
ALIASES = {"pcm": "pcm16"}


def audio_format(name: object, param: str) -> AudioFormat:
    found = FORMATS.get(ALIASES.get(str(name), str(name))) if isinstance(name, str) else None
    if found is None:
        raise InvalidRequest(
            f"unknown audio format {name!r}: use one of {', '.join(FORMATS)}", param=param
        )
    return found


def is_pcm(mime_type: str) -> bool:
    """Whether a part is the raw PCM a Gemini speech model speaks (audio/L16;codec=pcm;...)."""
    lower = mime_type.lower()
    return lower.startswith("audio/l16") or lower.startswith("audio/pcm")


def pcm_rate(mime_type: str) -> int:
    for parameter in mime_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "rate" and value.isdigit():
            return int(value)
    return PCM_RATE


def wav(pcm: bytes, rate: int = PCM_RATE) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(SAMPLE_WIDTH)
        writer.setframerate(rate)
        writer.writeframes(pcm)
    return out.getvalue()


class Encoder:
    """Encodes PCM into the client's format; `ffmpeg` is the binary to use, if any."""

    def __init__(self, ffmpeg: str | None = None) -> None:
        # A configured path that is not an executable counts as no ffmpeg at all.
        self.ffmpeg = shutil.which(ffmpeg or "ffmpeg")

    def check(self, fmt: AudioFormat, speed: float = 1.0) -> None:
        """A 400 before any upstream call when this gateway cannot produce what was asked."""
        if (fmt.encoder is not None or speed != 1.0) and self.ffmpeg is None:
            wanted = f"{fmt.name} audio" if fmt.encoder is not None else "a speed other than 1"
            raise InvalidRequest(
                f"this gateway cannot make {wanted}: ffmpeg is not installed on it; "
                "ask for wav or pcm16",
                param="audio",
            )

    async def encode(
        self, pcm: bytes, fmt: AudioFormat, rate: int = PCM_RATE, speed: float = 1.0
    ) -> bytes:
        if fmt.encoder is None and speed == 1.0:
            return wav(pcm, rate) if fmt.name == "wav" else pcm
        self.check(fmt, speed)
        assert self.ffmpeg is not None
        output = fmt.encoder or ("-f", "s16le", "-c:a", "pcm_s16le")
        tempo = ("-filter:a", _atempo(speed)) if speed != 1.0 else ()
        raw = await self._run(
            "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0", *tempo, *output, "pipe:1",
            data=pcm,
        )  # fmt: skip
        return wav(raw, rate) if fmt.name == "wav" else raw

    async def _run(self, *args: str, data: bytes) -> bytes:
        assert self.ffmpeg is not None
        try:
            process = await asyncio.create_subprocess_exec(
                self.ffmpeg,
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise InternalError(f"could not run ffmpeg to encode the audio: {exc}") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(data), _TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise UpstreamError("encoding the audio took too long") from None
        if process.returncode != 0:
            detail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise UpstreamError(f"ffmpeg could not encode the audio: {detail[0]}")
        return out


def _atempo(speed: float) -> str:
    # One atempo stage takes 0.5 to 100; slower speeds are chains of halvings.
    stages = []
    while speed < 0.5:
        stages.append("atempo=0.5")
        speed /= 0.5
    stages.append(f"atempo={speed:g}")
    return ",".join(stages)
