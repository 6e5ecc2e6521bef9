"""Where key records live: the ``KeyStore`` role and its SQL implementation."""

from __future__ import annotations

import builtins
import dataclasses
import enum
import uuid
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa

from gateway.clock import as_utc, is_naive
from gateway.credits.ledger import SpendCapPeriod
from gateway.keys.format import KeyKind
from gateway.store.schema import api_keys


class KeyState(enum.StrEnum):
    """Where a key stands at an instant. A member equals its text, which is what the API, the CLI and the logs show
    (and, for ``revoked`` and ``expired``, the authentication denial reason)."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclasses.dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    kind: str  # a KeyKind value, as the store holds it
    name: str
    models: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    account_id: str | None = None
    spend_cap_micro_usd: int | None = None
    spend_cap_period: SpendCapPeriod = "none"
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    rotated_to: str | None = None
    honeytoken: bool = False

    def state(self, now: datetime) -> KeyState:
        if self.revoked_at is not None:
            return KeyState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyState.EXPIRED
        return KeyState.ACTIVE

    def public(self, now: datetime) -> dict[str, object]:
        """What the admin API and CLI may show: never the key or its digest."""
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "models": list(self.models),
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "state": self.state(now),
            "account_id": self.account_id,
            "spend_cap_micro_usd": self.spend_cap_micro_usd,
            "spend_cap_period": self.spend_cap_period,
            "rpm_limit": self.rpm_limit,
            "tpm_limit": self.tpm_limit,
            "rotated_to": self.rotated_to,
            "honeytoken": self.honeytoken,
        }


class StoreUnavailable(Exception):
    """The key store cannot be reached or answered with an error: callers fail closed (503)."""


class InvalidExpiry(ValueError):
    """An ``expires_at`` the store refuses: naive, or outside the years it can keep (2001 to 8999 in UTC)."""


# Instants the store keeps: after 2000 and before 9000, in UTC. Far enough from year 1 and 9999 that no offset can
# push a value out of Python's or Postgres's range (a '9999-12-31T23:59:59-23:59' is year 10000 in UTC).
EARLIEST_EXPIRY = datetime(2001, 1, 1, tzinfo=UTC)
LATEST_EXPIRY = datetime(9000, 1, 1, tzinfo=UTC)


def to_stored_utc(value: datetime) -> datetime:
    """``value`` as the UTC instant the store keeps, or :class:`InvalidExpiry`.

    SQLite keeps date-times as text without an offset, so the store writes UTC only: an offset that reached it
    unconverted would be dropped and shift the instant by up to a day."""
    if is_naive(value):
        raise InvalidExpiry("expires_at must carry a timezone offset")
    try:
        converted = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidExpiry("expires_at is out of range") from None
    if not EARLIEST_EXPIRY <= converted < LATEST_EXPIRY:
        raise InvalidExpiry("expires_at must be after 2000 and before the year 9000 (UTC)")
    return converted


class KeyStore(Protocol):
    def insert(self, *, kind: KeyKind, name: str, digest: str, models: list[str], expires_at: datetime | None,
               account_id: str | None = None, spend_cap_micro_usd: int | None = None,
               spend_cap_period: SpendCapPeriod = "none", rpm_limit: int | None = None,
               tpm_limit: int | None = None, honeytoken: bool = False) -> KeyRecord: ...
    def retire(self, key_id: str, *, successor: str, not_after: datetime) -> None: ...
    def rotate(self, key_id: str, *, digest: str, not_after: datetime) -> KeyRecord | None: ...
    def find_by_digest(self, digest: str) -> tuple[KeyRecord, str] | None: ...
    def get(self, key_id: str) -> KeyRecord | None: ...
    def list(self, kind: KeyKind | None = None) -> list[KeyRecord]: ...
    def revoke(self, key_id: str, *, by: str) -> KeyRecord | None: ...
    def revoke_line(self, key_id: str, *, by: str) -> tuple[KeyRecord | None, builtins.list[str]]: ...


def _utc(value: datetime | None) -> datetime | None:
    # Everything we write is UTC (to_stored_utc), so every record compares and prints in UTC.
    return None if value is None else as_utc(value)


def _record(row: sa.Row[tuple[object, ...]]) -> KeyRecord:
    m = row._mapping
    created = _utc(m["created_at"])
    if created is None:
        raise StoreUnavailable()
    return KeyRecord(
        id=m["id"],
        kind=m["kind"],
        name=m["name"],
        models=tuple(m["models"]),
        created_at=created,
        expires_at=_utc(m["expires_at"]),
        revoked_at=_utc(m["revoked_at"]),
        account_id=m["account_id"],
        spend_cap_micro_usd=m["spend_cap_micro_usd"],
        spend_cap_period=m["spend_cap_period"],
        rpm_limit=m["rpm_limit"],
        tpm_limit=m["tpm_limit"],
        rotated_to=m["rotated_to"],
        honeytoken=bool(m["honeytoken"]),
    )


# An expiry at or past LATEST_EXPIRY (a Postgres row written before the bound, such as year 10000, which no driver
# can read) is read as LATEST_EXPIRY, so one such row cannot break every listing and lookup.
_EXPIRES_AT = sa.case((api_keys.c.expires_at >= sa.literal(LATEST_EXPIRY, sa.DateTime(timezone=True)),
                       sa.literal(LATEST_EXPIRY, sa.DateTime(timezone=True))),
                      else_=api_keys.c.expires_at).label("expires_at")
_COLUMNS = [_EXPIRES_AT if c.name == "expires_at" else c for c in api_keys.c if c.name != "key_digest"]


def _mark_revoked(conn: sa.Connection, key_id: str, by: str) -> bool:
    """Revoke one key unless it already was (the first revocation time is kept); True if this call revoked it."""
    return conn.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC), revoked_by=by)
    ).rowcount == 1


class SqlKeyStore:
    """Key records in SQLite or Postgres through SQLAlchemy Core."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> sa.Engine:
        """The store the records live in (tests read it directly)."""
        return self._engine

    def insert(self, *, kind: KeyKind, name: str, digest: str, models: list[str], expires_at: datetime | None,
               account_id: str | None = None, spend_cap_micro_usd: int | None = None,
               spend_cap_period: SpendCapPeriod = "none", rpm_limit: int | None = None,
               tpm_limit: int | None = None, honeytoken: bool = False) -> KeyRecord:
        key_id = "key_" + uuid.uuid4().hex[:24]
        now = datetime.now(UTC)
        expires_at = None if expires_at is None else to_stored_utc(expires_at)
        with self._engine.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key_id, kind=kind, name=name, key_digest=digest, models=list(models),
                    created_at=now, expires_at=expires_at, revoked_at=None, account_id=account_id,
                    spend_cap_micro_usd=spend_cap_micro_usd, spend_cap_period=spend_cap_period,
                    rpm_limit=rpm_limit, tpm_limit=tpm_limit, honeytoken=honeytoken,
                )
            )
        return KeyRecord(key_id, kind, name, tuple(models), now, expires_at, None, account_id, spend_cap_micro_usd,
                         spend_cap_period, rpm_limit, tpm_limit, None, honeytoken)

    def retire(self, key_id: str, *, successor: str, not_after: datetime) -> None:
        """Mark a rotated key: it stays valid until ``not_after`` (or its own earlier expiry), then is rejected."""
        not_after = to_stored_utc(not_after)
        with self._engine.begin() as conn:
            conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, sa.or_(api_keys.c.expires_at.is_(None),
                                                       api_keys.c.expires_at > not_after))
                .values(expires_at=not_after)
            )
            conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(rotated_to=successor))

    def rotate(self, key_id: str, *, digest: str, not_after: datetime) -> KeyRecord | None:
        """Rotate ``key_id`` atomically: claim it and insert its successor (same settings, ``digest``) in one
        transaction. The old key stays valid until ``not_after`` (or its own earlier expiry), then is rejected.

        The claim is one conditional update (live, customer, not a honeytoken, not rotated before), so of several
        rotations, or a rotation and a revocation, of one key, whichever reaches the row second sees the first: on
        Postgres the second update waits for the row's lock and re-checks its condition; SQLite serializes writers.
        None when the claim fails; the caller reads the row to say why."""
        new_id = "key_" + uuid.uuid4().hex[:24]
        now = datetime.now(UTC)
        not_after = to_stored_utc(not_after)
        with self._engine.begin() as conn:
            claimed = conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.kind == KeyKind.CUSTOMER,
                       api_keys.c.honeytoken.is_(sa.false()), api_keys.c.revoked_at.is_(None),
                       api_keys.c.rotated_to.is_(None),
                       sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now))
                .values(rotated_to=new_id)
            ).rowcount
            if claimed != 1:
                return None
            old = _record(conn.execute(sa.select(*_COLUMNS).where(api_keys.c.id == key_id)).one())
            if old.expires_at is None or old.expires_at > not_after:
                conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(expires_at=not_after))
            conn.execute(
                api_keys.insert().values(
                    id=new_id, kind=old.kind, name=old.name, key_digest=digest, models=list(old.models),
                    created_at=now, expires_at=old.expires_at, revoked_at=None, account_id=old.account_id,
                    spend_cap_micro_usd=old.spend_cap_micro_usd, spend_cap_period=old.spend_cap_period,
                    rpm_limit=old.rpm_limit, tpm_limit=old.tpm_limit, honeytoken=False,
                )
            )
        return dataclasses.replace(old, id=new_id, created_at=now, revoked_at=None, rotated_to=None)

    def find_by_digest(self, digest: str) -> tuple[KeyRecord, str] | None:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    sa.select(*_COLUMNS, api_keys.c.key_digest).where(api_keys.c.key_digest == digest)
                ).first()
        except sa.exc.SQLAlchemyError:
            raise StoreUnavailable() from None
        if row is None:
            return None
        return _record(row), row._mapping["key_digest"]

    def get(self, key_id: str) -> KeyRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(api_keys.c.id == key_id)).first()
        return None if row is None else _record(row)

    def list(self, kind: KeyKind | None = None) -> list[KeyRecord]:
        query = sa.select(*_COLUMNS).order_by(api_keys.c.created_at, api_keys.c.id)
        if kind is not None:
            query = query.where(api_keys.c.kind == kind)
        with self._engine.connect() as conn:
            return [_record(row) for row in conn.execute(query)]

    def revoke_line(self, key_id: str, *, by: str) -> tuple[KeyRecord | None, builtins.list[str]]:
        """Revoke ``key_id`` and every key rotated from it (its successor, that one's successor, ...) in one
        transaction. Returns the record of ``key_id`` (None if there is no such key) and the ids of the successors
        this call revoked. The first update takes the row's lock before the successor link is read, so a rotation
        racing this revocation either committed first (and its successor is revoked here) or fails its claim."""
        revoked: list[str] = []
        with self._engine.begin() as conn:
            _mark_revoked(conn, key_id, by)
            row = conn.execute(sa.select(*_COLUMNS).where(api_keys.c.id == key_id)).first()
            seen = {key_id}
            successor = None if row is None else row._mapping["rotated_to"]
            while successor is not None and successor not in seen:
                seen.add(successor)
                if _mark_revoked(conn, successor, by):
                    revoked.append(successor)
                successor = conn.execute(
                    sa.select(api_keys.c.rotated_to).where(api_keys.c.id == successor)).scalar_one_or_none()
        return (None if row is None else _record(row)), revoked

    def revoke(self, key_id: str, *, by: str) -> KeyRecord | None:
        """Mark revoked (idempotent: the first revocation time is kept). None if there is no such key."""
        with self._engine.begin() as conn:
            _mark_revoked(conn, key_id, by)
            row = conn.execute(sa.select(*_COLUMNS).where(api_keys.c.id == key_id)).first()
        return None if row is None else _record(row)
