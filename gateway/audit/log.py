"""Append-only audit events chained with HMAC-SHA256 under an audit key held in Vault.

``mac(n) = HMAC(audit_key, mac(n−1) ‖ canonical(seq, at, event, actor, subject, reason, request_id))``, starting from
64 zeros. Changing, deleting, inserting or reordering an entry breaks the chain at that point; removing entries at the
end is caught by the head row (last seq and MAC), unless whoever truncates also rewinds the head (or deletes it, or
puts an old one back). To catch that, the head is anchored outside the database: every append logs
``audit appended`` with ``outcome=audit_head=<seq>:<mac>`` at INFO (and every boot logs it), and
``gateway audit verify --expect-head SEQ:MAC`` reports the chain as rewound when it does not hold that entry with
that MAC. A missing head row is reported by name (:class:`AuditHeadMissing`), never as a crash. Entries carry ids and
reason codes, never keys, digests or secret values.

Recording in the caller's transaction (:meth:`AuditLog.record_in`) makes a change and its audit entry commit
together, or neither: the way to keep an admin change from applying when its entry cannot be written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from gateway.clock import as_utc
from gateway.store.schema import audit_events, audit_head

log = logging.getLogger("gateway.audit")
GENESIS = "0" * 64

_ADVANCE_HEAD = sa.text("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, mac")
_SET_HEAD = sa.text("UPDATE audit_head SET mac = :mac WHERE id = 1")


class AuditHeadMissing(Exception):
    """The ``audit_head`` row is gone: nothing can be appended until it is restored (and the chain verified)."""

    def __init__(self) -> None:
        super().__init__("the audit head row is missing; restore it and run gateway audit verify --expect-head")


@dataclasses.dataclass(frozen=True, slots=True)
class Broken:
    seq: int
    problem: str


def _same(a: str, b: str) -> bool:
    # Constant time, and total: a tampered MAC may hold any text (compare_digest refuses non-ASCII str).
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def _log_head(seq: int, mac: str) -> None:
    # The head's anchor outside the database: ship these lines off the host and pass the last one to
    # ``gateway audit verify --expect-head`` to catch a rewound or deleted head.
    log.info("audit appended", extra={"outcome": f"audit_head={seq}:{mac}"})


def parse_head(value: str) -> tuple[int, str]:
    """``SEQ:MAC`` (as logged in ``audit_head=SEQ:MAC``) as (seq, mac); ValueError if it is not that shape."""
    seq, sep, mac = value.removeprefix("audit_head=").partition(":")
    if not sep or not seq.isdecimal() or len(seq) > 18 or len(mac) != 64 or any(
            c not in "0123456789abcdef" for c in mac):
        raise ValueError("expected SEQ:MAC, a sequence number and 64 hex characters")
    return int(seq), mac


def _canonical(row: dict[str, Any]) -> bytes:
    fields = [row["seq"], as_utc(row["at"]).isoformat(timespec="microseconds"), row["event"], row["actor"],
              row["subject"], row["reason"], row["request_id"]]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()


class AuditLog:
    def __init__(self, engine: sa.Engine, audit_key: bytes) -> None:
        if len(audit_key) < 32:
            raise ValueError("audit key must be at least 32 bytes")
        self._engine = engine
        self._key = audit_key

    def __repr__(self) -> str:
        return "AuditLog(audit_key='**********')"

    def _mac(self, previous: str, row: dict[str, Any]) -> str:
        return hmac.new(self._key, previous.encode() + b"|" + _canonical(row), hashlib.sha256).hexdigest()

    def record(self, event: str, *, actor: str, subject: str | None = None, reason: str | None = None,
               request_id: str | None = None) -> int:
        """Append one event; returns its sequence number. Raises on a store failure (callers decide), and
        :class:`AuditHeadMissing` when the head row is gone."""
        with self._engine.begin() as conn:
            seq, mac = self._append(conn, event, actor=actor, subject=subject, reason=reason, request_id=request_id)
        _log_head(seq, mac)
        return seq

    def record_in(self, conn: sa.Connection, event: str, *, actor: str, subject: str | None = None,
                  reason: str | None = None, request_id: str | None = None) -> int:
        """Append one event inside the caller's transaction on ``conn`` (an engine on the same store).

        The entry commits with the caller's change or not at all: if the append raises, the caller's transaction
        must roll back, so the change does not apply without its record. The head is logged when ``conn``
        commits."""
        seq, mac = self._append(conn, event, actor=actor, subject=subject, reason=reason, request_id=request_id)
        sa.event.listen(conn, "commit", lambda _conn: _log_head(seq, mac), once=True)
        return seq

    def _append(self, conn: sa.Connection, event: str, *, actor: str, subject: str | None, reason: str | None,
                request_id: str | None) -> tuple[int, str]:
        at = datetime.now(UTC)
        head = conn.execute(_ADVANCE_HEAD).first()  # locks the head: appends are serialized
        if head is None:
            raise AuditHeadMissing()
        seq = int(head.seq)
        row = {"seq": seq, "at": at, "event": event[:40], "actor": actor[:64],
               "subject": subject[:64] if subject else None, "reason": reason[:80] if reason else None,
               "request_id": request_id}
        mac = self._mac(head.mac, row)
        conn.execute(audit_events.insert().values(**row, mac=mac))
        conn.execute(_SET_HEAD, {"mac": mac})
        return seq, mac

    def try_record(self, event: str, **fields: Any) -> None:
        """Record, logging (not raising) a failure: for paths that must answer the client regardless."""
        try:
            self.record(event, **fields)
        except Exception:
            log.exception("audit write failed", extra={"reason": event})

    def verify(self, expect_head: tuple[int, str] | None = None) -> list[Broken]:
        """Walk the chain; report where it breaks (modification, deletion, insertion, reordering, truncation, a
        missing head row) and, given the head recorded earlier (``expect_head``), whether the chain was rewound."""
        return self.verify_chain(expect_head)[0]

    def verify_chain(self, expect_head: tuple[int, str] | None = None) -> tuple[list[Broken], int]:
        """As :meth:`verify`, plus the number of entries walked."""
        broken: list[Broken] = []
        previous = GENESIS
        expected_seq = 1
        entries = 0
        anchored = GENESIS if expect_head is not None and expect_head[0] == 0 else None
        with self._engine.connect() as conn:
            head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).first()
            for item in conn.execute(sa.select(audit_events).order_by(audit_events.c.seq)):
                row = dict(item._mapping)
                entries += 1
                if row["seq"] != expected_seq:
                    broken.append(Broken(row["seq"], f"sequence gap: expected {expected_seq}"))
                if not _same(self._mac(previous, row), str(row["mac"])):
                    broken.append(Broken(row["seq"], "MAC does not match (entry changed, inserted or reordered)"))
                if expect_head is not None and row["seq"] == expect_head[0]:
                    anchored = str(row["mac"])
                previous = str(row["mac"])
                expected_seq = row["seq"] + 1
        if head is None:
            broken.append(Broken(expected_seq - 1, "head row missing (every audit write fails until it is restored)"))
        elif head.seq != expected_seq - 1 or not _same(str(head.mac), previous):
            broken.append(Broken(int(head.seq), "head does not match the last entry (entries removed at the end)"))
        if expect_head is not None:
            seq, mac = expect_head
            if anchored is None:
                broken.append(Broken(seq, f"rewound: the chain has no entry {seq} (it ends at {expected_seq - 1}), "
                                          "but that head was recorded earlier"))
            elif not _same(anchored, mac):
                broken.append(Broken(seq, "rewound: the entry differs from the head recorded earlier"))
        return broken, entries

    def head(self) -> tuple[int, str]:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).first()
        if row is None:
            raise AuditHeadMissing()
        return int(row.seq), str(row.mac)

    def list(self, *, limit: int = 100, before_seq: int | None = None, event: str | None = None,
             actor: str | None = None, subject: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(audit_events).order_by(audit_events.c.seq.desc()).limit(limit)
        if before_seq is not None:
            query = query.where(audit_events.c.seq < before_seq)
        if event:
            query = query.where(audit_events.c.event == event)
        if actor:
            query = query.where(audit_events.c.actor == actor)
        if subject:
            query = query.where(audit_events.c.subject == subject)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [{"seq": r.seq, "at": as_utc(r.at).isoformat(),
                 "event": r.event, "actor": r.actor, "subject": r.subject, "reason": r.reason,
                 "request_id": r.request_id} for r in rows]
