"""HAZMAT: the connections to the gateway's datastores, built from the settings and the secrets boot read: the store
(its Postgres password from Vault handed to the driver in memory), the fleet's Redis (its password from Vault or a
0600 file) and the key-invalidation channel on it.

A password goes to the driver as a keyword argument, never into a URL: SQLAlchemy masks a URL's password in repr and
str, but a URL is what error lines, logs and ``render_as_string`` print, and a URL without a password has nothing to
mask. Connection failures become one line naming host, port and database, never the driver's text.
"""

from __future__ import annotations

from typing import Any

import redis
import sqlalchemy as sa

from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings, read_credential_file, redacted_url
from gateway.keys.invalidation import LOCAL_ONLY, InvalidationChannel, RedisInvalidations
from gateway.store.engine import open_store


def open_database(settings: Settings, password: Secret | None) -> sa.Engine:
    """The store, migrated; with GATEWAY_DATABASE_PASSWORD_FROM_VAULT, logged in with ``password`` (read from Vault).
    A store whose password the settings put in Vault is never opened without it (libpq would try ~/.pgpass)."""
    if settings.database_password_from_vault and password is None:
        raise BootError("database", "GATEWAY_DATABASE_PASSWORD_FROM_VAULT is set but no password was read from Vault")
    try:
        return open_store(settings.database_url, password=password.reveal() if password is not None else None)
    except sa.exc.OperationalError:
        if not settings.database_url.startswith("postgresql"):
            raise
        # psycopg's text names the user and the server's reason, sometimes more; sqlstate is not set for a refused
        # login, so the line says both possibilities.
        raise BootError("database", f"Postgres at {redacted_url(settings.database_url)} refused the connection or the "
                                    f"login ({_password_source(settings)})") from None


def _password_source(settings: Settings) -> str:
    if settings.database_password_from_vault:
        return (f"password from {settings.vault_mount}/{settings.vault_path}/datastores field 'postgres_password'")
    return "password from libpq's own sources, such as ~/.pgpass"


def redis_options(settings: Settings, password: Secret | None = None) -> dict[str, Any]:
    """Connection options for the fleet's Redis: its password (from Vault, or from the 0600 file
    GATEWAY_REDIS_PASSWORD_FILE names), short timeouts."""
    options: dict[str, Any] = {"socket_timeout": 1, "socket_connect_timeout": 1}
    if settings.redis_password_from_vault:
        if password is None:
            raise BootError("redis", "GATEWAY_REDIS_PASSWORD_FROM_VAULT is set but no password was read from Vault")
        options["password"] = password.reveal()
    elif settings.redis_password_file is not None:
        options["password"] = read_credential_file(settings.redis_password_file, "GATEWAY_REDIS_PASSWORD_FILE")
    return options


def check_redis_login(settings: Settings, options: dict[str, Any]) -> None:
    """Refuse a Redis that does not take our login, with a line that says so (the rate limiter's own reachability
    check cannot tell a refused password from a dead server). A Redis that does not answer is left to that check."""
    if not settings.redis_url:
        return
    client = redis.Redis.from_url(settings.redis_url, **options)
    try:
        client.ping()
    except redis.AuthenticationError:
        source = (f"{settings.vault_mount}/{settings.vault_path}/datastores field 'redis_password'"
                  if settings.redis_password_from_vault else "GATEWAY_REDIS_PASSWORD_FILE"
                  if settings.redis_password_file is not None else "no password set")
        raise BootError("redis", f"Redis at {redacted_url(settings.redis_url)} refused the login ({source})") from None
    except redis.RedisError:
        return
    finally:
        client.close()


def build_invalidations(settings: Settings, redis_password: Secret | None = None) -> InvalidationChannel:
    """Key invalidations pushed through the fleet's Redis; without Redis (one replica) there is no one to tell."""
    if not settings.redis_url:
        return LOCAL_ONLY
    return RedisInvalidations(settings.redis_url, redis_options(settings, redis_password))
