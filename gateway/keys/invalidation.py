"""Revocations pushed to every replica's key cache (threat-model TM-T6).

A replica drops its own cached copy of a key the moment it revokes or rotates it. Without a channel, the other
replicas see the change when their copy ages out (``keys.cache_ttl_seconds``). With Redis configured (the store the
fleet already shares for rate limits), each replica publishes the key id it changed and every replica drops that
key's cached copy on receipt, typically within milliseconds. The TTL stays the bound when the channel fails: a
replica that loses its subscription clears its whole cache when it subscribes again (it may have missed messages),
and a failed publish is logged, not retried.

What travels is a key id (``key_<24 hex>``), never a key or a digest. Anyone who can publish on the channel can only
make replicas forget cached copies, which sends the next request to the store: the safe direction.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Protocol

import redis

log = logging.getLogger("gateway.keys")

CHANNEL = "gateway:key-invalidations"
KEY_ID = re.compile(r"key_[0-9a-f]{24}")


class Forgetting(Protocol):
    """The cache side: what a received invalidation does."""

    def forget(self, key_id: str) -> None: ...

    def clear(self) -> None: ...


class InvalidationChannel(Protocol):
    def publish(self, key_id: str) -> None: ...


class LocalOnly:
    """One replica, no channel: its own cache is dropped directly by the key service."""

    def publish(self, key_id: str) -> None:
        return None


LOCAL_ONLY = LocalOnly()


class RedisInvalidations:
    """Redis pub/sub: :meth:`publish` from the key service, :meth:`listen` on a thread of its own."""

    RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._client = redis.Redis.from_url(url, **options)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, key_id: str) -> None:
        try:
            self._client.publish(CHANNEL, key_id)
        except redis.RedisError as exc:
            # The other replicas still see the change when their copy ages out (the cache TTL).
            log.warning("key invalidation not published; other replicas rely on the cache TTL",
                        extra={"key_id": key_id, "reason": type(exc).__name__})

    def listen(self, cache: Forgetting) -> None:
        """Start applying invalidations to ``cache`` on a daemon thread, until :meth:`close`."""
        self._thread = threading.Thread(target=self._run, args=(cache,), name="key-invalidations", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.close()

    def _run(self, cache: Forgetting) -> None:
        failures = 0
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]  # untyped in redis-py
            try:
                pubsub.subscribe(CHANNEL)
                # Whatever was published while this replica was not subscribed is lost: start from the store.
                cache.clear()
                failures = 0
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None or message.get("type") != "message":
                        continue
                    data = message.get("data")
                    key_id = data.decode("ascii", "replace") if isinstance(data, bytes) else str(data)
                    if KEY_ID.fullmatch(key_id):
                        cache.forget(key_id)
            except (redis.RedisError, OSError) as exc:
                delay = self.RETRY_SECONDS[min(failures, len(self.RETRY_SECONDS) - 1)]
                failures += 1
                log.warning("key invalidation channel lost; retrying (the cache TTL bounds staleness meanwhile)",
                            extra={"reason": type(exc).__name__})
                self._stop.wait(delay)
            finally:
                pubsub.close()
