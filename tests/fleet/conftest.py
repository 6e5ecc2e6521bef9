"""Fleet fixtures: two gateway processes sharing the machine's Postgres and Redis and one OpenBao."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import RunningGateway, Stack, start_gateway


@pytest.fixture(scope="session")
def fleet(stack: Stack, workdir: Path, postgres_url: str, redis_url: str) -> Iterator[tuple[RunningGateway, ...]]:
    replicas = tuple(start_gateway(stack, workdir, f"replica-{name}", postgres_url, GATEWAY_REDIS_URL=redis_url)
                     for name in ("a", "b"))
    yield replicas
    for replica in replicas:
        replica.process.stop()
