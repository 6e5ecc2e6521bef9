"""Fleet fixtures: two gateway processes sharing the machine's Postgres and Redis and one OpenBao."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import RunningGateway, Stack, port_open, services_required, start_gateway

REDIS = ("127.0.0.1", 6379)


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not port_open(*REDIS):
        if services_required():
            pytest.fail("Redis at 127.0.0.1:6379 is required (GATEWAY_REQUIRE_SERVICES=1) but not reachable")
        pytest.skip("Redis at 127.0.0.1:6379 is not reachable on this machine")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def fleet(stack: Stack, workdir: Path, postgres_url: str, redis_url: str) -> Iterator[tuple[RunningGateway, ...]]:
    replicas = tuple(start_gateway(stack, workdir, f"replica-{name}", postgres_url, GATEWAY_REDIS_URL=redis_url)
                     for name in ("a", "b"))
    yield replicas
    for replica in replicas:
        replica.process.stop()
