"""The one exception tree. Every error knows its HTTP status and a neutral `kind`; each client
format turns the kind into its own error type (OpenAI `type`, Anthropic `error.type`, Google
`status`).

    GatewayError
    ├── InvalidRequest        400  invalid_request
    ├── AuthenticationFailed  401  authentication
    ├── PermissionDenied      403  permission
    ├── NotFound              404  not_found
    ├── RequestTooLarge       413  too_large
    ├── RateLimited           429  rate_limit     (retry_after)
    ├── InternalError         500  server
    ├── UpstreamError         502  server         (an upstream answered something unusable)
    ├── Unavailable           503  unavailable    (no usable credential, upstream overloaded)
    └── UpstreamTimeout       504  timeout
"""

from __future__ import annotations

import math
from typing import ClassVar


class GatewayError(Exception):
    status: ClassVar[int] = 500
    kind: ClassVar[str] = "server"
    # Google's own error body (secrets scrubbed), relayed as is to a client that speaks the
    # Gemini API itself: it keeps details such as field violations that our shape would lose.
    google_body: bytes | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status  # type: ignore[misc]
        self.retry_after = retry_after
        self.param = param
        self.code = code

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, math.ceil(self.retry_after)))}


class InvalidRequest(GatewayError):
    status = 400
    kind = "invalid_request"


class AuthenticationFailed(GatewayError):
    status = 401
    kind = "authentication"


class PermissionDenied(GatewayError):
    status = 403
    kind = "permission"


class NotFound(GatewayError):
    status = 404
    kind = "not_found"


class RequestTooLarge(GatewayError):
    status = 413
    kind = "too_large"


class RateLimited(GatewayError):
    status = 429
    kind = "rate_limit"


class InternalError(GatewayError):
    status = 500
    kind = "server"


class UpstreamError(GatewayError):
    status = 502
    kind = "server"


class Unavailable(GatewayError):
    status = 503
    kind = "unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    kind = "timeout"


_BY_STATUS: dict[int, type[GatewayError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    413: RequestTooLarge,
    429: RateLimited,
    500: InternalError,
    503: Unavailable,
    504: UpstreamTimeout,
}


def from_status(status: int, message: str, **kwargs: object) -> GatewayError:
    """The error class that matches an upstream status; other 4xx/5xx keep their number."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(message, **kwargs)  # type: ignore[arg-type]
    if 400 <= status < 500:
        return InvalidRequest(message, status=status, **kwargs)  # type: ignore[arg-type]
    return UpstreamError(message, status=status if status >= 500 else 502, **kwargs)  # type: ignore[arg-type]
