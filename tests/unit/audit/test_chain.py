"""The audit chain catches modification, deletion, insertion, reordering and truncation; on SQLite and Postgres.

threat-model: TM-R1
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from gateway.audit.log import AuditLog
from gateway.store.engine import open_store

KEY = b"k" * 16 + b"audit-key-for-the-chain-tests"


@pytest.fixture()
def engine(store_url: str) -> sa.Engine:
    engine = open_store(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_events"))
        conn.execute(sa.text("UPDATE audit_head SET seq = 0, mac = :g WHERE id = 1"), {"g": "0" * 64})
    return engine


def _filled(engine: sa.Engine, n: int = 6) -> AuditLog:
    audit = AuditLog(engine, KEY)
    for i in range(n):
        audit.record("key_created", actor="key_admin", subject=f"key_{i}", request_id=f"req_{i}")
    assert audit.verify() == []
    return audit


def _sql(engine: sa.Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_intact_chain_verifies(engine: sa.Engine) -> None:
    audit = _filled(engine)
    assert audit.head()[0] == 6
    assert [e["seq"] for e in audit.list(limit=3)] == [6, 5, 4]
    assert [e["seq"] for e in audit.list(limit=3, before_seq=4)] == [3, 2, 1]
    assert [e["subject"] for e in audit.list(subject="key_2")] == ["key_2"]


def test_modification_is_caught(engine: sa.Engine) -> None:
    audit = _filled(engine)
    _sql(engine, "UPDATE audit_events SET subject = 'key_other' WHERE seq = 3")
    assert [b.seq for b in audit.verify()] == [3]


def test_deletion_is_caught(engine: sa.Engine) -> None:
    audit = _filled(engine)
    _sql(engine, "DELETE FROM audit_events WHERE seq = 3")
    broken = audit.verify()
    assert broken and broken[0].seq == 4


def test_insertion_is_caught(engine: sa.Engine) -> None:
    audit = _filled(engine)
    # Make room after seq 3 and insert a forged entry with a made-up MAC.
    for seq in range(6, 3, -1):
        _sql(engine, "UPDATE audit_events SET seq = :new WHERE seq = :old", new=seq + 1, old=seq)
    _sql(engine, "INSERT INTO audit_events (seq, at, event, actor, subject, reason, request_id, mac) "
                 "SELECT 4, at, 'key_revoked', 'key_admin', 'key_x', NULL, NULL, :mac FROM audit_events WHERE seq = 3",
         mac="f" * 64)
    broken = audit.verify()
    assert broken and broken[0].seq == 4


def test_reordering_is_caught(engine: sa.Engine) -> None:
    audit = _filled(engine)
    _sql(engine, "UPDATE audit_events SET seq = 100 WHERE seq = 2")
    _sql(engine, "UPDATE audit_events SET seq = 2 WHERE seq = 3")
    _sql(engine, "UPDATE audit_events SET seq = 3 WHERE seq = 100")
    broken = audit.verify()
    assert broken and broken[0].seq == 2


def test_truncation_is_caught_by_the_head(engine: sa.Engine) -> None:
    audit = _filled(engine)
    _sql(engine, "DELETE FROM audit_events WHERE seq >= 5")
    assert [b.problem for b in audit.verify()] == ["head does not match the last entry (entries removed at the end)"]


def test_a_different_key_cannot_verify_or_forge(engine: sa.Engine) -> None:
    _filled(engine)
    other = AuditLog(engine, b"another-key-of-at-least-32-bytes!!")
    assert len(other.verify()) >= 6
    other.record("key_created", actor="forger")
    assert AuditLog(engine, KEY).verify()[0].seq == 7


def test_concurrent_writers_do_not_fork_the_chain(engine: sa.Engine) -> None:
    audit = AuditLog(engine, KEY)

    def writer(n: int) -> None:
        for i in range(15):
            audit.record("auth_denied", actor=f"w{n}", reason="unknown", request_id=f"r{n}-{i}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert audit.verify() == []
    assert audit.head()[0] == 60
    assert "audit_key" not in repr(audit) or "*" in repr(audit)
