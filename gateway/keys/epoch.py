"""The host's revocation epoch: exact revocation across the forked workers of one host (threat-model TM-T18).

Each worker keeps its own key cache. A revocation or rotation made through one worker bumps a counter in memory shared
by every worker of the host (created by the master before it forks them), after the store has committed the change
and before the call returns. Every cache lookup first reads the counter; a worker that finds it moved clears its whole
cache and reads the store. So once the revoking call has returned, no worker of the host accepts the key again: the
next lookup anywhere sees the new epoch, and the store already holds the revocation. (A lookup that started before
the clear cannot put its stale answer back: the clear moves the cache's generation, see ``KeyCache.put``.)

A revocation made outside the host's workers (another replica, the host CLI) does not bump the epoch; it reaches the
workers by the invalidation channel, and the cache TTL bounds it (:mod:`gateway.keys.invalidation`).
"""

from __future__ import annotations

import multiprocessing
from typing import Protocol


class Epoch(Protocol):
    def read(self) -> int: ...

    def bump(self) -> None: ...


class SharedEpoch:
    """A 64-bit counter in anonymous shared memory, inherited by the processes forked after it is made."""

    def __init__(self) -> None:
        # A fork context: the counter must be in memory the children map, not sent to them (and never spawned).
        self._value = multiprocessing.get_context("fork").Value("q", 0)

    def read(self) -> int:
        return int(self._value.value)  # under the value's lock (a process-shared semaphore)

    def bump(self) -> None:
        with self._value.get_lock():
            self._value.value += 1
