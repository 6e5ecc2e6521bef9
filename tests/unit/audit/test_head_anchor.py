"""The audit head is anchored outside the database; a missing, rewound or garbled head is named, never a crash.

threat-model: TM-R1
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway.audit.log import GENESIS, AuditHeadMissing, AuditLog, parse_head
from tests.support import empty_audit_store

KEY = b"k" * 16 + b"audit-key-for-the-anchor-tests"


@pytest.fixture()
def engine(store_url: str) -> Iterator[sa.Engine]:
    yield from empty_audit_store(store_url)


def _sql(engine: sa.Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def _filled(engine: sa.Engine, n: int = 5) -> AuditLog:
    audit = AuditLog(engine, KEY)
    for i in range(n):
        audit.record("key_created", actor="key_admin", subject=f"key_{i}")
    assert audit.verify() == []
    return audit


def test_every_append_logs_the_head_in_a_form_verify_accepts(engine: sa.Engine,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    audit = AuditLog(engine, KEY)
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        audit.record("key_created", actor="cli", subject="key_1")
        audit.record("key_revoked", actor="cli", subject="key_1")
    anchors = [r.outcome for r in caplog.records if r.getMessage() == "audit appended"]  # type: ignore[attr-defined]
    assert anchors == [f"audit_head={seq}:{mac}" for seq, mac in [(1, anchors[0].split(":")[1]), audit.head()]]
    assert parse_head(anchors[-1]) == audit.head()
    assert audit.verify(expect_head=parse_head(anchors[0])) == []
    assert audit.verify(expect_head=parse_head(anchors[-1])) == []
    assert audit.verify(expect_head=(0, GENESIS)) == []


def test_a_missing_head_row_is_named_by_record_and_verify(engine: sa.Engine) -> None:
    audit = _filled(engine)
    _sql(engine, "DELETE FROM audit_head")
    with pytest.raises(AuditHeadMissing):
        audit.record("auth_denied", actor="key_x", reason="unknown")
    with pytest.raises(AuditHeadMissing):
        audit.head()
    assert [b.problem for b in audit.verify()] == ["head row missing (every audit write fails until it is restored)"]
    assert audit.verify_chain()[1] == 5


def test_a_rewound_head_is_caught_against_the_logged_head(engine: sa.Engine) -> None:
    audit = _filled(engine, 3)
    old_seq, old_mac = audit.head()
    audit.record("key_revoked", actor="key_admin", subject="key_1")
    audit.record("credits_added", actor="key_admin", subject="acct_1")
    logged = audit.head()
    # Drop the last two entries and put the old head back: the chain is consistent again on its own.
    _sql(engine, "DELETE FROM audit_events WHERE seq > :seq", seq=old_seq)
    _sql(engine, "UPDATE audit_head SET seq = :seq, mac = :mac WHERE id = 1", seq=old_seq, mac=old_mac)
    assert audit.verify() == []
    broken = audit.verify(expect_head=logged)
    assert [(b.seq, b.problem.split(":")[0]) for b in broken] == [(5, "rewound")]
    # Same length, but a different entry at the logged position (rewritten after a rewind with another key).
    AuditLog(engine, b"another-key-of-at-least-32-bytes!!").record("key_created", actor="forger")
    AuditLog(engine, b"another-key-of-at-least-32-bytes!!").record("key_created", actor="forger")
    assert any(b.problem.startswith("rewound") for b in audit.verify(expect_head=logged))


def test_a_non_ascii_mac_is_a_break_not_a_crash(engine: sa.Engine) -> None:
    audit = _filled(engine)
    _sql(engine, "UPDATE audit_events SET mac = :m WHERE seq = 2", m="é" * 64)
    assert [b.seq for b in audit.verify()] == [2, 3]
    _sql(engine, "UPDATE audit_head SET mac = :m WHERE id = 1", m="ü" * 64)
    assert 5 in [b.seq for b in audit.verify()]


def test_record_in_commits_with_the_change_or_not_at_all(engine: sa.Engine,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    audit = AuditLog(engine, KEY)
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_head SET seq = seq WHERE id = 1"))  # stands in for the admin change
            assert audit.record_in(conn, "key_created", actor="key_admin", subject="key_1") == 1
            assert not [r for r in caplog.records if r.getMessage() == "audit appended"]  # not before the commit
        assert audit.verify() == [] and audit.head()[0] == 1
        with pytest.raises(RuntimeError), engine.begin() as conn:
            audit.record_in(conn, "key_revoked", actor="key_admin", subject="key_1")
            raise RuntimeError("the change failed")
        assert audit.verify() == [] and audit.head()[0] == 1
    # Only the committed entry's head was logged: a rolled-back entry leaves no anchor the chain cannot hold.
    assert [r.outcome for r in caplog.records  # type: ignore[attr-defined]
            if r.getMessage() == "audit appended"] == [f"audit_head=1:{audit.head()[1]}"]
    _sql(engine, "DELETE FROM audit_head")
    with pytest.raises(AuditHeadMissing), engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_head (id, seq, mac) VALUES (2, 0, 'change')"))
        audit.record_in(conn, "key_revoked", actor="key_admin", subject="key_1")
    with engine.connect() as conn:  # the change rolled back with the failed entry
        assert conn.execute(sa.text("SELECT count(*) FROM audit_head")).scalar_one() == 0


@pytest.mark.parametrize("text", ["", "5", "5:", "x:" + "a" * 64, "5:" + "A" * 64, "5:" + "a" * 63, "-1:" + "a" * 64])
def test_a_malformed_expected_head_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_head(text)
