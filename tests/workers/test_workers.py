"""``gateway serve --workers 2``: one boot, forked workers, and every invariant of one process kept across them
(rate limits, revocation, the audit chain, the ledger, metrics), on SQLite and on Postgres.

threat-model: TM-T18, TM-D7
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import httpx
import pytest

from gateway.devstack.openbao import free_port
from tests.support import RunningGateway, Stack, run_gateway, together, wait_until_settled
from tests.workers.conftest import WORKERS, children, master_pid, metrics_dir, requests_by_pid

pytestmark = pytest.mark.workers

HI = [{"role": "user", "content": "Hi"}]


def _chat(gateway: RunningGateway, key: str) -> int:
    # A new connection per call: the kernel hands each to whichever worker accepts it.
    return httpx.post(gateway.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "chat-model", "messages": HI, "max_tokens": 5}, timeout=60).status_code


def _models(gateway: RunningGateway, key: str) -> int:
    return httpx.get(gateway.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"},
                     timeout=60).status_code


def _admin(gateway: RunningGateway, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, gateway.base_url + path, headers={"Authorization": f"Bearer {gateway.admin_key}"},
                         timeout=60, **kwargs)  # type: ignore[arg-type]


def _served_by_every_worker(gateway: RunningGateway, route: str, before: dict[int, float]) -> None:
    after = requests_by_pid(gateway, route)
    served = {pid for pid, count in after.items() if count > before.get(pid, 0)}
    assert len(served) >= WORKERS, f"requests reached workers {sorted(served)} only; the test needs every worker"


def test_secrets_reach_the_workers_by_fork_only(workers_gateway: RunningGateway, stack: Stack) -> None:
    """The workers are children of the one master that logged in (the single-use secret_id allows one login), and
    neither their environment nor their command line holds a secret."""
    pids = children(master_pid(workers_gateway))
    assert len(pids) == WORKERS
    for pid in pids:
        exposed = Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()
        assert [c for c in stack.canaries if c and c.encode() in exposed] == []
    assert workers_gateway.process.output().count("Booting worker with pid") == WORKERS
    folder = metrics_dir(workers_gateway)
    assert folder.stat().st_mode & 0o777 == 0o700
    files = list(folder.iterdir())
    assert files, "no worker wrote its metrics"
    for path in files:
        content = path.read_bytes()
        assert [c for c in stack.canaries if c and c.encode() in content] == []


def test_rate_limit_is_the_configured_one_across_workers(workers_gateway: RunningGateway) -> None:
    """rpm_limit=6 admits exactly 6 of 24 simultaneous requests, however the workers share them (not 6 per worker)."""
    key, _ = workers_gateway.keys.customer(rpm_limit=6)
    before = requests_by_pid(workers_gateway, "/v1/chat/completions")
    statuses = together([lambda: _chat(workers_gateway, key) for _ in range(24)])
    assert sorted(statuses).count(200) == 6, statuses
    assert statuses.count(429) == 18, statuses
    _served_by_every_worker(workers_gateway, "/v1/chat/completions", before)


def test_a_revocation_through_one_worker_holds_on_every_worker(workers_gateway: RunningGateway) -> None:
    """Each round: every worker has the key cached and accepted it; once the revoke call (served by any worker)
    has returned, 0 of 48 simultaneous requests on new connections are accepted, on any worker."""
    for _ in range(4):
        key, key_id = workers_gateway.keys.customer()
        before = requests_by_pid(workers_gateway, "/v1/models")
        assert together([functools.partial(_models, workers_gateway, key) for _ in range(24)]) == [200] * 24
        _served_by_every_worker(workers_gateway, "/v1/models", before)
        revoked = _admin(workers_gateway, "POST", f"/admin/keys/{key_id}/revoke")
        assert revoked.status_code == 200, revoked.text
        before = requests_by_pid(workers_gateway, "/v1/models")
        assert together([functools.partial(_models, workers_gateway, key) for _ in range(48)]) == [401] * 48
        _served_by_every_worker(workers_gateway, "/v1/models", before)


def test_the_audit_chain_stays_one_chain_with_concurrent_writers(workers_gateway: RunningGateway, stack: Stack,
                                                                 tmp_path: Path) -> None:
    """30 simultaneous audited admin changes through both workers append 30 entries to one unbroken chain."""
    before = requests_by_pid(workers_gateway, "/admin")
    created = together([lambda: _admin(workers_gateway, "POST", "/admin/accounts", json={"name": "concurrent"})
                        for _ in range(30)])
    assert [response.status_code for response in created] == [201] * 30
    _served_by_every_worker(workers_gateway, "/admin", before)
    ids = {response.json()["id"] for response in created}
    listed = _admin(workers_gateway, "GET", "/admin/audit", params={"event": "account_created", "limit": 1000}).json()
    assert ids <= {item["subject"] for item in listed["data"]}
    database_url = workers_gateway.process.env["GATEWAY_DATABASE_URL"]
    verified = run_gateway(["audit", "verify"], stack.env(tmp_path / "verify", database_url, free_port()))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_ledger_stays_exact_across_workers(workers_gateway: RunningGateway, stack: Stack, tmp_path: Path) -> None:
    """40 simultaneous paid requests from one account through both workers: every one settled, the balance is the
    credit less what the ledger charged, and the parity check finds no drift."""
    credit = 10**9
    account = workers_gateway.keys.account(credit)
    key, _ = workers_gateway.keys.customer(account_id=account)
    before = requests_by_pid(workers_gateway, "/v1/chat/completions")
    assert together([lambda: _chat(workers_gateway, key) for _ in range(40)]) == [200] * 40
    _served_by_every_worker(workers_gateway, "/v1/chat/completions", before)
    state = wait_until_settled(workers_gateway, account)
    assert state["reserved_micro_usd"] == 0
    assert credit - state["balance_micro_usd"] > 0
    database_url = workers_gateway.process.env["GATEWAY_DATABASE_URL"]
    checked = run_gateway(["ledger", "check"], stack.env(tmp_path / "check", database_url, free_port()))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _requests_total(gateway: RunningGateway, route: str, status: str) -> float:
    text = _admin(gateway, "GET", "/admin/metrics").text
    line = f'gateway_requests_total{{route="{route}",status="{status}"}} '
    values = [float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line)]
    return values[0] if values else 0.0


def test_metrics_add_up_over_the_workers(workers_gateway: RunningGateway) -> None:
    """/admin/metrics, whichever worker answers it, counts the requests every worker served."""
    key, _ = workers_gateway.keys.customer()
    total_before = _requests_total(workers_gateway, "/v1/models", "200")
    before = requests_by_pid(workers_gateway, "/v1/models")
    assert together([lambda: _models(workers_gateway, key) for _ in range(30)]) == [200] * 30
    _served_by_every_worker(workers_gateway, "/v1/models", before)
    for _ in range(4):  # each scrape may land on either worker: every one must see the sum
        assert _requests_total(workers_gateway, "/v1/models", "200") == total_before + 30
    text = _admin(workers_gateway, "GET", "/admin/metrics").text
    # The store-wide gauge once (read at the scrape, not one copy per worker), and only the gateway's own families.
    gauge = [row for row in text.splitlines() if row.startswith("gateway_reservations_open")]
    assert len(gauge) == 1 and re.fullmatch(r"gateway_reservations_open \d+\.0", gauge[0]), gauge
    assert [row for row in text.splitlines() if row and not row.startswith(("# ", "gateway_"))] == []
