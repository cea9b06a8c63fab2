"""Table definitions: the single description of what is stored, used by migrations and queries."""

from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)

# One row, bumped by every write that a running server must notice (keys, credentials).
revision = sa.Table(
    "revision",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

client_keys = sa.Table(
    "client_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_hint", sa.String(32), nullable=False),
    sa.Column("channels", sa.JSON, nullable=True),
    sa.Column("models", sa.JSON, nullable=True),
    sa.Column("endpoints", sa.JSON, nullable=True),
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("tpm", sa.Integer, nullable=True),
    sa.Column("quota_tokens", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(32), nullable=False, index=True),
    sa.Column("label", sa.String(200), nullable=False),
    # Channel-specific secret material (API key, OAuth tokens, cookies): a JSON object sealed
    # with the secret key (store/encryption.py), never plain text.
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("proxy", sa.String(500), nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    # "ok" or "invalid"; the reason says what the upstream said, for the operator.
    sa.Column("status", sa.String(16), nullable=False, default="ok"),
    sa.Column("status_reason", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # A removed credential's id is never given again: runtime state and records keyed by id
    # must not pass to a new credential. (PostgreSQL sequences never reuse ids anyway.)
    sqlite_autoincrement=True,
)

# Small facts about the database itself, such as the sealed key check.
store_meta = sa.Table(
    "store_meta",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# A credential resting for one model after a 429: rare events, written off the request path so
# that the CLI and other instances see them. Times are wall-clock (time.time()).
cooldowns = sa.Table(
    "cooldowns",
    metadata,
    sa.Column("credential_id", sa.Integer, primary_key=True),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("until", sa.Float, nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=True),
)

# One row per answered request: what each key used, for quotas, TPM limits and reports.
usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_id", sa.Integer, nullable=False, index=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("endpoint", sa.String(32), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("output_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("thought_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("total_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
)


class UsageRow(NamedTuple):
    """One finished request's usage, in the column order of `usage_records`: rows are handed
    to the database driver as they are."""

    key_id: int
    channel: str
    model: str
    endpoint: str
    status: int
    prompt_tokens: int
    output_tokens: int
    thought_tokens: int
    total_tokens: int
    created_at: float


# Responses API answers kept for `previous_response_id` and `GET /v1/responses/{id}`; each is
# seen only by the key that made it and dropped once `expires_at` has passed.
stored_responses = sa.Table(
    "stored_responses",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("key_id", sa.Integer, nullable=False, index=True),
    # The response object as the client got it; this turn's input and output as input items,
    # and the answer it continued (a conversation is a chain, so no turn is stored twice).
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("turn", sa.Text, nullable=False),
    sa.Column("previous_id", sa.String(100), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)

# Web chats gemgate produced (gemini_official): a conversation's history, hashed, to the web
# chat that can continue it on the same account, until `expires_at`.
web_chats = sa.Table(
    "web_chats",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("credential_id", sa.Integer, nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("cid", sa.String(200), nullable=False),
    sa.Column("rid", sa.String(200), nullable=False),
    sa.Column("rcid", sa.String(200), nullable=False),
    sa.Column("context", sa.Text, nullable=True),
    sa.Column("turn", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)
