"""The tolerant frame reader and the answer's text handling, on frames as the web app writes
them (tests/fakes/gemini_web.py `frame`): UTF-16 lengths, any chunking, wrong lengths."""

from __future__ import annotations

import orjson
import pytest

from gemgate.channels.gemini_web import frames
from tests.fakes.gemini_web import frame

BODY = [None, ["c_1", "r_1"], None, None, [["rc_1", ["Hi 🙂 there 𝄞"], None, None, None, None,
        None, None, [2]]]]  # fmt: skip
STREAM = (
    b")]}'\n\n"
    + frame([["wrb.fr", None, orjson.dumps(BODY).decode()]])
    + frame([["di", 12], ["af.httprm", 11, "-1", 3]])
)


def read(chunks: list[bytes]) -> list[object]:
    reader = frames.FrameReader()
    out: list[object] = []
    for chunk in chunks:
        out += reader.feed(chunk)
    return out + reader.end()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_frames_survive_any_chunking_with_astral_characters(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    payloads = read(chunks)
    assert len(payloads) == 2
    [entry] = frames.entries(payloads[0])
    turn = frames.read_body(entry.body)
    assert (turn.cid, turn.rid) == ("c_1", "r_1")
    assert turn.candidates[0].text == "Hi 🙂 there 𝄞" and turn.candidates[0].done


def test_a_wrong_length_is_recovered_by_the_balanced_end() -> None:
    payload = orjson.dumps([["wrb.fr", None, orjson.dumps(BODY).decode()]]).decode()
    # A length counted in code points (the astral characters once each), not UTF-16 units.
    wrong = f"{len(payload) + 2}\n{payload}\n".encode()
    payloads = read([b")]}'\n\n", wrong, frame([["di", 1]])])
    assert [frames.read_body(e.body).candidates[0].text for e in frames.entries(payloads[0])] == [
        "Hi 🙂 there 𝄞"
    ]
    assert len(payloads) == 2


def test_unknown_entries_are_skipped_and_error_codes_read() -> None:
    status = [8, None, [["type.googleapis.com/assistant.boq.bard.application.BardErrorInfo",
              [1037]]]]  # fmt: skip
    payload = [["e", 4, None], ["wrb.fr", None, None, None, None, status], ["di", 9]]
    [entry] = frames.entries(payload)
    assert entry.error_code == 1037 and entry.body is None
    assert frames.error_code([4]) is None  # "queueing", not an error


def test_cumulative_text_becomes_deltas_without_flicker_or_placeholders() -> None:
    diff = frames.TextDiff()
    steps = [
        ("Hello", False),
        ("Hello wor\n```", False),  # a fence shown for one frame only
        ("Hello world &amp; more\nhttp://googleuser", False),
        ("Hello world &amp; more\nhttp://googleusercontent.com/image_generation_content/0\n", True),
    ]
    out = [diff.delta(text, final) for text, final in steps]
    assert "".join(out) == "Hello world & more"
    assert "`" not in "".join(out) and "http" not in "".join(out)


def test_answered_model_is_read_from_body_42() -> None:
    body: list[object] = [None] * 43
    body[42] = ["cf41b0e0dd7d53e5", None, None, "3.5 Flash-Lite", True]
    turn = frames.read_body(body)
    assert (turn.answered_by, turn.answered_name) == ("cf41b0e0dd7d53e5", "3.5 Flash-Lite")


def test_a_length_ending_inside_a_character_is_recovered_while_the_stream_goes_on() -> None:
    payload = orjson.dumps([["wrb.fr", None, orjson.dumps(BODY).decode()]]).decode()
    # Counted up to the middle of the first astral character (two UTF-16 units).
    inside = payload.index("🙂") + 2
    wrong = f"{inside}\n{payload}\n".encode()
    reader = frames.FrameReader()
    early = reader.feed(b")]}'\n\n" + wrong) + reader.feed(frame([["di", 1]])[:2])
    assert [frames.read_body(e.body).candidates[0].text for e in frames.entries(early[0])] == [
        "Hi 🙂 there 𝄞"
    ]


def test_a_large_frame_in_many_pieces_is_read_once_whole() -> None:
    long_text = "Gemini 🙂 " * 40_000
    body = [None, ["c_1", "r_1"], None, None, [["rc_1", [long_text], None, None, None, None,
            None, None, [2]]]]  # fmt: skip
    stream = b")]}'\n\n" + frame([["wrb.fr", None, orjson.dumps(body).decode()]])
    reader = frames.FrameReader()
    pieces = [reader.feed(stream[i : i + 1000]) for i in range(0, len(stream), 1000)]
    assert [len(p) for p in pieces if p] == [1] and reader.end() == []
    [entry] = frames.entries(pieces[-1][0])
    assert frames.read_body(entry.body).candidates[0].text == long_text
