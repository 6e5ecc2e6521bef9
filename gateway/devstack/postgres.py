"""A throwaway database on the machine's Postgres, for the tests and the benchmarks (trust auth on loopback)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

HOST, PORT = "127.0.0.1", 5432


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Create a database named ``prefix`` + random hex; yield its SQLAlchemy URL; drop it (connections and all)."""
    import psycopg

    name = prefix + uuid.uuid4().hex[:12]
    with psycopg.connect(host=HOST, port=PORT, dbname="test", user="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{HOST}:{PORT}/{name}"
    finally:
        with psycopg.connect(host=HOST, port=PORT, dbname="test", user="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
