"""``gateway serve --workers 2`` over its life: a killed worker is replaced by a new fork of the master (with the
secrets from the master's memory: the single-use secret_id was spent by the one login), and SIGTERM drains every
worker, streams included.

threat-model: TM-T18, TM-D7
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa

from gateway.devstack.openbao import free_port
from gateway.store.engine import open_store
from tests.support import GatewayProcess, RunningGateway, Stack, port_open, run_gateway
from tests.workers.conftest import (
    WORKERS,
    boot,
    children,
    master_pid,
    metrics_dir,
    requests_by_pid,
    shut_down,
    wait_for_workers,
)

pytestmark = [pytest.mark.workers, pytest.mark.slow]


@pytest.fixture(scope="module")
def lifecycle_gateway(stack: Stack, workdir: Path, redis_url: str) -> Iterator[RunningGateway]:
    running = boot(stack, workdir, "workers-lifecycle", f"sqlite:///{workdir / 'workers-lifecycle.db'}", redis_url)
    yield running
    shut_down(running)


def _models(gateway: RunningGateway, key: str) -> int:
    return httpx.get(gateway.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"},
                     timeout=60).status_code


def test_a_killed_worker_is_replaced_by_a_fork_that_serves(lifecycle_gateway: RunningGateway) -> None:
    gateway = lifecycle_gateway
    originals = children(master_pid(gateway))
    assert len(originals) == WORKERS
    logins = gateway.process.output().count("Booting worker with pid")
    for number, pid in enumerate(sorted(originals), start=1):
        os.kill(pid, signal.SIGKILL)
        wait_for_workers(gateway, WORKERS, starts=WORKERS + number)
    replacements = children(master_pid(gateway))
    assert replacements.isdisjoint(originals)
    assert gateway.process.output().count("Booting worker with pid") == logins + WORKERS
    key, _ = gateway.keys.customer()
    assert [_models(gateway, key) for _ in range(20)] == [200] * 20
    served = requests_by_pid(gateway, "/v1/models")
    assert set(served) & replacements, "no replacement worker served a request"
    assert gateway.process.process is not None and gateway.process.process.poll() is None


def test_a_worker_leaving_normally_leaves_the_master_and_its_metrics_alone(lifecycle_gateway: RunningGateway) -> None:
    """SIGTTOU makes gunicorn stop one worker gracefully (its exit unwinds the master's stack it was forked on);
    the master keeps serving with the other, the metrics directory and its counts stay, SIGTTIN adds one back."""
    gateway = lifecycle_gateway
    key, _ = gateway.keys.customer()
    folder = metrics_dir(gateway)
    assert [_models(gateway, key) for _ in range(10)] == [200] * 10
    counted = sum(requests_by_pid(gateway, "/v1/models").values())
    assert gateway.process.process is not None
    gateway.process.process.send_signal(signal.SIGTTOU)
    deadline = time.monotonic() + 60
    while len(children(master_pid(gateway))) != WORKERS - 1:
        assert time.monotonic() < deadline, "no worker left after SIGTTOU"
        time.sleep(0.1)
    assert folder.is_dir(), "a leaving worker removed the master's metrics directory"
    assert [_models(gateway, key) for _ in range(10)] == [200] * 10
    assert sum(requests_by_pid(gateway, "/v1/models").values()) == counted + 10
    starts = gateway.process.output().count("gateway started")
    gateway.process.process.send_signal(signal.SIGTTIN)
    wait_for_workers(gateway, WORKERS, starts=starts + 1)
    assert gateway.process.process.poll() is None


def test_sigusr2_does_not_boot_a_second_master(lifecycle_gateway: RunningGateway) -> None:
    """gunicorn's binary upgrade would exec a new master that logs in to Vault again with a spent secret_id: the
    signal is refused, and the master keeps its workers."""
    gateway = lifecycle_gateway
    before = children(master_pid(gateway))
    assert gateway.process.process is not None
    gateway.process.process.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while "SIGUSR2 (binary upgrade) is not supported" not in gateway.process.output():
        assert time.monotonic() < deadline, "the master did not answer SIGUSR2"
        time.sleep(0.1)
    time.sleep(1)
    assert children(master_pid(gateway)) == before  # no new master forked beside the workers
    key, _ = gateway.keys.customer()
    assert _models(gateway, key) == 200


def test_sigterm_drains_every_worker_streams_included(lifecycle_gateway: RunningGateway, stack: Stack,
                                                      tmp_path: Path) -> None:
    """Four streams in flight on slow-model (300 ms between chunks), on more than one worker, when the master gets
    SIGTERM: each one ends with its finish reason, the master exits 0, no worker is left, the metrics directory is
    gone, the ledger has no drift and the audit chain (with each worker's shutdown entry) is unbroken."""
    gateway = lifecycle_gateway
    key, _ = gateway.keys.customer()
    started = threading.Barrier(5)
    outcomes: list[object] = []

    def stream() -> None:
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0,
                               http_client=httpx.Client(timeout=60))
        try:
            chunks = client.chat.completions.create(model="slow-model", stream=True, max_tokens=8,
                                                    messages=[{"role": "user", "content": "Hi"}])
            finish = None
            first = True
            for chunk in chunks:
                if first:
                    started.wait(timeout=30)
                    first = False
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
            outcomes.append(finish)
        except Exception as exc:  # noqa: BLE001 - the test reports every outcome
            outcomes.append(exc)
            started.abort()

    workers = children(master_pid(gateway))
    folder = metrics_dir(gateway)
    before = requests_by_pid(gateway, "/v1/chat/completions")
    threads = [threading.Thread(target=stream) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait(timeout=30)  # every stream has its first chunk: all four are in flight
    after = requests_by_pid(gateway, "/v1/chat/completions")
    in_flight_on = {pid for pid in after if after[pid] > before.get(pid, 0)}
    assert gateway.process.process is not None
    gateway.process.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes == ["stop"] * 4, outcomes
    assert gateway.process.process.wait(timeout=60) == 0
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert not folder.exists(), "the master left its metrics directory behind"
    assert len(in_flight_on) >= 2, f"the streams reached workers {sorted(in_flight_on)} only"
    database_url = gateway.process.env["GATEWAY_DATABASE_URL"]
    env = stack.env(tmp_path / "check", database_url, free_port())
    checked = run_gateway(["ledger", "check"], env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    verified = run_gateway(["audit", "verify"], stack.env(tmp_path / "verify", database_url, free_port()))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_worker_that_cannot_start_stops_the_master(stack: Stack, tmp_path: Path, redis_url: str) -> None:
    """A worker whose lifespan refuses to start (here: the audit head row is gone) does not leave a master serving
    with fewer workers, nor one forking replacements forever: the master stops every worker and exits 2, naming
    why."""
    url = f"sqlite:///{tmp_path / 'headless.db'}"
    engine = open_store(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_head"))
    engine.dispose()
    port = free_port()
    process = GatewayProcess(stack.env(tmp_path / "boot", url, port, GATEWAY_REDIS_URL=redis_url,
                                       GATEWAY_LOG_FORMAT="json"),
                             tmp_path / "gateway.log", port, ("--workers", str(WORKERS)))
    with contextlib.suppress(RuntimeError):  # it may exit before or after its port opened
        process.start(timeout=120)
    assert process.process is not None
    try:
        assert process.process.wait(timeout=120) == 2
    finally:
        process.stop()
    output = process.output()
    assert "audit head row is missing" in output
    assert "gateway: boot failed at workers: a worker could not start" in output
    assert output.count("gateway: boot failed") == 1  # the master's line; a worker never prints one
    forked = [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", output)]
    assert forked
    assert not any(Path(f"/proc/{pid}").exists() for pid in forked)
    assert not port_open("127.0.0.1", port)
