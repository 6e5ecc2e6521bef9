"""The tables. Changed only together with a new Alembic revision under migrations/versions/."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    # "ck" (customer) or "ak" (admin); see gateway.keys.format.KeyKind.
    sa.Column("kind", sa.String(2), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    # HMAC-SHA256(pepper, key) as hex. The pepper lives in Vault, so a database dump alone cannot test guesses.
    sa.Column("key_digest", sa.String(64), nullable=False, unique=True),
    # JSON list of model names this key may use (customer keys only).
    sa.Column("models", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_by", sa.String(64), nullable=True),
)
