"""Engine options that keep a store problem from becoming a hang."""

from __future__ import annotations

import socket
import threading

import pytest
import sqlalchemy as sa

from gateway.store import engine as engine_module
from gateway.store.engine import make_engine


def test_a_postgres_that_never_answers_fails_the_connection_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "CONNECT_TIMEOUT_SECONDS", 1)  # the default's path, without its 10 s wait
    # A listener that takes the TCP connection (the kernel completes the handshake from the backlog) and never speaks
    # Postgres: what a wedged proxy or a firewall that drops replies looks like to libpq.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    outcome: list[BaseException | None] = []

    def connect() -> None:
        engine = make_engine(f"postgresql+psycopg://gateway@127.0.0.1:{port}/gateway")
        try:
            with engine.connect():
                outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)
        finally:
            engine.dispose()

    try:
        worker = threading.Thread(target=connect, daemon=True)
        worker.start()
        # A liveness bound, not a performance figure: without a connect timeout libpq waits here for ever.
        worker.join(60)
        assert not worker.is_alive(), "the connection to a silent server never gave up"
        assert len(outcome) == 1 and isinstance(outcome[0], sa.exc.OperationalError), outcome
    finally:
        silent.close()


class _Captured(Exception):
    pass


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql+psycopg://gateway@db/gateway", 10),
    ("postgresql+psycopg://gateway@db/gateway?connect_timeout=3", "3"),
])
def test_postgres_gets_a_connect_timeout_unless_the_url_sets_one(url: str, expected: object) -> None:
    engine = make_engine(url)
    seen: dict[str, object] = {}

    @sa.event.listens_for(engine, "do_connect")
    def capture(_dialect: object, _record: object, _args: object, params: dict[str, object]) -> None:
        seen.update(params)
        raise _Captured  # what libpq would be given; no connection is made

    try:
        with pytest.raises(_Captured), engine.connect():
            pass
        assert seen["connect_timeout"] == expected
    finally:
        engine.dispose()
