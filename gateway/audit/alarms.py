"""Boot alarms: raised where the audit chain cannot be written, chained by the next boot that can write it.

A boot that finds its response-wrapping token already unwrapped (gateway.boot.wrapping) has no Vault login, so no
audit key: an entry it wrote itself would break the chain or be an unkeyed row. It records a *pending* alarm instead
(:func:`raise_pending`, one row in ``boot_alarms``), and the next boot that holds the key moves every pending alarm into
the chain (:func:`chain_pending`) as a ``boot_alarm`` entry: ``subject`` is the kind, ``reason`` the original time and
the detail. The move is one transaction (the rows are deleted with ``DELETE ... RETURNING`` and the entries appended
before it commits), so an alarm is never lost (a failed append rolls the delete back) nor doubled: a second replica
booting at the same time waits on the rows' locks (Postgres) or the database's write lock (SQLite) and then finds
them gone.

A pending row carries no MAC: until it is chained, whoever can write the database can delete it (or plant one). The
CRITICAL log line the boot wrote stays the primary alarm (threat-model TM-T16). A planted row cannot stop the next boot
either: its time is read as text and its kind and detail as data, so a row the gateway did not write is chained as it
is found (an unknown kind as ``unknown_kind``, a time that is no time as ``unreadable``), never refused.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import sqlalchemy as sa

from gateway.audit.log import AuditLog
from gateway.clock import as_utc
from gateway.store.schema import boot_alarms

log = logging.getLogger("gateway.audit")
EVENT = "boot_alarm"
WRAPPING_TOKEN_UNUSABLE = "vault_wrapping_token_unusable"
KINDS = frozenset({WRAPPING_TOKEN_UNUSABLE})
# What a chained reason may hold of a row's text: a planted row's detail is data, never markup or control characters.
_UNSAFE = re.compile(r"[^A-Za-z0-9_=.:/+ -]")


def raise_pending(engine: sa.Engine, kind: str, detail: str | None = None, *, at: datetime | None = None) -> None:
    """Record an alarm for the next boot that can write the audit chain. ``detail`` must not be secret."""
    with engine.begin() as conn:
        conn.execute(boot_alarms.insert().values(at=at or datetime.now(UTC), kind=kind[:40],
                                                 detail=detail[:40] if detail else None))


def chain_pending(engine: sa.Engine, audit: AuditLog) -> int:
    """Move every pending alarm into the audit chain (``audit`` writes to ``engine``'s store), oldest first, in one
    transaction; returns how many were moved. Raises on a store failure, leaving every pending alarm in place."""
    with engine.begin() as conn:
        # Deleting first takes the rows' locks: a replica that runs this concurrently blocks here until this
        # transaction ends, then deletes (and chains) nothing.
        taken = conn.execute(sa.delete(boot_alarms).returning(
            boot_alarms.c.id, sa.cast(boot_alarms.c.at, sa.String).label("at"), boot_alarms.c.kind,
            boot_alarms.c.detail)).all()
        for alarm in sorted(taken, key=lambda row: int(row.id)):
            kind = alarm.kind if alarm.kind in KINDS else "unknown_kind"
            reason = f"raised_at={_raised_at(alarm.at)}"
            if kind != alarm.kind:
                reason += f" kind={_UNSAFE.sub('?', str(alarm.kind))[:40]}"
            if alarm.detail:
                reason += f" {_UNSAFE.sub('?', str(alarm.detail))[:40]}"
            audit.record_in(conn, EVENT, actor="system", subject=kind, reason=reason)
    for alarm in taken:
        # The CRITICAL line was written when the alarm was raised; this one says where its record now is.
        log.warning("alarm of an earlier boot chained into the audit log",
                    extra={"reason": alarm.kind if alarm.kind in KINDS else "unknown_kind", "outcome": EVENT})
    return len(taken)


def _raised_at(text: object) -> str:
    """A pending row's time, read from its text form (SQLite's stored string, Postgres' cast): ISO 8601 in UTC, or
    ``unreadable`` for a value that is no time (a planted ``infinity``, say), which must not stop the boot."""
    try:
        return as_utc(datetime.fromisoformat(str(text))).isoformat(timespec="microseconds")
    except (TypeError, ValueError, OverflowError):
        return "unreadable"
