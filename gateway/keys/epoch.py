"""The host's revocation epoch: exact revocation across the forked workers of one host (threat-model TM-T18).

Each worker keeps its own key cache. A revocation or rotation made through one worker moves a value in memory shared
by every worker of the host (created by the master before it forks them), after the store has committed the change
and before the call returns. Every cache lookup first reads the value; a worker that finds it moved clears its whole
cache and reads the store. So once the revoking call has returned, no worker of the host accepts the key again: the
next lookup anywhere sees the new epoch, and the store already holds the revocation. (A lookup that started before
the clear cannot put its stale answer back: the clear moves the cache's generation, see ``KeyCache.put``.)

A revocation made outside the host's workers (another replica, the host CLI) does not bump the epoch; it reaches the
workers by the invalidation channel, and the cache TTL bounds it (:mod:`gateway.keys.invalidation`).
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Protocol


class Epoch(Protocol):
    def read(self) -> int: ...

    def bump(self) -> None: ...


class SharedEpoch:
    """A 64-bit value in anonymous shared memory, inherited by the processes forked after it is made. A bump writes a
    new random value; a reader only asks whether the value moved since it last looked.

    No lock: a worker killed while holding a process-shared lock (the OOM killer, gunicorn's timeout) would leave it
    held for ever, and every worker of the host, replacements included, would then block on its next key lookup. An
    aligned 8-byte load or store is one instruction on x86-64 and arm64; should a read ever be torn, it differs from
    what the reader saw before and clears its cache once more (safe). Two bumps at once leave one of their values,
    which differs from every reader's last one unless a 64-bit random draw repeats it."""

    def __init__(self) -> None:
        # A fork context: the value must be in memory the children map, not sent to them (and never spawned).
        self._value = multiprocessing.get_context("fork").RawValue("q", 0)

    def read(self) -> int:
        return int(self._value.value)

    def bump(self) -> None:
        current = self._value.value
        new = current
        while new == current:
            new = int.from_bytes(os.urandom(8), "big", signed=True)
        self._value.value = new
