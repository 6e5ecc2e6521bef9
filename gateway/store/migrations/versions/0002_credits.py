"""credits: accounts, reservations, the append-only ledger, per-key spend caps.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("account_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("spend_cap_micro_usd", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("spend_cap_period", sa.String(8), nullable=False, server_default="none"))
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("balance_micro_usd", sa.BigInteger, nullable=False),
        sa.Column("reserved_micro_usd", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance_micro_usd >= 0", name="ck_accounts_balance_nonnegative"),
        sa.CheckConstraint("reserved_micro_usd >= 0", name="ck_accounts_reserved_nonnegative"),
        sa.CheckConstraint("reserved_micro_usd <= balance_micro_usd", name="ck_accounts_reserved_covered"),
    )
    op.create_table(
        "reservations",
        sa.Column("request_id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("amount_micro_usd", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_reservations_state_created", "reservations", ["state", "created_at"])
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(32), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("request_id", sa.String(40), nullable=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("amount_micro_usd", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_micro_usd >= 0", name="ck_ledger_amount_nonnegative"),
    )
    op.create_index("ix_ledger_entries_account_id", "ledger_entries", ["account_id"])
    op.create_table(
        "key_spend",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("period", sa.String(10), primary_key=True),
        sa.Column("spent_micro_usd", sa.BigInteger, nullable=False),
        sa.Column("reserved_micro_usd", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_spend")
    op.drop_index("ix_ledger_entries_account_id", "ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index("ix_reservations_state_created", "reservations")
    op.drop_table("reservations")
    op.drop_table("accounts")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("spend_cap_period")
        batch.drop_column("spend_cap_micro_usd")
        batch.drop_column("account_id")
