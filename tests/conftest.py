"""Session fixtures: one real OpenBao, one provider stand-in, one bootstrapped Vault, one gateway process."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.boot.bootstrap import write_private_file
from gateway.credits.ledger import SqlLedger
from gateway.devstack.openbao import DevVault, free_port, start_dev_vault
from gateway.devstack.postgres import fresh_database
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import SqlKeyStore
from gateway.store.engine import open_store
from tests.support import GatewayProcess, Stack, StandIn, bootstrapped_stack, port_open, services_required

POSTGRES = ("127.0.0.1", 5432)
# Fixtures that need the machine's Postgres, and the parameter values that pick it where a fixture decides at run time
# (store_url, any_gateway, the concurrency test's backend).
POSTGRES_FIXTURES = {"postgres_url", "pg_gateway"}
POSTGRES_PARAMS = {"postgres", "pg_gateway"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the Postgres store ``postgres``, so ``-m "not postgres"`` runs without it."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())) or any(
                isinstance(value, str) and value in POSTGRES_PARAMS for value in params):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gw")
    path.chmod(0o700)
    return path


@pytest.fixture(scope="session")
def dev_vault(workdir: Path) -> Iterator[DevVault]:
    vault = start_dev_vault(workdir / "openbao.log")
    yield vault
    vault.stop()


@pytest.fixture(scope="session")
def standin() -> Iterator[StandIn]:
    server = StandIn().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(dev_vault: DevVault, standin: StandIn, workdir: Path) -> Stack:
    return bootstrapped_stack(dev_vault.addr, dev_vault.root_token, workdir, standin.base_url,
                              "provider-canary-" + secrets.token_urlsafe(24))


class Keys:
    """Issues keys straight into a gateway's store (the test holds the pepper, as the host CLI would)."""

    def __init__(self, stack: Stack, database_url: str) -> None:
        self.stack = stack
        engine = open_store(database_url)
        self.hasher = KeyHasher(stack.pepper.encode())
        self.service = KeyService(SqlKeyStore(engine), self.hasher)
        self.ledger = SqlLedger(engine)
        # One well-funded account for keys whose tests are not about credit.
        self.rich_account = self.account(10**12)

    def account(self, credit: int) -> str:
        account = self.ledger.create_account("test")
        if credit:
            self.ledger.top_up(account.id, credit, "test credit")
        return account.id

    def customer(self, models: list[str] | None = None, account_id: str | None = None,
                 **kwargs: object) -> tuple[str, str]:
        plaintext, record = self.service.issue(
            KeyKind.CUSTOMER, name="test",
            models=models or ["chat-model", "text-model", "embed-model", "failing-model", "slow-model",
                              "echo-error-model"],
            account_id=account_id or self.rich_account, **kwargs,  # type: ignore[arg-type]
        )
        self.stack.canaries += [plaintext, self.hasher.digest(plaintext)]
        return plaintext, record.id

    def admin(self) -> tuple[str, str]:
        plaintext, record = self.service.issue(KeyKind.ADMIN, name="test admin")
        self.stack.canaries += [plaintext, self.hasher.digest(plaintext)]
        return plaintext, record.id


class RunningGateway:
    def __init__(self, process: GatewayProcess, keys: Keys) -> None:
        self.process = process
        self.keys = keys
        self.base_url = process.base_url
        self.admin_key, _ = keys.admin()
        self.customer_key, self.customer_key_id = keys.customer()


def _start_gateway(stack: Stack, workdir: Path, name: str, database_url: str, **env: str) -> RunningGateway:
    port = free_port()
    folder = workdir / name
    environment = stack.env(folder, database_url, port, GATEWAY_LOG_LEVEL="DEBUG", LITELLM_LOG="DEBUG", **env)
    process = GatewayProcess(environment, folder / "gateway.log", port).start()
    return RunningGateway(process, Keys(stack, database_url))


@pytest.fixture(scope="session")
def gateway(stack: Stack, workdir: Path) -> Iterator[RunningGateway]:
    running = _start_gateway(stack, workdir, "gw-sqlite", f"sqlite:///{workdir / 'gateway.db'}")
    yield running
    running.process.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the machine's Postgres; fails (not skips) under CI when Postgres is missing."""
    if not port_open(*POSTGRES):
        if services_required():
            pytest.fail("Postgres at 127.0.0.1:5432 is required (GATEWAY_REQUIRE_SERVICES=1) but not reachable")
        pytest.skip("Postgres at 127.0.0.1:5432 is not reachable on this machine")
    with fresh_database("gw_test_") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store on SQLite and, as a second run, on the machine's Postgres (a fresh database per session)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def pg_gateway(stack: Stack, workdir: Path, postgres_url: str) -> Iterator[RunningGateway]:
    running = _start_gateway(stack, workdir, "gw-postgres", postgres_url)
    yield running
    running.process.stop()


__all__ = ["Keys", "RunningGateway", "write_private_file"]
