"""Fixtures for the pre-flight microbenchmarks (`make bench-micro`; not collected by `make test`).

Stores are real: a SQLite file per benchmark, and a fresh database on the machine's Postgres per session. Postgres
and Redis are skipped, not failed, when the machine does not run them: these are measurements, not tests.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.devstack.postgres import fresh_database
from gateway.store.engine import open_store

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
REDIS_URL = "redis://127.0.0.1:6379/15"

_goals = pytest.StashKey[list[str]]()


def port_open(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the machine's Postgres, dropped at the end of the session."""
    if not port_open(*POSTGRES):
        pytest.skip("Postgres at 127.0.0.1:5432 is not reachable on this machine")
    with fresh_database("gw_bench_") as url:
        yield url


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated store on a fresh SQLite file."""
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[sa.Engine]:
    """A migrated store on the session's Postgres database."""
    engine = open_store(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture
def redis_url() -> str:
    if not port_open(*REDIS):
        pytest.skip("Redis at 127.0.0.1:6379 is not reachable on this machine")
    return REDIS_URL


@pytest.fixture
def report_goal(request: pytest.FixtureRequest) -> Callable[[float, float], None]:
    """Records a measured rate against its goal for the end-of-run summary. Goals are reported, never asserted."""

    def report(ops: float, goal: float) -> None:
        verdict = "met" if ops >= goal else "NOT met"
        line = f"{request.node.name}: {ops:,.0f} ops/s (goal >= {goal:,.0f}/s: {verdict})"
        print(line)
        request.config.stash.setdefault(_goals, []).append(line)

    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_goals, [])
    if lines:
        terminalreporter.section("performance goals")
        for line in lines:
            terminalreporter.write_line(line)
