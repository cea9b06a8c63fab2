"""What goes wrong when opening or reading the store, said so an operator can fix it."""

from __future__ import annotations

from pathlib import Path

from gemgate.errors import InternalError


class StoreError(InternalError):
    """The store cannot be opened or read as configured; the message names the setting."""


class DatabaseMissing(StoreError):
    """A command that only opens a database found none where it looked."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no database at {path}")
        self.path = path
