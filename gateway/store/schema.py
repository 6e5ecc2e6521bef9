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
    # Customer keys spend from an account; an optional cap limits the key per period (none, daily, monthly).
    sa.Column("account_id", sa.String(32), nullable=True),
    sa.Column("spend_cap_micro_usd", sa.BigInteger, nullable=True),
    sa.Column("spend_cap_period", sa.String(8), nullable=False, server_default="none"),
    # Per-key rate limits (None: the policy's defaults).
    sa.Column("rpm_limit", sa.Integer, nullable=True),
    sa.Column("tpm_limit", sa.Integer, nullable=True),
    # Set when the key was rotated: the id of its successor.
    sa.Column("rotated_to", sa.String(32), nullable=True),
    # A canary: never given to a customer; any use is an alarm.
    sa.Column("honeytoken", sa.Boolean, nullable=False, server_default=sa.false()),
)

# --- credits (integer micro-USD everywhere) -------------------------------------------------------------------

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    # balance == Σ top-ups − Σ settled charges; reserved == Σ open reservations. Both never negative.
    sa.Column("balance_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("reserved_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("balance_micro_usd >= 0", name="ck_accounts_balance_nonnegative"),
    sa.CheckConstraint("reserved_micro_usd >= 0", name="ck_accounts_reserved_nonnegative"),
    sa.CheckConstraint("reserved_micro_usd <= balance_micro_usd", name="ck_accounts_reserved_covered"),
)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("request_id", sa.String(40), primary_key=True),
    sa.Column("account_id", sa.String(32), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
    # The key-cap period the reservation counts against ("" when the key has no cap).
    sa.Column("period", sa.String(10), nullable=False),
    sa.Column("amount_micro_usd", sa.BigInteger, nullable=False),
    # open → settled | released | expired, exactly once (conditional update on state = 'open').
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_reservations_state_created", "state", "created_at"),
)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(32), nullable=False, index=True),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Column("request_id", sa.String(40), nullable=True),
    # topup (+balance), reserve (+reserved), settle (−balance, −reserved), release and expire (−reserved).
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("amount_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(200), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("amount_micro_usd >= 0", name="ck_ledger_amount_nonnegative"),
)

key_spend = sa.Table(
    "key_spend",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("period", sa.String(10), primary_key=True),
    sa.Column("spent_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("reserved_micro_usd", sa.BigInteger, nullable=False),
)

# --- audit (tamper-evident: each entry's MAC covers the previous entry's MAC) ---------------------------------------

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(64), nullable=True),
    sa.Column("reason", sa.String(80), nullable=True),
    sa.Column("request_id", sa.String(40), nullable=True),
    sa.Column("mac", sa.String(64), nullable=False),
    sa.Index("ix_audit_events_event", "event"),
)

# One row: the chain's head (last sequence number and MAC). Appends lock it, so concurrent writers cannot fork the
# chain; verification compares it with the last event, so a truncated tail is caught.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
)

# Alarms raised where the chain cannot be written (a boot that has no Vault login, hence no audit key), waiting for the
# next boot that has the key to move them into the chain (gateway.audit.alarms). Not secrets: when, what kind, and a
# short non-secret detail. A row is unauthenticated until it is chained (threat-model TM-T16).
boot_alarms = sa.Table(
    "boot_alarms",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("detail", sa.String(40), nullable=True),
)
