"""Quota left on an upstream account, where its channel reports it (only gemini_cli does, through
Code Assist's retrieveUserQuota). Read when an operator asks, never polled: Google's quota calls
are paced by the operator. The last reading of each credential is kept to show on the board."""

from __future__ import annotations

import time
from typing import Any

from gemgate.config import Settings
from gemgate.errors import InvalidRequest
from gemgate.store import CredentialRecord, Store

# Channels whose upstream says how much quota is left, and why the others do not.
REPORTING = frozenset({"gemini_cli"})
SILENT = {
    "gemini": "the Gemini API does not report quota left; its 429s show as cooldowns",
    "gemini_official": "the web app does not report quota left; its refusals show as cooldowns",
}


class QuotaReadings:
    def __init__(self) -> None:
        self._last: dict[int, dict[str, Any]] = {}

    def last(self, cred_id: int) -> dict[str, Any] | None:
        return self._last.get(cred_id)

    async def read(
        self, store: Store, settings: Settings, record: CredentialRecord, channel: Any = None
    ) -> dict[str, Any]:
        """Ask the upstream now. `channel`: the running channel, so that a token it refreshes
        is the one the pool uses."""
        if record.channel not in REPORTING:
            raise InvalidRequest(
                SILENT.get(record.channel, f"the {record.channel} channel does not report quota")
            )
        from gemgate.services import oauth_import

        rows = await oauth_import.quota(store, settings, record, channel)
        reading = {"at": time.time(), **summary(rows)}
        self._last[record.id] = reading
        return reading

    def forget(self, cred_id: int) -> None:
        self._last.pop(cred_id, None)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rows, with the lowest share left in words (what the operator looks for first)."""
    errors = [r["error"] for r in rows if "error" in r]
    if errors:
        return {"models": [], "error": errors[0], "lowest": None}
    models = [r for r in rows if r.get("left") is not None]
    lowest = min(models, key=lambda r: float(r["left"].rstrip("%")), default=None)
    return {"models": rows, "error": None, "lowest": lowest}
