"""Operations: health and readiness probes, the gateway's own metrics, graceful drain on SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from gateway.credits.ledger import SqlLedger
from gateway.devstack.openbao import free_port
from gateway.store.engine import open_store
from tests.support import GatewayProcess, Keys, RunningGateway, Stack, any_listed

HI = [{"role": "user", "content": "Hi"}]


def test_probes_answer_without_auth_and_reveal_nothing(gateway: RunningGateway) -> None:
    health = httpx.get(gateway.base_url + "/healthz")
    ready = httpx.get(gateway.base_url + "/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert httpx.post(gateway.base_url + "/healthz").status_code == 404


def test_metrics_count_requests_and_denials_without_identifiers(gateway: RunningGateway, stack: Stack) -> None:
    httpx.post(gateway.base_url + "/v1/chat/completions", json={"model": "chat-model", "messages": HI,
                                                                "max_tokens": 5},
               headers={"Authorization": f"Bearer {gateway.customer_key}"}, timeout=30)
    httpx.post(gateway.base_url + "/v1/chat/completions", json={}, headers={"Authorization": "Bearer nope"})
    metrics = httpx.get(gateway.base_url + "/admin/metrics",
                        headers={"Authorization": f"Bearer {gateway.admin_key}"}).text
    for expected in ('gateway_requests_total{route="/v1/chat/completions",status="200"}',
                     'gateway_denials_total{code="invalid_api_key"}', "gateway_reservations_open 0.0",
                     'gateway_upstream_seconds_bucket{le="0.5",route="/v1/chat/completions"}',
                     'gateway_auth_denials_total{reason="malformed"}'):
        assert expected in metrics, expected
    assert "key_" not in metrics and "acct_" not in metrics
    assert any_listed(metrics, stack.canaries) == []
    assert httpx.get(gateway.base_url + "/admin/metrics").status_code == 401


def test_sigterm_drains_in_flight_streams_then_exits(stack: Stack, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'drain.db'}"
    port = free_port()
    process = GatewayProcess(stack.env(tmp_path, database_url, port), tmp_path / "gateway.log", port).start()
    keys = Keys(stack, database_url)
    account = keys.account(1_000_000)
    key, _ = keys.customer(account_id=account)
    received: list[bytes] = []
    statuses: list[int] = []

    def slow_stream() -> None:
        with httpx.stream("POST", process.base_url + "/v1/chat/completions", timeout=30,
                          headers={"Authorization": f"Bearer {key}"},
                          json={"model": "slow-model", "messages": HI, "stream": True}) as response:
            statuses.append(response.status_code)
            received.extend(response.iter_bytes())

    client = threading.Thread(target=slow_stream)
    client.start()
    ledger = SqlLedger(open_store(database_url))
    deadline = time.monotonic() + 20
    while ledger.open_reservations() == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert process.process is not None
    process.process.send_signal(signal.SIGTERM)  # mid-stream
    client.join(timeout=30)
    # uvicorn re-raises the signal after its graceful shutdown, so the exit status is "terminated by SIGTERM".
    assert process.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert statuses == [200] and b"[DONE]" in b"".join(received)  # the stream finished
    assert ledger.open_reservations() == 0  # and was settled before the process exited
    state = ledger.get_account(account)
    assert state is not None and state.reserved_micro_usd == 0 and state.balance_micro_usd < 1_000_000
    assert ledger.check() == []
