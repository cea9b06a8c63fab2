"""HTML form bodies (`multipart/form-data`, `application/x-www-form-urlencoded`) read into their
fields, in order, with python-multipart (the parser Starlette uses). The body is already in
memory and within GEMGATE_MAX_BODY_BYTES, so files are kept as bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from gemgate.errors import InvalidRequest


@dataclass(slots=True)
class FormField:
    name: str
    value: bytes
    # Set for file parts: the client's file name and declared type.
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


@dataclass(slots=True)
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: list[bytes] = field(default_factory=list)


def is_form(content_type: str | None) -> bool:
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind in ("multipart/form-data", "application/x-www-form-urlencoded")


def parse(body: bytes, content_type: str) -> list[FormField]:
    kind, options = parse_options_header(content_type)
    if kind == b"application/x-www-form-urlencoded":
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return [FormField(name, value.encode()) for name, value in pairs]
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidRequest("the multipart/form-data body has no boundary in its Content-Type")
    return _multipart(body, boundary)


def _multipart(body: bytes, boundary: bytes) -> list[FormField]:
    parts: list[_Part] = []
    header_name: list[bytes] = []
    header_value: list[bytes] = []

    def on_part_begin() -> None:
        parts.append(_Part())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].data.append(data[start:end])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.append(data[start:end])

    def on_header_end() -> None:
        parts[-1].headers[b"".join(header_name).lower()] = b"".join(header_value)
        header_name.clear()
        header_value.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidRequest(f"the multipart/form-data body is malformed: {exc}") from None
    fields = []
    for part in parts:
        _, disposition = parse_options_header(part.headers.get(b"content-disposition"))
        name = disposition.get(b"name")
        if name is None:
            continue
        filename = disposition.get(b"filename")
        declared = part.headers.get(b"content-type")
        fields.append(
            FormField(
                name.decode("utf-8", "replace"),
                b"".join(part.data),
                filename.decode("utf-8", "replace") if filename is not None else None,
                declared.decode("latin-1") if declared else None,
            )
        )
    return fields
