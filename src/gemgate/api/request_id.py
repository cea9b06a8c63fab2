"""Every response carries a request id, the client's own when it sent one."""

from __future__ import annotations

from contextvars import ContextVar

from gemgate.ids import new_id

# The request being served, for log lines and error records made far from the request object.
CURRENT: ContextVar[str | None] = ContextVar("request_id", default=None)


def request_id(given: bytes | None) -> bytes:
    """The client's id (bounded), else a new one."""
    return given[:64] if given else b"req_" + new_id().encode()


def id_headers(value: bytes) -> list[tuple[bytes, bytes]]:
    # `request-id` is the name Anthropic's clients read (and show in errors).
    return [(b"x-request-id", value), (b"request-id", value)]
