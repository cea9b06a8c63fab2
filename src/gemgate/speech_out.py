"""Per request: the PCM a speech model answers with, re-encoded in the format the client asked
for (WAV when it said nothing).

`pcm16` streams out as the PCM arrives. The other formats are files whose headers hold the
length of the whole audio (WAV, FLAC) or are best encoded in one pass (MP3, Opus, AAC), so a
candidate's PCM is gathered and encoded when the candidate finishes; text and every other event
still pass through as they come.
"""

from __future__ import annotations

import base64

from gemgate import ir
from gemgate.audio import PCM_RATE, AudioFormat, Encoder, pcm_rate


class SpeechOut:
    def __init__(self, encoder: Encoder, fmt: AudioFormat, speed: float, stream: bool) -> None:
        self.encoder = encoder
        self.fmt = fmt
        self.speed = speed
        self.passes_through = fmt.name == "pcm16" and speed == 1.0 and stream
        self._pcm: dict[int, bytearray] = {}
        self._rate = PCM_RATE

    def take(self, event: ir.PartEvent, media: ir.Media) -> ir.PartEvent | None:
        """The event to send now for a PCM part, or None while its audio is being gathered."""
        if self.passes_through:
            return ir.PartEvent(ir.Media(self.fmt.mime_type, data=media.data), event.index)
        self._rate = pcm_rate(media.mime_type)
        self._pcm.setdefault(event.index, bytearray()).extend(base64.b64decode(media.data or ""))
        return None

    async def finish(self, index: int | None = None) -> list[ir.PartEvent]:
        """The encoded audio of candidate `index` (of every candidate left, for None)."""
        indexes = [index] if index is not None else sorted(self._pcm)
        out = []
        for i in indexes:
            pcm = self._pcm.pop(i, None)
            if pcm is None:
                continue
            encoded = await self.encoder.encode(bytes(pcm), self.fmt, self._rate, self.speed)
            media = ir.Media(self.fmt.mime_type, data=base64.b64encode(encoded).decode())
            out.append(ir.PartEvent(media, i))
        return out
