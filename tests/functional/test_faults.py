"""Faults: nothing lost, nothing leaked, parity holds afterwards.

Covered elsewhere: Redis down (tests/fleet), SIGKILL mid-request then restart and sweep (test_credits_crash),
clients disconnecting mid-stream (test_credits_concurrency), upstream 5xx (test_errors, test_credits).

threat-model: TM-D3, TM-T9
"""

from __future__ import annotations

import glob
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from gateway.credits.ledger import SqlLedger
from gateway.devstack.openbao import dev_vault, free_port
from gateway.store.engine import open_store
from tests.support import (
    GatewayProcess,
    Keys,
    Stack,
    any_listed,
    bootstrapped_stack,
    port_open,
    run_gateway,
    start_gateway,
    write_policy,
)

pytestmark = pytest.mark.slow

HI = [{"role": "user", "content": "Hi"}]


def _chat(base_url: str, key: str, model: str = "chat-model") -> httpx.Response:
    return httpx.post(base_url + "/v1/chat/completions", json={"model": model, "messages": HI, "max_tokens": 5},
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_upstream_timeout_is_a_504_and_charges_the_reservation(stack: Stack, tmp_path: Path, standin) -> None:
    policy = write_policy(tmp_path / "policy.yaml", standin.base_url, extra_models="""  - name: very-slow-model
    provider: standin
    upstream_model: standin-slow-3000
    mode: chat
    price: {input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "2"}
""")
    policy.write_text(policy.read_text() + "upstream:\n  timeout_seconds: 1\n")
    database_url = f"sqlite:///{tmp_path / 'gw.db'}"
    port = free_port()
    env = stack.env(tmp_path / "g", database_url, port, GATEWAY_POLICY_FILE=str(policy))
    process = GatewayProcess(env, tmp_path / "gw.log", port).start()
    try:
        keys = Keys(stack, database_url)
        account = keys.account(100_000)
        key, _ = keys.customer(models=["very-slow-model", "chat-model"], account_id=account)
        # Warm up: a fresh process's first LiteLLM call pays one-off set-up that can itself exceed a 1 s timeout.
        served = 0
        for _ in range(5):
            if _chat(process.base_url, key).status_code == 200:
                served += 1
                break
        assert served == 1, "the warm-up request never succeeded"
        started = time.monotonic()
        response = _chat(process.base_url, key, "very-slow-model")
        elapsed = time.monotonic() - started
        assert response.status_code == 504, (response.status_code, response.text, elapsed)
        assert elapsed < 2.9, elapsed  # answered before the stand-in would have (3 s)
        assert response.json()["error"]["code"] == "upstream_timeout"
        assert _chat(process.base_url, key).status_code == 200  # other models are unaffected
        ledger = SqlLedger(open_store(database_url))
        state = ledger.get_account(account)
        # The call had gone out: the provider may run it to its bound and bill it, and a client can make any call time
        # out (ask for a long answer), so the timed-out request pays its whole reservation (threat-model TM-T9).
        timed_out = response.headers["x-request-id"]
        entries = {(e["kind"], e["request_id"]): e["amount_micro_usd"] for e in ledger.recent_entries(account)}
        reserved = entries[("reserve", timed_out)]
        assert ("release", timed_out) not in entries and entries[("settle", timed_out)] == reserved > 0
        assert state is not None and state.reserved_micro_usd == 0
        assert state.balance_micro_usd == 100_000 - 2 * 23 - reserved
        assert ledger.check() == [] and any_listed(response.text, stack.canaries) == []
    finally:
        process.stop()


def test_vault_unreachable_after_boot_changes_nothing(tmp_path: Path, standin) -> None:
    """After boot the gateway holds no Vault token and needs no Vault: it keeps serving and stays ready."""
    with dev_vault(tmp_path / "bao.log") as vault:
        local = bootstrapped_stack(vault.addr, vault.root_token, tmp_path, standin.base_url,
                                   "provider-key-vault-down")
        database_url = f"sqlite:///{tmp_path / 'gw.db'}"
        port = free_port()
        process = GatewayProcess(local.env(tmp_path / "g", database_url, port), tmp_path / "gw.log", port).start()
        key, _ = Keys(local, database_url).customer()
    try:
        assert any_listed(process.output(), local.canaries) == []
        assert not port_open("127.0.0.1", int(vault.addr.rsplit(":", 1)[1]))  # Vault is gone
        assert _chat(process.base_url, key).status_code == 200
        assert httpx.get(process.base_url + "/readyz").status_code == 200
    finally:
        process.stop()


def _pg_cluster() -> tuple[str, str] | None:
    versions = sorted(Path(p).name for p in glob.glob("/etc/postgresql/*"))
    return (versions[-1], "main") if versions else None


def test_postgres_restart_mid_traffic(stack: Stack, workdir: Path, postgres_url: str) -> None:
    cluster = _pg_cluster()
    if cluster is None:
        pytest.skip("no local Postgres cluster to restart")
    running = start_gateway(stack, workdir, "pg-restart", postgres_url)
    account = running.keys.account(10**9)
    key, _ = running.keys.customer(account_id=account)
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                statuses.append(_chat(running.base_url, key).status_code)
            except httpx.HTTPError:
                statuses.append(-1)
            time.sleep(0.02)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(1.0)
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *cluster, "restart"], check=True, timeout=60)
        restarted = len(statuses)
        time.sleep(3.0)
        deadline = time.monotonic() + 30
        while not (len(statuses) > restarted and statuses[-1] == 200):
            assert time.monotonic() < deadline, "traffic did not recover after the restart"
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join(timeout=30)
    # While Postgres was down: 503 (fail closed) or a finished 200, never another error, never a pass without a
    # reservation; afterwards traffic recovered on its own (pool pre-ping).
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses[-1] == 200
    env = stack.env(workdir / "pg-restart-cli", postgres_url, free_port())
    swept = run_gateway(["ledger", "sweep", "--ttl-seconds", "0"], env)
    assert swept.returncode == 0, swept.stderr
    assert run_gateway(["ledger", "check"], env).returncode == 0
    assert any_listed(running.process.output(), stack.canaries) == []
    running.process.stop()
