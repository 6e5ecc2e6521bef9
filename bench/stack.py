"""What the bench scripts share: a provider stand-in and a full gateway (OpenBao dev server, bootstrap, a funded
account, one customer key, `gateway serve`) as child processes on loopback. Not used by the tests."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.boot.bootstrap import bootstrap, issue_credentials, operator_client
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings
from gateway.credits.ledger import SqlLedger
from gateway.devstack.openbao import free_port, start_dev_vault, stop_process, wait_http
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import SqlKeyStore
from gateway.store.engine import open_store

BIN = Path(sys.executable).parent

POLICY = """version: 1
providers:
  standin:
    api_base: {base}
models:
  - name: chat-model
    provider: standin
    upstream_model: upstream-chat
    price: {{input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "2"}}
rate_limits:
  default_rpm: 1000000
  default_tpm: 1000000000
"""


@dataclass
class Gateway:
    url: str
    key: str
    process: subprocess.Popen[bytes]
    ledger: SqlLedger
    log_file: Path


def start_standin(children: list[subprocess.Popen[bytes]]) -> str:
    """The provider stand-in on a free port, keeping only its last 100 requests; returns its base URL (with /v1)."""
    port = free_port()
    children.append(subprocess.Popen([sys.executable, "-m", "gateway.devstack.fake_provider", "--port", str(port),
                                      "--keep", "100"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_http(f"http://127.0.0.1:{port}/_standin/requests")
    return f"http://127.0.0.1:{port}/v1"


def write_policy(work: Path, standin_base: str) -> Path:
    policy = work / "policy.yaml"
    policy.write_text(POLICY.format(base=standin_base))
    return policy


def start_gateway(work: Path, standin_base: str, children: list[subprocess.Popen[bytes]], *,
                  log_level: str = "INFO", extra_env: dict[str, str] | None = None,
                  serve_args: tuple[str, ...] = (), database_url: str | None = None) -> Gateway:
    """A full gateway against ``standin_base``: its own OpenBao, SQLite store, a funded account and one key.
    ``serve_args`` go to ``gateway serve`` (e.g. ``("--workers", "2")``, which needs GATEWAY_REDIS_URL in
    ``extra_env``); with workers, this returns once every worker has started. ``database_url``: another store
    than the SQLite file in ``work`` (e.g. an empty Postgres database)."""
    vault = start_dev_vault(work / "bao.log")
    children.append(vault.process)
    policy = write_policy(work, standin_base)
    settings = Settings(vault_addr=vault.addr)
    root = operator_client(settings, Secret(vault.root_token))
    bootstrap(root, settings, provider_keys={"standin": Secret("bench-" + secrets.token_urlsafe(16))},
              credentials_dir=work)
    core = root.secrets.kv.v2.read_secret_version(path="gateway/core", raise_on_deleted_version=True)
    database_url = database_url or f"sqlite:///{work / 'gw.db'}"
    engine = open_store(database_url)
    ledger = SqlLedger(engine)
    account = ledger.create_account("bench")
    ledger.top_up(account.id, 10**15, "bench")
    key, _ = KeyService(SqlKeyStore(engine), KeyHasher(core["data"]["data"]["pepper"].encode())).issue(
        KeyKind.CUSTOMER, name="bench", models=["chat-model"], account_id=account.id)
    issue_credentials(root, settings, work)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_"))}
    env.update({"GATEWAY_VAULT_ADDR": vault.addr, "GATEWAY_VAULT_ROLE_ID_FILE": str(work / "role_id"),
                "GATEWAY_VAULT_SECRET_ID_FILE": str(work / "secret_id"), "GATEWAY_DATABASE_URL": database_url,
                "GATEWAY_POLICY_FILE": str(policy), "GATEWAY_PORT": str(port), "GATEWAY_LOG_LEVEL": log_level,
                **(extra_env or {})})
    log_file = work / "gateway.log"
    with log_file.open("wb") as out:
        process = subprocess.Popen([str(BIN / "gateway"), "serve", *serve_args], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    children.append(process)
    wait_http(f"http://127.0.0.1:{port}/healthz", timeout=300)
    workers = int(serve_args[serve_args.index("--workers") + 1]) if "--workers" in serve_args else 1
    deadline = time.monotonic() + 300
    while log_file.read_text(errors="replace").count("gateway started") < workers:  # one line per worker's lifespan
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the gateway's workers did not start; see {log_file}")
        time.sleep(0.2)
    return Gateway(f"http://127.0.0.1:{port}", key, process, ledger, log_file)


@contextlib.contextmanager
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes started inside are stopped on the way out, last first."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            stop_process(child)
