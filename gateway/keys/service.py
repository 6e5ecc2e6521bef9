"""Issuing and verifying virtual keys.

Denial reasons (go to logs and metrics, never to the client, who always sees ``401 invalid_api_key``)::

    AuthDenied(reason)
      ├── "missing"     no Authorization: Bearer header
      ├── "malformed"   not our format, wrong kind for this surface, or bad checksum (no store lookup made, except
      │                 for a customer-format key on the admin surface: it is looked up to catch a honeytoken)
      ├── "unknown"     well-formed, but no such key
      ├── "revoked"
      ├── "expired"
      └── "honeytoken"  a canary key was used (an alarm: audit entry, CRITICAL log, metric)
"""

from __future__ import annotations

import builtins
import hmac
import threading
from collections import OrderedDict
from datetime import datetime, timedelta

from gateway.clock import SYSTEM_CLOCK, Clock, is_naive
from gateway.credits.ledger import is_spend_cap_period
from gateway.keys import format as key_format
from gateway.keys.epoch import Epoch
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.invalidation import LOCAL_ONLY, InvalidationChannel
from gateway.keys.store import KeyRecord, KeyState, KeyStore
from gateway.principal import Principal


class AuthDenied(Exception):
    """Authentication failed; ``reason`` is for logs only."""

    def __init__(self, reason: str, key_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.key_id = key_id


class HoneytokenNotRotatable(Exception):
    """A honeytoken was asked to rotate. It has no working settings to carry over (no account, no models), and a
    canary must never gain a working successor: revoke it and mint a new one instead."""


class AlreadyRotated(Exception):
    """The key was rotated before and is still in its grace period: a second rotation would hand out a key that
    dies with that grace period, so it is refused. ``successor`` names the key it was rotated to."""

    def __init__(self, key_id: str, successor: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id
        self.successor = successor


class KeyCache:
    """Customer key records by digest, for at most ``ttl`` seconds each, at most ``max_entries`` of them (LRU).

    What it bounds (threat-model TM-T6): a revocation or rotation made through this process drops the entry at once;
    one made elsewhere (another replica, the host CLI) is seen here within ``ttl``. Expiry is checked on every
    request from the cached record's ``expires_at``, so it is exact. Only found, customer-kind records are cached:
    unknown digests and admin keys always go to the store. Entries age by ``clock.monotonic()``.

    With ``epoch`` (the host's revocation epoch, shared by forked workers: :mod:`gateway.keys.epoch`), every lookup
    first checks it, and the whole cache is dropped when another worker (or this one) has revoked or rotated a key.
    """

    def __init__(self, ttl: float, max_entries: int = 10_000, *, clock: Clock = SYSTEM_CLOCK,
                 epoch: Epoch | None = None) -> None:
        self.ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._epoch = epoch
        self._seen_epoch = epoch.read() if epoch is not None else 0
        self._entries: OrderedDict[str, tuple[float, KeyRecord, str]] = OrderedDict()
        self._lock = threading.Lock()
        # Bumped by every invalidation: a lookup that started before one must not put its (maybe stale) answer back.
        self._generation = 0

    def get(self, digest: str) -> tuple[KeyRecord, str] | None:
        if self.ttl <= 0:
            return None
        if self._epoch is not None:
            current = self._epoch.read()
            if current != self._seen_epoch:
                with self._lock:
                    self._seen_epoch = current
                    self._generation += 1
                    self._entries.clear()
                return None
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[0] <= self._clock.monotonic():
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return entry[1], entry[2]

    def generation(self) -> int:
        return self._generation

    def put(self, digest: str, record: KeyRecord, stored_digest: str, generation: int) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return
            self._entries[digest] = (self._clock.monotonic() + self.ttl, record, stored_digest)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._generation += 1
            for digest in [d for d, (_, record, _) in self._entries.items() if record.id == key_id]:
                del self._entries[digest]

    def clear(self) -> None:
        """Forget everything (the invalidation channel may have missed a change)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class KeyService:
    """Issues, rotates, revokes, lists and verifies keys. ``clock`` decides when a key has expired and when a cached
    record is stale; it is the system clock outside tests."""

    def __init__(self, store: KeyStore, hasher: KeyHasher, *, cache_ttl: float = 0.0,
                 clock: Clock = SYSTEM_CLOCK, invalidations: InvalidationChannel = LOCAL_ONLY,
                 epoch: Epoch | None = None) -> None:
        self.store = store
        self._hasher = hasher
        self.clock = clock
        self.cache = KeyCache(cache_ttl, clock=clock, epoch=epoch)
        self._invalidations = invalidations
        self._epoch = epoch

    def _forget(self, key_id: str) -> None:
        """Drop this process's cached copy of ``key_id`` at once, every other worker's of this host before the call
        returns (the shared epoch, epoch.py), and tell the other replicas to (invalidation.py)."""
        self.cache.forget(key_id)
        if self._epoch is not None:
            self._epoch.bump()
        self._invalidations.publish(key_id)

    def list(self, kind: KeyKind | None = None) -> list[KeyRecord]:
        """Every key of ``kind`` (every key when None), oldest first."""
        return self.store.list(kind)

    def get(self, key_id: str, kind: KeyKind | None = None) -> KeyRecord | None:
        """The key ``key_id``; None when there is none, or when it is not of ``kind``."""
        record = self.store.get(key_id)
        if record is None or (kind is not None and record.kind != kind):
            return None
        return record

    def issue(
        self,
        kind: KeyKind,
        *,
        name: str,
        models: builtins.list[str] | None = None,
        expires_at: datetime | None = None,
        account_id: str | None = None,
        spend_cap_micro_usd: int | None = None,
        spend_cap_period: str = "none",
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; returns (plaintext, record). The plaintext is not kept anywhere."""
        if expires_at is not None and is_naive(expires_at):
            raise ValueError("expires_at must carry a timezone")
        if kind is KeyKind.CUSTOMER and not account_id:
            raise ValueError("a customer key needs an account")
        if not is_spend_cap_period(spend_cap_period):
            raise ValueError("spend_cap_period must be none, daily or monthly")
        if spend_cap_micro_usd is not None and spend_cap_micro_usd < 0:
            raise ValueError("spend_cap_micro_usd cannot be negative")
        plaintext = key_format.generate(kind)
        record = self.store.insert(
            kind=kind,
            name=name,
            digest=self._hasher.digest(plaintext),
            models=sorted(set(models or [])),
            expires_at=expires_at,
            account_id=account_id if kind is KeyKind.CUSTOMER else None,
            spend_cap_micro_usd=spend_cap_micro_usd,
            spend_cap_period=spend_cap_period,
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
        )
        return plaintext, record

    def issue_honeytoken(self, name: str) -> tuple[str, KeyRecord]:
        """A canary key: customer format, never valid; any use raises the alarm."""
        plaintext = key_format.generate(KeyKind.CUSTOMER)
        record = self.store.insert(kind=KeyKind.CUSTOMER, name=name, digest=self._hasher.digest(plaintext),
                                   models=[], expires_at=None, honeytoken=True)
        return plaintext, record

    def rotate(self, key_id: str, *, grace: timedelta) -> tuple[str, KeyRecord] | None:
        """A new key with the same settings; the old one keeps working for ``grace``, then is rejected.

        Returns None when there is no live customer key with that id; raises :class:`HoneytokenNotRotatable` for a
        honeytoken (whatever its state) and :class:`AlreadyRotated` for a key rotated before. Of concurrent
        rotations of one key exactly one succeeds (the store claims the old key with a conditional update)."""
        old = self.get(key_id, KeyKind.CUSTOMER)
        if old is None:
            return None
        if old.honeytoken:
            raise HoneytokenNotRotatable(key_id)
        plaintext = key_format.generate(KeyKind.CUSTOMER)
        record = None
        if old.rotated_to is None and old.state(self.clock.now()) == KeyState.ACTIVE:
            record = self.store.rotate(key_id, digest=self._hasher.digest(plaintext),
                                       not_after=self.clock.now() + grace)
        if record is None:
            # Lost the claim (or never had one): say why from what the store holds now.
            current = self.store.get(key_id)
            now = self.clock.now()
            if current is not None and current.rotated_to is not None and current.state(now) == KeyState.ACTIVE:
                raise AlreadyRotated(key_id, current.rotated_to)
            return None
        self._forget(key_id)
        return plaintext, record

    def revoke(self, key_id: str, *, by: str) -> KeyRecord | None:
        """Revoke in the store, and drop the cached copies (this process's at once, the fleet's on the channel)."""
        try:
            return self.store.revoke(key_id, by=by)
        finally:
            self._forget(key_id)

    def revoke_line(self, key_id: str, *, by: str) -> tuple[KeyRecord | None, builtins.list[str]]:
        """Revoke ``key_id`` and every key rotated from it (see :meth:`SqlKeyStore.revoke_line`); returns the record
        and the successors revoked. What an operator's revocation by id does; self-revocation revokes one key."""
        revoked: list[str] = []
        try:
            record, revoked = self.store.revoke_line(key_id, by=by)
            return record, revoked
        finally:
            for forgotten in (key_id, *revoked):
                self._forget(forgotten)

    def _check_wrong_kind(self, presented: str, kind: KeyKind) -> None:
        """A well-formed customer key presented as an admin key is looked up after all: honeytokens are
        customer-format, and a canary used anywhere must raise the alarm. Raises ``honeytoken`` for one, else
        ``malformed`` naming the key's id when it exists. Admin-format keys on the customer surface are still
        refused without a lookup (no honeytoken has that format), so /v1 pays nothing for this."""
        if kind is not KeyKind.ADMIN:
            return
        try:
            key_format.check(presented, KeyKind.CUSTOMER)
        except key_format.MalformedKey:
            return
        digest = self._hasher.digest(presented)
        found = self.store.find_by_digest(digest)
        if found is None or not hmac.compare_digest(found[1], digest):
            return
        raise AuthDenied("honeytoken" if found[0].honeytoken else "malformed", found[0].id)

    def verify(self, presented: str | None, kind: KeyKind) -> Principal:
        """The principal for ``presented``, or :class:`AuthDenied`."""
        if not presented:
            raise AuthDenied("missing")
        try:
            key_format.check(presented, kind)
        except key_format.MalformedKey:
            self._check_wrong_kind(presented, kind)
            raise AuthDenied("malformed") from None
        digest = self._hasher.digest(presented)
        cacheable = kind is KeyKind.CUSTOMER
        found = self.cache.get(digest) if cacheable else None
        if found is None:
            generation = self.cache.generation()
            found = self.store.find_by_digest(digest)
            if found is None:
                raise AuthDenied("unknown")
            if cacheable and found[0].kind == kind:
                self.cache.put(digest, found[0], found[1], generation)
        record, stored_digest = found
        # The lookup was by digest already; compare again in constant time so correctness never rests on the
        # database's collation or comparison semantics.
        if not hmac.compare_digest(stored_digest, digest):
            raise AuthDenied("unknown")
        if record.honeytoken:
            raise AuthDenied("honeytoken", record.id)
        if record.kind != kind:
            raise AuthDenied("unknown")
        state = record.state(self.clock.now())
        if state != KeyState.ACTIVE:
            raise AuthDenied(state, record.id)
        return Principal(
            key_id=record.id,
            kind=record.kind,
            name=record.name,
            models=frozenset(record.models),
            expires_at=record.expires_at,
            account_id=record.account_id,
            spend_cap_micro_usd=record.spend_cap_micro_usd,
            spend_cap_period=record.spend_cap_period,
            rpm_limit=record.rpm_limit,
            tpm_limit=record.tpm_limit,
        )
