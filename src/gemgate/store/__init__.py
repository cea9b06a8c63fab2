"""Persistence behind one small interface: SQLite by default, PostgreSQL by URL."""

from gemgate.store.database import CredentialRecord, KeyRecord, Store

__all__ = ["CredentialRecord", "KeyRecord", "Store"]
