"""What Code Assist's refusals and errors mean for a gemini_cli account and for the request:
the pool's outcome, and the words the operator reads (Google's own, and what to do).
Protocol: reference/api-protocols.md §B.0, §B.4, §B.6."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import orjson

from gemgate import errors
from gemgate.channels import _gemini_wire as wire
from gemgate.channels.google_oauth import TokenRefused
from gemgate.pool import Credential, Failure, UpstreamFailed

# A 429 that says nothing about when to come back.
DEFAULT_COOLDOWN = 60.0
# A daily quota gone, or a model this account's tier does not have.
LONG_COOLDOWN = 3600.0
# Gemini CLI treats a rate limit asking for a longer wait than this as a lockout.
SHORT_LIMIT = 300.0
LICENCE_NOTE = (
    "Since 2026-06-18 Google serves only licensed Gemini Code Assist Standard/Enterprise "
    "accounts through Gemini CLI's client; personal and Google One AI Pro/Ultra accounts are "
    "refused. Use a licensed account, or a Gemini API key (`gemgate credentials add gemini`)."
)


def ineligible_words(tiers: list[dict[str, Any]]) -> str:
    said = [
        f"{t.get('reasonMessage') or 'not eligible'} ({t.get('reasonCode') or 'UNKNOWN'}, "
        f"{t.get('tierName') or t.get('tierId') or 'tier'}). "
        for t in tiers
    ]
    return ("Google refuses this account: " + "".join(said)) if said else ""


def refused(reason: str) -> UpstreamFailed:
    error = errors.Unavailable(f"a gemini_cli account of this gateway cannot be used: {reason}")
    return UpstreamFailed(Failure("invalidate", error, reason=reason.strip()))


def needs_login(exc: TokenRefused) -> Failure:
    reason = (
        f"needs login: Google refused the refresh token: {exc.description or exc.error} "
        f"({exc.error}). Run `gemgate login gemini_cli` with this account."
    )
    if exc.error == "unauthorized_client":
        reason += (
            " The token may come from another client (Antigravity CLI writes the same "
            "oauth_creds.json)."
        )
    error = errors.Unavailable(
        "a gemini_cli account of this gateway needs a new login: "
        f"{exc.description or exc.error} ({exc.error})"
    )
    return Failure("invalidate", error, reason=reason)


def _help_link(body: bytes) -> str | None:
    """The first Help link of a google.rpc.Status body (where Google says what to do)."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, list) and data:
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("Help"):
            links = detail.get("links") or []
            if links and isinstance(links[0], dict) and isinstance(links[0].get("url"), str):
                return str(links[0]["url"])
    return None


def classify(status: int, body: bytes, credential: Credential, model: str) -> Failure:
    """What an error answer from Code Assist means for this credential and this request."""
    google = wire.parse_google_error(status, body)
    message = scrub(google.message, credential)
    said = f"HTTP {status} {google.status or ''}".strip() + f": {message}"
    if status == 401:
        return _refusal(f"Google refuses its access token even after a refresh: {said}")
    if status == 403:
        link = _help_link(body)
        if "Terms of Service" in message:
            return _refusal(
                f"suspended by Google for violation of its Terms of Service: {message} "
                "Google treats this as final; remove this credential."
            )
        if google.reason == "VALIDATION_REQUIRED":
            return _refusal(
                f"Google wants this account verified: {message} Open {link or 'the link'} "
                f"signed in to this account, then `gemgate credentials enable {credential.id}`."
            )
        if (
            google.reason == "SUBSCRIPTION_REQUIRED"
            or "licen" in message.lower()
            or ("named user" in message)
        ):
            return _refusal(
                f"no Gemini Code Assist licence: {message} ({google.reason or status}). "
                + (f"See {link}. " if link else "")
                + LICENCE_NOTE
            )
        return _refusal(
            f"{said} Check that the account's project has the Gemini for Google Cloud API "
            "(cloudaicompanion.googleapis.com) enabled."
        )
    if status == 429:
        return _rate_limit(google, message, said, model)
    error = errors.from_status(status, message)
    if status >= 500 or status in (408, 499):
        return Failure("retry", error, reason=said)
    if status == 404:
        error.code = "model_not_found"
    return Failure("final", error, reason=said)


def _refusal(reason: str) -> Failure:
    error = errors.Unavailable(f"a gemini_cli account of this gateway cannot be used: {reason}")
    return Failure("invalidate", error, reason=reason)


def _rate_limit(google: wire.GoogleError, message: str, said: str, model: str) -> Failure:
    """§B.6: capacity tries the next account; a short limit cools this model on this account
    for the delay Google named; a spent quota (or a long limit) until Google's reset time."""
    if google.reason in ("MODEL_CAPACITY_EXHAUSTED", "MODEL_CAPACITY_EXCEEDED"):
        error = errors.Unavailable(f"Google has no capacity for {model} right now: {message}")
        return Failure("retry", error, reason=said)
    delay = google.retry_delay
    long = (
        google.reason in ("QUOTA_EXHAUSTED", "INSUFFICIENT_G1_CREDITS_BALANCE")
        or "limit: 0" in message
        or (google.reason == "RATE_LIMIT_EXCEEDED" and (delay is None or delay > SHORT_LIMIT))
    )
    if long:
        reset = _reset_in(google)
        seconds = reset if reset is not None else max(delay or 0.0, LONG_COOLDOWN)
    else:
        seconds = delay if delay is not None else DEFAULT_COOLDOWN
    seconds = max(seconds, 1.0)
    return Failure(
        "cooldown", errors.RateLimited(message, retry_after=seconds), cooldown=seconds, reason=said
    )


def _reset_in(google: wire.GoogleError) -> float | None:
    stamp = google.metadata.get("quotaResetTimeStamp") if google.metadata else None
    if not isinstance(stamp, str):
        return None
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return max(at - time.time(), 1.0)


def scrub(text: str, credential: Credential) -> str:
    """Remove any of the credential's secret values that an upstream echoed back."""
    for key in ("access_token", "refresh_token", "client_secret", "id_token"):
        value = credential.secret.get(key)
        if isinstance(value, str) and len(value) >= 8 and value in text:
            text = text.replace(value, "***")
    return text
