"""SIGKILL mid-request: the reservation survives the crash, the sweeper releases it, parity holds.

threat-model: TM-T9
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from gateway.credits.ledger import SqlLedger
from gateway.devstack.openbao import free_port
from gateway.store.engine import open_store
from tests.support import GatewayProcess, Keys, Stack, run_gateway


def _start(stack: Stack, folder: Path, database_url: str) -> GatewayProcess:
    port = free_port()
    return GatewayProcess(stack.env(folder, database_url, port), folder / "gateway.log", port).start()


@pytest.mark.slow
def test_sigkill_mid_request_then_restart_and_sweep(stack: Stack, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'crash.db'}"
    first = _start(stack, tmp_path / "first", database_url)
    keys = Keys(stack, database_url)
    account = keys.account(1_000_000)
    key, _ = keys.customer(account_id=account)
    ledger = SqlLedger(open_store(database_url))

    def slow_stream() -> None:
        try:
            with httpx.stream("POST", first.base_url + "/v1/chat/completions", timeout=30,
                              headers={"Authorization": f"Bearer {key}"},
                              json={"model": "slow-model", "messages": [{"role": "user", "content": "Hi"}],
                                    "stream": True}) as response:
                for _ in response.iter_bytes():
                    pass
        except httpx.HTTPError:
            pass  # the server died under us: expected

    client = threading.Thread(target=slow_stream)
    client.start()
    deadline = time.monotonic() + 20
    while ledger.open_reservations() == 0:
        assert time.monotonic() < deadline, "the request never reserved"
        time.sleep(0.02)
    assert first.process is not None
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    client.join(timeout=30)
    assert ledger.open_reservations() == 1  # the crash left the reservation open
    held = ledger.get_account(account)
    assert held is not None and held.reserved_micro_usd > 0

    second = _start(stack, tmp_path / "second", database_url)
    try:
        env = second.env
        swept = run_gateway(["ledger", "sweep", "--ttl-seconds", "0"], env)
        assert swept.returncode == 0, swept.stderr
        assert json.loads(swept.stdout) == {"expired": 1, "open": 0}
        checked = run_gateway(["ledger", "check"], env)
        assert checked.returncode == 0 and "parity holds" in checked.stdout
        after = ledger.get_account(account)
        assert after is not None and (after.balance_micro_usd, after.reserved_micro_usd) == (1_000_000, 0)
        # The restarted gateway serves the same key.
        reply = httpx.post(second.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                           json={"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}],
                                 "max_tokens": 5}, timeout=30)
        assert reply.status_code == 200
    finally:
        second.stop()


def test_ledger_check_cli_names_a_drifting_account(stack: Stack, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'drift.db'}"
    keys = Keys(stack, database_url)
    account = keys.account(500)
    env = stack.env(tmp_path, database_url, free_port())
    assert run_gateway(["ledger", "check"], env).returncode == 0
    import sqlalchemy as sa

    with open_store(database_url).begin() as conn:
        conn.execute(sa.text("UPDATE accounts SET balance_micro_usd = 400 WHERE id = :id"), {"id": account})
    result = run_gateway(["ledger", "check"], env)
    assert result.returncode == 1
    assert f"account {account} balance_micro_usd: stored 400, ledger says 500" in result.stderr


@pytest.mark.slow
def test_accounts_cli(stack: Stack, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'cli.db'}"
    runs = iter(range(100))

    def env() -> dict[str, str]:
        # Mutating commands write audit entries, so they read the audit key from Vault: a fresh secret_id each.
        return stack.env(tmp_path / f"run{next(runs)}", database_url, free_port())

    created = run_gateway(["accounts", "create", "--name", "acme"], env())
    assert created.returncode == 0, created.stderr
    account_id = json.loads(created.stdout)["id"]
    credited = run_gateway(["accounts", "credit", account_id, "--amount-micro-usd", "2500000", "--reason", "po 7"],
                           env())
    assert credited.returncode == 0 and json.loads(credited.stdout)["balance_micro_usd"] == 2_500_000
    shown = json.loads(run_gateway(["accounts", "show", account_id], env()).stdout)
    assert shown["recent_ledger"][0]["reason"] == "po 7"
    assert run_gateway(["accounts", "credit", account_id, "--amount-micro-usd", "0", "--reason", "x"],
                       env()).returncode != 0
    assert run_gateway(["accounts", "show", "acct_missing"], env()).returncode != 0
    missing_account = run_gateway(["keys", "create", "--name", "k", "--model", "chat-model", "--account-id",
                                   "acct_missing"], env())
    assert missing_account.returncode != 0 and "no account" in missing_account.stderr
    verified = run_gateway(["audit", "verify"], env())
    assert verified.returncode == 0 and "audit chain intact (2 entries)" in verified.stdout
