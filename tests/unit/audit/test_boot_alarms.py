"""Pending boot alarms move into the audit chain once, whole: never lost (one transaction), never doubled (two
replicas at once); on SQLite and Postgres.

threat-model: TM-T16
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from gateway.audit.alarms import EVENT, WRAPPING_TOKEN_UNUSABLE, chain_pending, raise_pending
from gateway.audit.log import GENESIS, AuditHeadMissing, AuditLog
from gateway.store.engine import open_store
from tests.support import empty_audit_store, together

KEY = b"k" * 16 + b"audit-key-for-the-alarm-tests"


@pytest.fixture()
def engine(store_url: str) -> Iterator[sa.Engine]:
    yield from empty_audit_store(store_url)


def _pending(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM boot_alarms")).scalar_one())


def test_a_pending_alarm_becomes_one_chained_entry_with_its_time_and_kind(engine: sa.Engine) -> None:
    audit = AuditLog(engine, KEY)
    audit.record("key_created", actor="cli", subject="key_1")
    raised = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    raise_pending(engine, WRAPPING_TOKEN_UNUSABLE, "creation_path=unknown stage=lookup", at=raised)
    raise_pending(engine, WRAPPING_TOKEN_UNUSABLE, "creation_path=unknown stage=unwrap")
    assert _pending(engine) == 2
    assert chain_pending(engine, audit) == 2
    assert _pending(engine) == 0
    entries = audit.list(event=EVENT)
    assert [e["subject"] for e in entries] == [WRAPPING_TOKEN_UNUSABLE] * 2
    # Oldest first: the first raised is the lower sequence number.
    assert entries[1]["reason"] == "raised_at=2026-03-04T05:06:07.891011+00:00 creation_path=unknown stage=lookup"
    assert entries[0]["reason"].endswith(" creation_path=unknown stage=unwrap")
    assert [e["actor"] for e in entries] == ["system", "system"]
    assert audit.verify() == []
    assert chain_pending(engine, audit) == 0  # nothing left to move
    assert len(audit.list(event=EVENT)) == 2


def test_a_failed_append_leaves_every_alarm_pending(engine: sa.Engine) -> None:
    audit = AuditLog(engine, KEY)
    raise_pending(engine, WRAPPING_TOKEN_UNUSABLE, "creation_path=unknown stage=lookup")
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_head"))
    with pytest.raises(AuditHeadMissing):
        chain_pending(engine, audit)
    # The delete and the append are one transaction: the alarm is still there, and not in the chain.
    assert _pending(engine) == 1
    assert audit.list(event=EVENT) == []
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_head (id, seq, mac) VALUES (1, 0, :g)"), {"g": GENESIS})
    assert chain_pending(engine, audit) == 1
    assert _pending(engine) == 0


def test_replicas_booting_at_once_chain_each_alarm_once(engine: sa.Engine, store_url: str) -> None:
    for stage in ("lookup", "unwrap", "lookup"):
        raise_pending(engine, WRAPPING_TOKEN_UNUSABLE, f"creation_path=unknown stage={stage}")
    # Each replica has its own engine (its own pool), as separate processes would.
    replicas = [open_store(store_url) for _ in range(4)]
    moved = together([lambda e=e: chain_pending(e, AuditLog(e, KEY)) for e in replicas])  # type: ignore[misc]
    assert sorted(moved) == [0, 0, 0, 3], moved
    audit = AuditLog(engine, KEY)
    assert len(audit.list(event=EVENT)) == 3
    assert audit.verify() == []
    assert _pending(engine) == 0
    for replica in replicas:
        replica.dispose()


def test_a_planted_row_the_gateway_cannot_read_is_chained_not_refused(engine: sa.Engine) -> None:
    # Whoever can write the database can plant a pending row; it must not stop every later boot, nor write markup
    # or control characters into the chain.
    audit = AuditLog(engine, KEY)
    bad_time = "'infinity'" if engine.dialect.name == "postgresql" else "'not a time'"
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO boot_alarms (at, kind, detail) VALUES ({bad_time}, :kind, :detail)"),
                     {"kind": "<b>kind</b>\n", "detail": "x\x1b[31m <script>"})
    assert chain_pending(engine, audit) == 1
    (entry,) = audit.list(event=EVENT)
    assert entry["subject"] == "unknown_kind"
    assert entry["reason"] == "raised_at=unreadable kind=?b?kind?/b?? x??31m ?script?"
    assert audit.verify() == []
    assert _pending(engine) == 0
