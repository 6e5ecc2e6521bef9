"""The host's revocation epoch (threat-model TM-T18): a revocation through one forked worker empties every other
worker's key cache before the revoking call returns, with no message to wait for.

Two real processes (a fork, as gunicorn makes the workers), one SQLite store, a manual clock that never lets a cached
entry age out: only the epoch can make the other process see the revocation.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from gateway.keys.epoch import SharedEpoch
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import AuthDenied, KeyService
from gateway.keys.store import SqlKeyStore
from gateway.store.engine import open_store
from tests.support import ManualClock

PEPPER = b"e" * 32 + b"-pepper-for-epoch-tests"


def _other_worker(service: KeyService, key: str, channel: Connection) -> None:
    """Verify ``key`` each time the parent asks, and answer what this process decided."""
    service.store.engine.dispose(close=False)  # type: ignore[attr-defined]  # the parent's pooled connections
    while channel.recv() == "verify":
        try:
            channel.send(service.verify(key, KeyKind.CUSTOMER).key_id)
        except AuthDenied as denied:
            channel.send(denied.reason)


def _verdict_after_revocation(tmp_path: Path, epoch: SharedEpoch | None) -> tuple[str, str]:
    """(the other worker's answer before, after) a revocation through this process."""
    store = SqlKeyStore(open_store(f"sqlite:///{tmp_path / 'keys.db'}"))
    service = KeyService(store, KeyHasher(PEPPER), cache_ttl=1.0, clock=ManualClock(), epoch=epoch)
    key, record = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_e")
    service.verify(key, KeyKind.CUSTOMER)  # cached here, and so in the fork's copy
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    child = context.Process(target=_other_worker, args=(service, key, theirs))
    child.start()
    try:
        ours.send("verify")
        before = ours.recv()
        service.revoke(record.id, by="test")
        ours.send("verify")
        after = ours.recv()
        ours.send("stop")
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert before == record.id
    return before, after


def test_the_other_worker_refuses_the_key_once_the_revocation_returns(tmp_path: Path) -> None:
    _, after = _verdict_after_revocation(tmp_path, SharedEpoch())
    assert after == "revoked"


def test_without_the_epoch_the_other_worker_would_answer_from_its_cache(tmp_path: Path) -> None:
    """The control: the same two processes without the epoch accept the revoked key from the fork's cache, so the
    test above shows the epoch at work, not some other path."""
    _, after = _verdict_after_revocation(tmp_path, None)
    assert after != "revoked"


def test_a_moved_epoch_empties_the_cache_and_the_next_lookup_reads_the_store(tmp_path: Path) -> None:
    epoch = SharedEpoch()
    store = SqlKeyStore(open_store(f"sqlite:///{tmp_path / 'keys.db'}"))
    service = KeyService(store, KeyHasher(PEPPER), cache_ttl=1.0, clock=ManualClock(), epoch=epoch)
    key, _ = service.issue(KeyKind.CUSTOMER, name="a", account_id="acct_e")
    service.verify(key, KeyKind.CUSTOMER)
    assert len(service.cache) == 1
    before = epoch.read()
    epoch.bump()
    service.verify(key, KeyKind.CUSTOMER)  # the stale entry is gone; this lookup went to the store and cached anew
    assert len(service.cache) == 1
    assert epoch.read() != before


@pytest.mark.parametrize("bumps", [1, 5])
def test_bumps_from_another_process_are_seen(bumps: int) -> None:
    epoch = SharedEpoch()
    context = multiprocessing.get_context("fork")
    seen = {epoch.read()}
    for _ in range(bumps):
        child = context.Process(target=epoch.bump)
        child.start()
        child.join(timeout=10)
        assert epoch.read() not in seen  # each bump moved it to a value no reader has seen
        seen.add(epoch.read())


def _bump_for_ever(epoch: SharedEpoch) -> None:
    while True:
        epoch.bump()


def test_a_worker_killed_mid_bump_blocks_no_one() -> None:
    """A worker SIGKILLed while bumping (the OOM killer, gunicorn's timeout) leaves nothing held: a process-shared
    lock held by a dead process would block every other worker's key lookups for ever."""
    epoch = SharedEpoch()
    context = multiprocessing.get_context("fork")
    bumper = context.Process(target=_bump_for_ever, args=(epoch,))
    bumper.start()
    try:
        first = epoch.read()
        while epoch.read() == first:  # the child is bumping
            pass
        os.kill(bumper.pid, signal.SIGKILL)  # type: ignore[arg-type]
    finally:
        bumper.join(timeout=10)
    outcome: list[int] = []

    def use() -> None:
        before = epoch.read()
        epoch.bump()
        outcome.append(int(epoch.read() != before))

    user = threading.Thread(target=use, daemon=True)
    user.start()
    user.join(30)  # a liveness bound: a lock left held would keep this thread waiting for ever
    assert outcome == [1]
