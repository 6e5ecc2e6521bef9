"""Files that hold the store or a secret are private (0600) whatever the umask: SQLite's database and its side
files, the dev stack's OpenBao log (it prints the root token), and anything the CLI creates."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.credits.ledger import SqlLedger
from gateway.store.engine import open_store


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write(database: Path) -> SqlLedger:
    ledger = SqlLedger(open_store(f"sqlite:///{database}"))
    ledger.top_up(ledger.create_account("modes").id, 1, "a write, so the log has content")
    return ledger


def test_sqlite_database_and_its_side_files_are_0600(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    with _umask(0o022):
        _write(database)
    # The pool keeps a connection open, so SQLite keeps its write-ahead log and shared-memory index on disk.
    side_files = [Path(f"{database}-wal"), Path(f"{database}-shm")]
    assert all(path.exists() for path in side_files)
    assert {path.name: _mode(path) for path in [database, *side_files]} == {
        "gateway.db": 0o600, "gateway.db-wal": 0o600, "gateway.db-shm": 0o600}


def test_side_files_left_readable_by_an_earlier_process_are_narrowed(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    with _umask(0o022):
        # An earlier writer (or an older version of this code) left the database and its side files 0644.
        earlier = sqlite3.connect(database)
        earlier.execute("PRAGMA journal_mode=WAL")
        earlier.execute("CREATE TABLE t (x)")
        earlier.commit()
        assert _mode(Path(f"{database}-wal")) == 0o644
        try:
            _write(database)
        finally:
            earlier.close()
    assert _mode(database) == 0o600
    for suffix in ("-wal", "-shm"):
        path = Path(f"{database}{suffix}")
        assert not path.exists() or _mode(path) == 0o600, suffix


def test_dev_vault_log_is_0600(tmp_path: Path) -> None:
    from gateway.devstack.openbao import start_dev_vault

    log_file = tmp_path / "openbao.log"
    with _umask(0o022):
        vault = start_dev_vault(log_file)
    try:
        assert _mode(log_file) == 0o600
    finally:
        vault.stop()
    assert "Root Token" in log_file.read_text()  # what makes it worth protecting
    # An existing, wider log is narrowed before anything is appended to it.
    log_file.chmod(0o644)
    with _umask(0o022):
        start_dev_vault(log_file).stop()
    assert _mode(log_file) == 0o600


def test_the_cli_runs_with_a_private_umask(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.cli import main

    monkeypatch.setattr(sys, "argv", ["gateway", "--help"])
    with _umask(0o022):
        with pytest.raises(SystemExit):
            main()
        assert os.umask(0o022) == 0o077
