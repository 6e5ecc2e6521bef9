"""Session fixtures: one real OpenBao, one provider stand-in, one bootstrapped Vault, one gateway process."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.boot.bootstrap import write_private_file
from gateway.devstack.openbao import DevVault, start_dev_vault
from gateway.devstack.postgres import fresh_database
from tests.support import (
    KindsStack,
    RunningGateway,
    Stack,
    StandIn,
    bootstrapped_stack,
    port_open,
    services_required,
    start_gateway,
    start_kinds_stack,
)
from tests.support_vertex import VertexStack, start_vertex_stack

# Tests import LiteLLM's types (the bridge) directly: without this its import tries to fetch a cost map from the
# internet (and retries for seconds when it cannot). The gateway sets it itself before importing LiteLLM.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
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


@pytest.fixture(scope="session")
def gateway(stack: Stack, workdir: Path) -> Iterator[RunningGateway]:
    running = start_gateway(stack, workdir, "gw-sqlite", f"sqlite:///{workdir / 'gateway.db'}")
    yield running
    running.process.stop()


@pytest.fixture(scope="session")
def kinds(stack: Stack, workdir: Path) -> Iterator[KindsStack]:
    """A gateway whose policy serves OpenAI, Anthropic and Azure OpenAI models on the stand-in's protocols."""
    running = start_kinds_stack(stack, workdir)
    yield running
    running.gateway.process.stop()
    running.standin.stop()


@pytest.fixture(scope="session")
def vertex(stack: Stack, workdir: Path) -> Iterator[VertexStack]:
    """A gateway whose policy serves Gemini models on Vertex AI, on the stand-in's token endpoint and Vertex AI."""
    running = start_vertex_stack(stack, workdir)
    yield running
    running.gateway.process.stop()
    running.standin.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the machine's Postgres; fails (not skips) under CI when Postgres is missing."""
    if not port_open(*POSTGRES):
        if services_required():
            pytest.fail("Postgres at 127.0.0.1:5432 is required (GATEWAY_REQUIRE_SERVICES=1) but not reachable")
        pytest.skip("Postgres at 127.0.0.1:5432 is not reachable on this machine")
    with fresh_database("gw_test_") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis; fails (not skips) under CI when it is missing."""
    if not port_open(*REDIS):
        if services_required():
            pytest.fail("Redis at 127.0.0.1:6379 is required (GATEWAY_REQUIRE_SERVICES=1) but not reachable")
        pytest.skip("Redis at 127.0.0.1:6379 is not reachable on this machine")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store on SQLite and, as a second run, on the machine's Postgres (a fresh database per session)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def pg_gateway(stack: Stack, workdir: Path, postgres_url: str) -> Iterator[RunningGateway]:
    running = start_gateway(stack, workdir, "gw-postgres", postgres_url)
    yield running
    running.process.stop()


__all__ = ["write_private_file"]
