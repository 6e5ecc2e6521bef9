"""``gateway serve --workers 2`` booted against the session's OpenBao, on SQLite and on Postgres (a fresh database),
with the machine's Redis for the shared rate-limit counters."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.devstack.postgres import fresh_database
from tests.support import RunningGateway, Stack, start_gateway

WORKERS = 2
METRICS_DIR = re.compile(r"(/[^\"\s]*gateway-metrics-[A-Za-z0-9_]+)")


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def master_pid(gateway: RunningGateway) -> int:
    assert gateway.process.process is not None
    return gateway.process.process.pid


def wait_for_workers(gateway: RunningGateway, count: int, *, starts: int | None = None,
                     timeout: float = 120) -> set[int]:
    """The master's workers once it has ``count`` of them and the log holds ``starts`` (default ``count``) lifespan
    starts ("gateway started", one per worker started since boot)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = children(master_pid(gateway))
        if len(pids) == count and gateway.process.output().count("gateway started") >= (starts or count):
            return pids
        assert time.monotonic() < deadline, f"workers did not start:\n{gateway.process.output()[-3000:]}"
        time.sleep(0.2)


def metrics_dir(gateway: RunningGateway) -> Path:
    found = METRICS_DIR.search(gateway.process.output())
    assert found is not None, "the master did not log its metrics directory"
    return Path(found.group(1))


def requests_by_pid(gateway: RunningGateway, route: str) -> dict[int, float]:
    """gateway_requests_total for ``route`` (every status) per worker, read from each worker's own file."""
    counts: dict[int, float] = {}
    for path in metrics_dir(gateway).glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        with tempfile.TemporaryDirectory() as one:
            shutil.copy(path, one)
            total = sum(sample.value for family in MultiProcessCollector(None, one).collect()  # type: ignore[no-untyped-call]
                        if family.name == "gateway_requests"
                        for sample in family.samples
                        if sample.name == "gateway_requests_total" and sample.labels.get("route") == route)
        if total:
            counts[pid] = total
    return counts


def boot(stack: Stack, workdir: Path, name: str, database_url: str, redis_url: str) -> RunningGateway:
    running = start_gateway(stack, workdir, name, database_url, args=("--workers", str(WORKERS)),
                            GATEWAY_REDIS_URL=redis_url, GATEWAY_LOG_FORMAT="json")
    wait_for_workers(running, WORKERS)
    return running


def shut_down(running: RunningGateway) -> None:
    pids = children(master_pid(running))
    running.process.stop()
    for pid in pids:  # none should be left; never leave one behind if the master was killed
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def workers_gateway(request: pytest.FixtureRequest, stack: Stack, workdir: Path,
                    redis_url: str) -> Iterator[RunningGateway]:
    if request.param == "sqlite":
        running = boot(stack, workdir, "workers-sqlite", f"sqlite:///{workdir / 'workers-sqlite.db'}", redis_url)
        yield running
        shut_down(running)
        return
    request.getfixturevalue("postgres_url")  # fails (not skips) under CI when Postgres is missing
    with fresh_database("gw_workers_") as url:
        running = boot(stack, workdir, "workers-postgres", url, redis_url)
        yield running
        shut_down(running)
