"""Engine creation and migration to head. Every process that opens the store runs the migrations first."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine.interfaces import DBAPIConnection

MIGRATIONS = Path(__file__).with_name("migrations")


# SQLite's side files: the write-ahead log and its shared-memory index (WAL mode), the rollback journal otherwise.
SIDE_FILES = ("-wal", "-shm", "-journal")
# How long libpq waits for Postgres to answer a new connection, unless the URL sets ?connect_timeout=.
CONNECT_TIMEOUT_SECONDS = 10


def make_engine(url: str, *, password: str | None = None) -> sa.Engine:
    """An engine for ``url``; for a SQLite file, its folder is created private (0700) if missing, and the file and
    its side files are private (0600) before the first connection. ``password`` (Postgres only) goes to the driver as
    a connection argument, so the engine's URL never holds it."""
    parsed = sa.make_url(url)
    if password is not None and parsed.get_backend_name() != "postgresql":
        raise ValueError("a store password applies to Postgres only")
    connect_args: dict[str, object] = {"password": password} if password is not None else {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # libpq waits without end for a server that takes the TCP connection and never answers (a wedged proxy, a
        # firewall that drops replies): boot and every reconnect would hang instead of failing with their line.
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if not folder.exists():
            folder.mkdir(mode=0o700, parents=True)
        _private_sqlite_files(parsed.database)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    # hide_parameters: SQL logging (sqlalchemy.engine at INFO/DEBUG) must never print key digests.
    # pool_pre_ping (one round trip per checkout) lets a pooled Postgres connection survive a server restart; a
    # SQLite file has no connection to lose.
    engine = sa.create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite", hide_parameters=True,
                              connect_args=connect_args)
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", sqlite_pragmas)
    return engine


def _private_sqlite_files(database: str) -> None:
    # SQLite creates the -wal and -shm files with the database file's own mode (not the umask), so a database file
    # that is 0600 before the first connection makes them 0600 too. An empty file is a valid, empty database.
    # Side files left by an earlier process (or an older version of this code) are narrowed as well.
    fd = os.open(database, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(database + suffix, 0o600)


def sqlite_pragmas(dbapi_connection: DBAPIConnection | sqlite3.Connection, _record: object) -> None:
    # WAL lets readers run beside the one writer; NORMAL keeps commits durable across a process crash (the ledger's
    # concern) without an fsync per transaction; busy_timeout makes a second process (the CLI) wait, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_store(url: str, *, password: str | None = None) -> sa.Engine:
    engine = make_engine(url, password=password)
    migrate(engine)
    return engine
