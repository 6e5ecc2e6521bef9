"""HAZMAT: what replicas share besides the database, built from the settings: the connection to the fleet's Redis
(its password read from a 0600 file) and the key-invalidation channel on it."""

from __future__ import annotations

from typing import Any

from gateway.boot.settings import Settings, read_credential_file
from gateway.keys.invalidation import LOCAL_ONLY, InvalidationChannel, RedisInvalidations


def redis_options(settings: Settings) -> dict[str, Any]:
    """Connection options for the fleet's Redis: its password from a 0600 file, short timeouts."""
    options: dict[str, Any] = {"socket_timeout": 1, "socket_connect_timeout": 1}
    if settings.redis_password_file is not None:
        options["password"] = read_credential_file(settings.redis_password_file, "GATEWAY_REDIS_PASSWORD_FILE")
    return options


def build_invalidations(settings: Settings) -> InvalidationChannel:
    """Key invalidations pushed through the fleet's Redis; without Redis (one replica) there is no one to tell."""
    if not settings.redis_url:
        return LOCAL_ONLY
    return RedisInvalidations(settings.redis_url, redis_options(settings))
