"""Master-key rotation runbook under continuous traffic: new key in Vault, rolling restart of two replicas.

No client request fails; afterwards both replicas hold the new master key in memory and the old one nowhere
(checked by scanning the processes' memory).

threat-model: TM-T4
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from gateway.devstack.openbao import dev_vault, free_port
from tests.support import GatewayProcess, Keys, Stack, bootstrapped_stack, run_gateway

pytestmark = [pytest.mark.fleet, pytest.mark.slow]

def memory_contains(pid: int, needle: bytes) -> bool:
    """Whether any readable mapping of process ``pid`` holds ``needle`` (root reads /proc/pid/mem)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as memory:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]", "[vvar_vclock]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                memory.seek(start)
                chunk = memory.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            if needle in chunk:
                return True
    return False


def test_rolling_restart_after_rotation_drops_nothing(tmp_path: Path, standin, stack: Stack) -> None:
    with dev_vault(tmp_path / "bao.log") as vault:
        local = bootstrapped_stack(vault.addr, vault.root_token, tmp_path, standin.base_url, "provider-key-rolling")
        old_master = local.master_key
        stack.canaries += local.canaries
        database_url = f"sqlite:///{tmp_path / 'gw.db'}"
        keys = Keys(local, database_url)
        key, _ = keys.customer()

        def replica(name: str) -> GatewayProcess:
            port = free_port()
            return GatewayProcess(local.env(tmp_path / name, database_url, port), tmp_path / f"{name}.log",
                                  port).start()

        live = [replica("a"), replica("b")]
        lock = threading.Lock()
        results: list[tuple[str, int | str]] = []
        stop = threading.Event()

        def traffic() -> None:
            turn = 0
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    with lock:
                        target = live[turn % len(live)]
                    turn += 1
                    try:
                        status: int | str = client.post(
                            target.base_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                            json={"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}],
                                  "max_tokens": 5}).status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    results.append((target.base_url, status))

        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            time.sleep(1)
            token_file = tmp_path / "operator-token"
            token_file.write_text(vault.root_token)
            token_file.chmod(0o600)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_"))}
            env["GATEWAY_VAULT_ADDR"] = vault.addr
            rotated = run_gateway(["secrets", "bootstrap", "--operator-token-file", str(token_file),
                                   "--credentials-dir", str(tmp_path / "c2"), "--rotate-master-key"], env)
            assert rotated.returncode == 0, rotated.stderr
            new_master = local.root().secrets.kv.v2.read_secret_version(
                path="gateway/core", raise_on_deleted_version=True)["data"]["data"]["master_key"]
            stack.canaries.append(new_master)
            assert new_master != old_master
            for old_name, new_name in (("a", "a2"), ("b", "b2")):
                fresh = replica(new_name)
                with lock:
                    live.append(fresh)
                    retiring = next(p for p in live if p.log_path.name == f"{old_name}.log")
                    live.remove(retiring)
                time.sleep(1.0)  # the load balancer's drain: nothing new reaches the retiring replica
                retiring.stop()  # SIGTERM: in-flight requests finish first
            time.sleep(1)
        finally:
            stop.set()
            worker.join(timeout=30)
        try:
            failures = [r for r in results if r[1] != 200]
            assert len(results) > 50 and failures == []
            for process in live:
                assert process.process is not None
                assert memory_contains(process.process.pid, new_master.encode())
                assert not memory_contains(process.process.pid, old_master.encode())
        finally:
            for process in live:
                process.stop()
