"""Append-only audit events chained with HMAC-SHA256 under an audit key held in Vault.

``mac(n) = HMAC(audit_key, mac(n−1) ‖ canonical(seq, at, event, actor, subject, reason, request_id))``, starting from
64 zeros. Changing, deleting, inserting or reordering an entry breaks the chain at that point; removing entries at the
end is caught by the head row (last seq and MAC), unless whoever truncates also rewinds the head — keep the head's
MAC elsewhere (a log line at every boot prints it) to catch that. Entries carry ids and reason codes, never keys,
digests or secret values.
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

from gateway.store.schema import audit_events, audit_head

log = logging.getLogger("gateway.audit")
GENESIS = "0" * 64

_ADVANCE_HEAD = sa.text("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, mac")
_SET_HEAD = sa.text("UPDATE audit_head SET mac = :mac WHERE id = 1")


@dataclasses.dataclass(frozen=True, slots=True)
class Broken:
    seq: int
    problem: str


def _canonical(row: dict[str, Any]) -> bytes:
    at = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
    fields = [row["seq"], at.astimezone(UTC).isoformat(timespec="microseconds"), row["event"], row["actor"],
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
        """Append one event; returns its sequence number. Raises on a store failure (callers decide)."""
        at = datetime.now(UTC)
        with self._engine.begin() as conn:
            head = conn.execute(_ADVANCE_HEAD).one()  # locks the head: appends are serialized
            row = {"seq": int(head.seq), "at": at, "event": event[:40], "actor": actor[:64],
                   "subject": subject[:64] if subject else None, "reason": reason[:80] if reason else None,
                   "request_id": request_id}
            mac = self._mac(head.mac, row)
            conn.execute(audit_events.insert().values(**row, mac=mac))
            conn.execute(_SET_HEAD, {"mac": mac})
        return int(row["seq"])

    def try_record(self, event: str, **fields: Any) -> None:
        """Record, logging (not raising) a failure: for paths that must answer the client regardless."""
        try:
            self.record(event, **fields)
        except Exception:
            log.exception("audit write failed", extra={"reason": event})

    def verify(self) -> list[Broken]:
        """Walk the chain; report where it breaks (modification, deletion, insertion, reordering, truncation)."""
        broken: list[Broken] = []
        previous = GENESIS
        expected_seq = 1
        with self._engine.connect() as conn:
            head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).one()
            for item in conn.execute(sa.select(audit_events).order_by(audit_events.c.seq)):
                row = dict(item._mapping)
                if row["seq"] != expected_seq:
                    broken.append(Broken(row["seq"], f"sequence gap: expected {expected_seq}"))
                if not hmac.compare_digest(self._mac(previous, row), row["mac"]):
                    broken.append(Broken(row["seq"], "MAC does not match (entry changed, inserted or reordered)"))
                previous = row["mac"]
                expected_seq = row["seq"] + 1
        if head.seq != expected_seq - 1 or not hmac.compare_digest(head.mac, previous):
            broken.append(Broken(int(head.seq), "head does not match the last entry (entries removed at the end)"))
        return broken

    def head(self) -> tuple[int, str]:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).one()
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
        return [{"seq": r.seq, "at": (r.at if r.at.tzinfo else r.at.replace(tzinfo=UTC)).isoformat(),
                 "event": r.event, "actor": r.actor, "subject": r.subject, "reason": r.reason,
                 "request_id": r.request_id} for r in rows]
