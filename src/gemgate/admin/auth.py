"""Who may use the admin API and pages: the holder of the admin token.

The token is `GEMGATE_ADMIN_TOKEN`, or, when that is unset, one made on the first start whose
SHA-256 hash is kept in the data folder (the token itself is printed once). The API takes the
token as a bearer token. The pages trade it for a session cookie (HTTP-only, SameSite=Strict,
signed, expiring), and every form carries a CSRF token tied to that session. Sessions and CSRF
tokens are signed with a key derived from the token's hash: a new admin token ends every
session."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from gemgate.config import Settings

TOKEN_FILE = "admin-token.sha256"
SESSION_COOKIE = "gemgate_admin"
LOGIN_COOKIE = "gemgate_login"
SESSION_SECONDS = 12 * 3600


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_path(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE


def ensure_token(settings: Settings) -> str | None:
    """Make sure an admin token exists. Returns a newly made token (to be shown once), or None
    when one was configured or made before."""
    if settings.admin_token:
        return None
    path = token_path(settings)
    if path.is_file() and path.read_text().strip():
        return None
    token = "gga-" + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Only the hash is kept, readable by its owner alone.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(_hash(token) + "\n")
    return token


class AdminAuth:
    def __init__(self, token_hash: str | None) -> None:
        self.token_hash = token_hash
        self.throttle = LoginThrottle()
        self._key = hmac.new(
            (token_hash or secrets.token_hex(32)).encode(), b"gemgate admin session", "sha256"
        ).digest()

    @classmethod
    def from_settings(cls, settings: Settings) -> AdminAuth:
        if settings.admin_token:
            return cls(_hash(settings.admin_token.get_secret_value()))
        path = token_path(settings)
        stored = path.read_text().strip() if path.is_file() else ""
        return cls(stored or None)

    @property
    def configured(self) -> bool:
        return self.token_hash is not None

    def check_token(self, given: str | None) -> bool:
        if not given or self.token_hash is None:
            return False
        return hmac.compare_digest(_hash(given.strip()), self.token_hash)

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(16)

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), "sha256").hexdigest()

    # -- sessions (pages) -----------------------------------------------------------------

    def new_session(self, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + SESSION_SECONDS)
        body = f"{expires}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign('session:' + body)}"

    def session(self, cookie: str | None, now: float | None = None) -> str | None:
        """The session id of a valid, unexpired session cookie, else None."""
        if not cookie or self.token_hash is None:
            return None
        body, _, signature = cookie.rpartition(".")
        expires, _, nonce = body.partition(".")
        if not (expires.isdigit() and nonce and signature):
            return None
        if not hmac.compare_digest(signature, self._sign("session:" + body)):
            return None
        if int(expires) < (time.time() if now is None else now):
            return None
        return body

    def csrf(self, session: str) -> str:
        """The CSRF token every form of this session must send back."""
        return self._sign("csrf:" + session)[:32]

    def check_csrf(self, session: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf(session), str(given))


class LoginThrottle:
    """Wrong admin tokens, counted per client address: after `limit` failures within `window`
    seconds that address is refused (429) until the oldest of them is out of the window, so
    the token cannot be guessed at speed. A right token is never counted."""

    def __init__(
        self, limit: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}

    def wait(self, address: str) -> float:
        """Seconds until this address may try again; 0 when it may now."""
        failures = self._recent(address)
        if len(failures) < self.limit:
            return 0.0
        return max(1.0, failures[0] + self.window - self.clock())

    @property
    def tracked(self) -> int:
        """How many addresses have failures remembered."""
        return len(self._failures)

    def failed(self, address: str) -> None:
        now = self.clock()
        if len(self._failures) > 10_000:
            # Bounded memory under a spray from many addresses: forget the idle ones.
            for key in [k for k, v in self._failures.items() if v[-1] <= now - self.window]:
                del self._failures[key]
        self._failures.setdefault(address, deque(maxlen=self.limit)).append(now)

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.get(address)
        if failures is None:
            return deque()
        cutoff = self.clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures
