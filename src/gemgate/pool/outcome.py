"""How an upstream failure affects the pool. Channels classify; the pool acts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gemgate.errors import GatewayError

# retry:      this attempt failed for a passing reason (5xx, timeout); try another credential.
# cooldown:   the credential may not serve this model for `cooldown` seconds (429); try another.
# invalidate: the credential itself is broken (bad key, revoked token); try another.
# final:      the request is at fault (400, 404); no other credential would do better.
Action = Literal["retry", "cooldown", "invalidate", "final"]


@dataclass(frozen=True, slots=True)
class Failure:
    action: Action
    error: GatewayError
    cooldown: float | None = None
    # For the operator: what exactly the upstream said about this credential.
    reason: str = ""
    # A cooldown that rests the whole credential, not only the model asked for.
    whole_credential: bool = False


class UpstreamFailed(Exception):
    """Raised by a channel before its first event; carries the classification."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason or failure.error.message)
        self.failure = failure
