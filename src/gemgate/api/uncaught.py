"""The last line of defence: an exception nothing expected still answers in the client's own
error shape, as JSON with the request id, never as a plain-text 500. Decoders refuse bad input
themselves; this is for the bugs they miss, so each one is logged with its traceback, once."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from gemgate.api.fronts import error_format
from gemgate.errors import InternalError
from gemgate.proxy import error_response


def internal_error(scope: Scope) -> Response:
    request_id = scope.get("state", {}).get("request_id", "")
    error = InternalError(
        f"gemgate failed on this request (request id {request_id}); its log has the details"
    )
    return error_response(error_format(scope["path"]), error)


async def starlette_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own last handler answers with this; it then re-raises to the front door."""
    return internal_error(request.scope)
