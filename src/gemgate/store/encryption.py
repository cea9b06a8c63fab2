"""Upstream secrets at rest: sealed with a key kept apart from the database.

The key is `GEMGATE_SECRET_KEY`, or else a key file (`GEMGATE_SECRET_KEY_FILE`, by default
`secret.key` in the data folder) that `serve` creates, readable by its owner only, the first
time it opens a database that has no sealed secrets yet. Fernet (AES with an HMAC) is the
well-kept, misuse-resistant choice: a wrong key or a tampered row fails loudly, never silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from gemgate.store.errors import StoreError

GENERATE = (
    "python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)
# Sealed in the database next to the secrets, so a wrong key is caught on open, not on use.
KEY_CHECK = b"gemgate secret key check"


class SecretKeySource:
    """Where the key comes from, and how to say so in an error."""

    def __init__(self, value: str | None, file: Path) -> None:
        self.value = value
        self.file = file

    def describe(self) -> str:
        return "GEMGATE_SECRET_KEY" if self.value else f"the key file {self.file}"

    def load(self) -> bytes | None:
        if self.value:
            return _checked(self.value.strip().encode(), "GEMGATE_SECRET_KEY")
        try:
            text = self.file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(
                f"cannot read the key file {self.file} (GEMGATE_SECRET_KEY_FILE): {exc.strerror}"
            ) from None
        return _checked(text.strip(), f"the key file {self.file} (GEMGATE_SECRET_KEY_FILE)")

    def create(self) -> bytes:
        key = Fernet.generate_key()
        self.file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once must not each write their own key.
        try:
            fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            loaded = self.load()
            assert loaded is not None
            return loaded
        with os.fdopen(fd, "wb") as out:
            out.write(key + b"\n")
        return key

    def missing(self, sealed: bool) -> StoreError:
        if sealed:
            return StoreError(
                f"this database's secrets are sealed with a key that is not here: no "
                f"GEMGATE_SECRET_KEY and no key file at {self.file}; set GEMGATE_SECRET_KEY, or "
                f"copy the key file from the instance that sealed them (GEMGATE_SECRET_KEY_FILE "
                f"says where it is read)"
            )
        return StoreError(
            f"no secret key: GEMGATE_SECRET_KEY is unset and there is no key file at "
            f"{self.file} (GEMGATE_SECRET_KEY_FILE); `gemgate serve` or `gemgate db migrate` "
            f"creates one"
        )


def _checked(key: bytes, where: str) -> bytes:
    try:
        Fernet(key)
    except ValueError:
        raise StoreError(
            f"{where} is not a valid key: it must be 32 random bytes in url-safe base64 "
            f"(44 characters); make one with {GENERATE}"
        ) from None
    return key


class SecretBox:
    """Seals a credential's secret dict into a token and opens it again."""

    def __init__(self, key: bytes, source: str) -> None:
        self._fernet = Fernet(key)
        self._source = source

    def seal(self, secret: dict[str, Any]) -> str:
        return self._fernet.encrypt(orjson.dumps(secret)).decode()

    def open(self, token: str) -> dict[str, Any]:
        try:
            value = orjson.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise self.wrong_key() from None
        if not isinstance(value, dict):
            raise StoreError("a stored credential secret is not an object")
        return value

    def key_check(self) -> str:
        return self._fernet.encrypt(KEY_CHECK).decode()

    def verify(self, check: str) -> None:
        try:
            ok = self._fernet.decrypt(check.encode()) == KEY_CHECK
        except InvalidToken:
            ok = False
        if not ok:
            raise self.wrong_key()

    def wrong_key(self) -> StoreError:
        return StoreError(
            f"the secret key from {self._source} is not the one this database's secrets were "
            f"sealed with; set GEMGATE_SECRET_KEY (or GEMGATE_SECRET_KEY_FILE) to that key"
        )
