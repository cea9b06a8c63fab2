"""Voices for speech out: Gemini's prebuilt voices, and OpenAI's voice names mapped onto the
closest of them by character (Google describes each voice in a word: Bright, Firm, Warm...).
A Gemini name is taken as it is, in any letter case; anything else is a 400 that lists both."""

from __future__ import annotations

from gemgate.errors import InvalidRequest

# Google's 30 prebuilt voices, each with the word Google uses for its character.
GEMINI_VOICES: dict[str, str] = {
    "Zephyr": "bright",
    "Puck": "upbeat",
    "Charon": "informative",
    "Kore": "firm",
    "Fenrir": "excitable",
    "Leda": "youthful",
    "Orus": "firm",
    "Aoede": "breezy",
    "Callirrhoe": "easy-going",
    "Autonoe": "bright",
    "Enceladus": "breathy",
    "Iapetus": "clear",
    "Umbriel": "easy-going",
    "Algieba": "smooth",
    "Despina": "smooth",
    "Erinome": "clear",
    "Algenib": "gravelly",
    "Rasalgethi": "informative",
    "Laomedeia": "upbeat",
    "Achernar": "soft",
    "Alnilam": "firm",
    "Schedar": "even",
    "Gacrux": "mature",
    "Pulcherrima": "forward",
    "Achird": "friendly",
    "Zubenelgenubi": "casual",
    "Vindemiatrix": "gentle",
    "Sadachbia": "lively",
    "Sadaltager": "knowledgeable",
    "Sulafat": "warm",
}
# OpenAI's built-in voices → the Gemini voice closest in character.
OPENAI_VOICES: dict[str, str] = {
    "alloy": "Achird",  # neutral, friendly
    "ash": "Orus",  # firm, low
    "ballad": "Algieba",  # smooth
    "coral": "Aoede",  # breezy, warm
    "echo": "Charon",  # informative, male
    "fable": "Sadaltager",  # a storyteller's knowing voice
    "nova": "Leda",  # youthful, bright
    "onyx": "Algenib",  # deep, gravelly
    "sage": "Vindemiatrix",  # calm, gentle
    "shimmer": "Zephyr",  # bright
    "verse": "Puck",  # upbeat, expressive
    "marin": "Sulafat",  # warm
    "cedar": "Gacrux",  # mature
}
_BY_LOWER = {name.lower(): name for name in GEMINI_VOICES}


def gemini_voice(name: object, param: str = "voice") -> str:
    """The Gemini voice for a client's voice name, or a 400 listing the valid ones."""
    if isinstance(name, dict) and isinstance(name.get("id"), str):
        name = name["id"]  # OpenAI's custom-voice form, {"id": ...}
    if isinstance(name, str):
        lower = name.strip().lower()
        if lower in OPENAI_VOICES:
            return OPENAI_VOICES[lower]
        if lower in _BY_LOWER:
            return _BY_LOWER[lower]
    raise InvalidRequest(
        f"unknown voice {name!r}: use one of OpenAI's ({', '.join(OPENAI_VOICES)}) or one of "
        f"Gemini's ({', '.join(GEMINI_VOICES)})",
        param=param,
    )
