"""Persistence behind one small interface: SQLite by default, PostgreSQL by URL."""

from gemgate.store.database import CredentialRecord, KeyRecord, Store
from gemgate.store.errors import DatabaseMissing, StoreError

__all__ = ["CredentialRecord", "DatabaseMissing", "KeyRecord", "Store", "StoreError"]
