"""The Postgres and Redis passwords from Vault: written by ``gateway secrets bootstrap`` from 0600 files, read at boot
with the other secrets, handed to the drivers in memory; a wrong or missing one stops the boot with one line and exit
code 2; none of them shows in the environment, a log, an error line or a file the gateway wrote.

What the Postgres tests prove, and how: the machine's Postgres service trusts every connection on 127.0.0.1
(pg_hba ``trust``), so it never asks for a password and cannot tell a right one from a wrong one. These tests start a
second, throwaway cluster from the machine's Postgres binaries whose TCP connections need ``scram-sha-256`` (the test
sets up its roles over a Unix socket in the cluster's own folder, which that cluster trusts). There the gateway gets in
only with the password from Vault: without it, or with a wrong one, the server refuses. Redis is a throwaway
``redis-server`` started by the test, its ``requirepass`` set at run time (``CONFIG SET``: no command line holds it).
The tests that need Postgres' binaries carry the ``postgres`` mark, as those on the machine's service do.

threat-model: TM-I7, TM-T14
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from gateway.devstack.openbao import free_port, stop_process
from tests.support import GatewayProcess, Stack, any_listed, port_open, run_gateway, services_required

CHAT_MESSAGES = [{"role": "user", "content": "Hi"}]
APP_USER = "gateway_app"
APP_DATABASE = "gw"


def _missing(what: str) -> None:
    if services_required():
        pytest.fail(f"{what} is required (GATEWAY_REQUIRE_SERVICES=1) but not found on this machine")
    pytest.skip(f"{what} is not found on this machine")


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"{what} did not start:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)


# ---- the servers ---------------------------------------------------------------------------------------------------


@dataclass
class ScramPostgres:
    """A throwaway cluster: TCP on 127.0.0.1 needs scram-sha-256; its Unix socket (for the test's set-up) is trusted."""

    port: int
    socket_dir: Path

    def url(self, user: str = APP_USER) -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{APP_DATABASE}"

    def admin(self) -> object:
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="admin", dbname="postgres",
                               autocommit=True)

    def set_password(self, password: str, user: str = APP_USER) -> None:
        from psycopg import sql

        with self.admin() as conn:  # type: ignore[attr-defined]
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(password)))


def _postgres_bindir() -> Path | None:
    for candidate in [shutil.which("initdb"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)]:
        if candidate and Path(candidate).with_name("postgres").is_file():
            return Path(candidate).parent
    return None


@pytest.fixture(scope="module")
def scram_postgres() -> Iterator[ScramPostgres]:
    bindir = _postgres_bindir()
    if bindir is None:
        _missing("Postgres' server binaries (initdb, postgres)")
        raise AssertionError  # unreachable: _missing fails or skips
    folder = Path(tempfile.mkdtemp(prefix="gw-scram-pg-"))
    as_user: dict[str, object] = {}
    if os.geteuid() == 0:
        # initdb and postgres refuse to run as root: the cluster runs as the machine's postgres user.
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            _missing("a 'postgres' user to run a throwaway cluster as")
            raise AssertionError from None
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    data = folder / "data"
    log = folder / "server.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "admin", "--auth-local=trust",
                        "--auth-host=scram-sha-256", "-N", "-E", "UTF8", "--no-instructions"],
                       check=True, capture_output=True, timeout=120, **as_user)  # type: ignore[call-overload]
        port = free_port()
        with open(log, "ab") as out:
            process = subprocess.Popen(  # type: ignore[call-overload]
                [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                 "-c", f"unix_socket_directories={data}", "-c", "fsync=off"],
                stdout=out, stderr=subprocess.STDOUT, **as_user)
        _wait_for_port(process, port, log, "the throwaway Postgres")
        server = ScramPostgres(port, data)
        from psycopg import sql

        with server.admin() as conn:  # type: ignore[attr-defined]
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(APP_USER)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(APP_DATABASE),
                                                                       sql.Identifier(APP_USER)))
        yield server
    finally:
        if process is not None:
            stop_process(process, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class PasswordRedis:
    port: int

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def set_password(self, current: str | None, new: str) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, password=current)
        try:
            client.config_set("requirepass", new)
        finally:
            client.close()


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasswordRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server")
        raise AssertionError
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = folder / "server.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                    "no", "--dir", str(folder)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(process, port, log, "the throwaway Redis")
        yield PasswordRedis(port)
    finally:
        stop_process(process)


# ---- the Vault side ------------------------------------------------------------------------------------------------


@dataclass
class Datastores:
    stack: Stack
    postgres: ScramPostgres
    redis: PasswordRedis
    postgres_password: str
    redis_password: str
    operator_files: tuple[Path, ...]
    bootstrap_output: str

    def env(self, folder: Path, port: int | None = None, **overrides: str) -> dict[str, str]:
        """A gateway's environment: the throwaway stores, both passwords from Vault, no libpq password source."""
        settings = {"GATEWAY_REDIS_URL": self.redis.url(), "GATEWAY_DATABASE_PASSWORD_FROM_VAULT": "true",
                    "GATEWAY_REDIS_PASSWORD_FROM_VAULT": "true", "PGPASSFILE": str(folder / "no-pgpass")}
        env = self.stack.env(folder, self.postgres.url(), port or free_port(), **{**settings, **overrides})
        env.pop("PGPASSWORD", None)
        return {k: v for k, v in env.items() if v != ""}


def _operator_file(folder: Path, name: str, content: str, mode: int = 0o600) -> Path:
    path = folder / name
    path.write_text(content)
    path.chmod(mode)
    return path


def _bootstrap(stack: Stack, folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    token_file = _operator_file(folder, "operator.token", stack.root_token)
    env = stack.env(folder / "env", "sqlite://", free_port())
    return run_gateway(["secrets", "bootstrap", "--operator-token-file", str(token_file), "--credentials-dir",
                        str(folder / "boot"), *options], env)


@pytest.fixture(scope="module")
def datastores(stack: Stack, scram_postgres: ScramPostgres, password_redis: PasswordRedis,
               tmp_path_factory: pytest.TempPathFactory) -> Datastores:
    """Both passwords set on the servers, written to Vault by ``gateway secrets bootstrap`` from 0600 files."""
    folder = tmp_path_factory.mktemp("datastores")
    folder.chmod(0o700)
    postgres_password, redis_password = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    stack.canaries += [postgres_password, redis_password]
    scram_postgres.set_password(postgres_password)
    password_redis.set_password(None, redis_password)
    pg_file = _operator_file(folder, "pg.password", postgres_password + "\n")
    redis_file = _operator_file(folder, "redis.password", redis_password)
    result = _bootstrap(stack, folder, "--postgres-password-file", str(pg_file), "--redis-password-file",
                        str(redis_file))
    assert result.returncode == 0, result.stderr[-2000:]
    return Datastores(stack, scram_postgres, password_redis, postgres_password, redis_password,
                      (pg_file, redis_file, folder / "operator.token"), result.stdout + result.stderr)


def _one_line(result: subprocess.CompletedProcess[str], stack: Stack, step: str, words: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.startswith("gateway: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert f"at {step}: " in lines[0] or f"failed at {step}:" in lines[0], lines[0]
    assert words in lines[0], lines[0]
    assert any_listed(result.stdout + result.stderr, stack.canaries) == []
    return lines[0]


# ---- settings and the engine (no Vault) ----------------------------------------------------------------------------


@pytest.mark.parametrize(("environment", "words"), [
    ({"GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0", "GATEWAY_REDIS_PASSWORD_FILE": "/x",
      "GATEWAY_REDIS_PASSWORD_FROM_VAULT": "true"}, "GATEWAY_REDIS_PASSWORD_FROM_VAULT: "),
    ({"GATEWAY_REDIS_PASSWORD_FROM_VAULT": "true"}, "GATEWAY_REDIS_URL is not"),
    ({"GATEWAY_DATABASE_PASSWORD_FROM_VAULT": "true"}, "postgresql URL"),
    ({"GATEWAY_DATABASE_URL": "postgresql+psycopg://gw@127.0.0.1/gw", "GATEWAY_DATABASE_PASSWORD_FROM_VAULT": "true",
      "PGPASSWORD": "hunter2-canary"}, "PGPASSWORD"),
])
def test_two_sources_for_one_password_are_refused(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str],
                                                  words: str) -> None:
    """threat-model: TM-I7"""
    from gateway.boot.errors import BootError
    from gateway.boot.settings import load_settings

    for name in list(os.environ):
        if name.startswith("GATEWAY_") or name == "PGPASSWORD":
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(BootError) as refused:
        load_settings()
    assert refused.value.step == "settings" and words in refused.value.message
    assert "hunter2-canary" not in refused.value.line()


@pytest.mark.postgres
def test_the_engine_holds_the_password_outside_its_url(scram_postgres: ScramPostgres) -> None:
    import sqlalchemy as sa
    from psycopg import sql

    from gateway.store.engine import make_engine

    user, password = "probe_" + secrets.token_hex(4), secrets.token_urlsafe(32)
    with scram_postgres.admin() as conn:  # type: ignore[attr-defined]
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(password)))
    # The cluster really asks: no password, or a wrong one, is refused.
    for wrong in (None, password[:-1] + ("A" if password[-1] != "A" else "B")):
        engine = make_engine(scram_postgres.url(user), password=wrong)
        with pytest.raises(sa.exc.OperationalError) as refused:
            engine.connect().close()
        assert "authentication failed" in str(refused.value) or "no password supplied" in str(refused.value)
        assert wrong is None or wrong not in str(refused.value)
        engine.dispose()
    engine = make_engine(scram_postgres.url(user), password=password)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT current_user").scalar() == user
    shown = [repr(engine), str(engine.url), repr(engine.url), engine.url.render_as_string(hide_password=False)]
    assert engine.url.password is None and not any(password in text for text in shown)
    engine.dispose()
    with pytest.raises(ValueError, match="Postgres only"):
        make_engine("sqlite://", password=password)


# ---- bootstrap -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_bootstrap_writes_the_datastore_passwords_and_refuses_bad_ones(datastores: Datastores, tmp_path: Path) -> None:
    stack = datastores.stack
    stored = stack.root().secrets.kv.v2.read_secret_version(path="gateway/datastores",
                                                            raise_on_deleted_version=True)["data"]["data"]
    assert stored == {"postgres_password": datastores.postgres_password,
                      "redis_password": datastores.redis_password}
    assert any_listed(datastores.bootstrap_output, stack.canaries) == []

    strong = secrets.token_urlsafe(32)
    stack.canaries.append(strong)
    refusals = [
        (("--postgres-password-file", _operator_file(tmp_path, "open", strong, 0o644)), "settings",
         "--postgres-password-file: file"),
        (("--redis-password-file", _operator_file(tmp_path, "weak", "hunter2hunter2")), "vault secrets", "too short"),
        (("--postgres-password-file", _operator_file(tmp_path, "a", strong), "--redis-password-file",
          _operator_file(tmp_path, "b", strong)), "vault secrets", "same value"),
    ]
    for number, (options, step, words) in enumerate(refusals):
        result = _bootstrap(stack, tmp_path / f"run{number}", *(str(option) for option in options))
        _one_line(result, stack, step, words)
    # Nothing was written by the refused runs.
    assert stack.root().secrets.kv.v2.read_secret_version(path="gateway/datastores",
                                                          raise_on_deleted_version=True)["data"]["data"] == stored


# ---- boot ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_boot_logs_in_with_the_passwords_from_vault_and_nowhere_else(datastores: Datastores, tmp_path: Path) -> None:
    """threat-model: TM-T14"""
    stack = datastores.stack
    # Without the settings, boot has no password: the cluster refuses it, and so does Redis.
    no_vault = {"GATEWAY_DATABASE_PASSWORD_FROM_VAULT": "", "GATEWAY_REDIS_PASSWORD_FROM_VAULT": ""}
    line = _one_line(run_gateway(["serve", "--check"], datastores.env(tmp_path / "a", **no_vault)), stack,
                     "database", "refused the connection or the login")
    assert f"postgresql+psycopg://127.0.0.1:{datastores.postgres.port}/{APP_DATABASE}" in line
    _one_line(run_gateway(["serve", "--check"], datastores.env(tmp_path / "b",
                                                                GATEWAY_REDIS_PASSWORD_FROM_VAULT="")),
              stack, "redis", f"Redis at {datastores.redis.url()} refused the login (no password set)")
    checked = run_gateway(["serve", "--check"], datastores.env(tmp_path / "c"))
    assert checked.returncode == 0, checked.stderr[-2000:]

    port = free_port()
    folder = tmp_path / "serve"
    env = datastores.env(folder, port, GATEWAY_LOG_LEVEL="DEBUG", LITELLM_LOG="DEBUG")
    gateway = GatewayProcess(env, folder / "gateway.log", port).start()
    outputs: list[str] = []
    runs = iter(range(100))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        # Each command logs in once (a fresh single-use secret_id): the store's password and the audit key or pepper
        # come from the same read.
        result = run_gateway(list(args), datastores.env(tmp_path / f"cli{next(runs)}"))
        outputs.append(result.stdout + result.stderr)
        assert result.returncode == 0, (args, result.stderr[-2000:])
        return result

    try:
        assert httpx.get(gateway.base_url + "/readyz").json() == {"status": "ready"}
        account = json.loads(cli("accounts", "create", "--name", "vault-stores").stdout)["id"]
        cli("accounts", "credit", account, "--amount-micro-usd", "5000000", "--reason", "test")
        created = json.loads(cli("keys", "create", "--name", "k", "--model", "chat-model", "--account-id",
                                 account).stdout)
        stack.canaries.append(created["key"])
        outputs[-1] = outputs[-1].replace(created["key"], "<new key>")
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=created["key"], max_retries=0)
        answer = client.chat.completions.create(model="chat-model", messages=CHAT_MESSAGES)  # type: ignore[arg-type]
        assert answer.choices[0].message.content
        # The pool reconnects with the password it holds (TM-T14): drop every connection of the gateway's user.
        with datastores.postgres.admin() as conn:  # type: ignore[attr-defined]
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [APP_USER])
        assert client.chat.completions.create(model="chat-model", messages=CHAT_MESSAGES)  # type: ignore[arg-type]
        assert any(entry["id"] == created["id"] for entry in json.loads(cli("keys", "list").stdout))
        # The revocation is published on the password-protected Redis.
        import redis

        from gateway.keys.invalidation import CHANNEL

        listener = redis.Redis(host="127.0.0.1", port=datastores.redis.port, password=datastores.redis_password)
        subscription = listener.pubsub(ignore_subscribe_messages=True)
        subscription.subscribe(CHANNEL)
        try:
            assert json.loads(cli("keys", "revoke", created["id"]).stdout)["state"] == "revoked"
            # get_message answers None for the subscription's own confirmation too: read until a message or the end.
            deadline = time.monotonic() + 30
            message = None
            while message is None and time.monotonic() < deadline:
                message = subscription.get_message(timeout=1)
            assert message is not None and message["data"] == created["id"].encode()
            assert "not published" not in outputs[-1]
        finally:
            subscription.close()
            listener.close()
        cli("ledger", "check")
        assert "not audited" not in cli("ledger", "sweep").stderr  # the audit key came with the store's password
        report = tmp_path / "report.md"
        cli("audit", "report", "--output", str(report))
        shown = report.read_text()
        assert "| Postgres password | Vault KV v2 `secret/gateway/datastores` field `postgres_password` |" in shown
        assert "| Redis password | Vault KV v2 `secret/gateway/datastores` field `redis_password` |" in shown

        passwords = [datastores.postgres_password, datastores.redis_password]
        environ = Path(f"/proc/{gateway.process.pid}/environ").read_bytes().decode("utf-8", "replace")  # type: ignore[union-attr]
        assert any_listed(environ, passwords) == []
    finally:
        gateway.stop()
    log = gateway.output()
    assert "DEBUG" in log
    assert any_listed(log, stack.canaries) == []
    assert any_listed("\n".join(outputs), stack.canaries) == []
    # No file anyone but the operator wrote holds a password: the gateway's and the commands' folders, the bootstrap's.
    written = [path for path in [*tmp_path.rglob("*"), *datastores.operator_files[0].parent.rglob("*")]
               if path.is_file() and path not in datastores.operator_files]
    assert written
    for path in written:
        assert any_listed(path.read_bytes().decode("utf-8", "replace"), passwords) == [], path


@pytest.mark.slow
@pytest.mark.postgres
def test_a_wrong_or_missing_password_stops_the_boot_with_one_line(datastores: Datastores, tmp_path: Path) -> None:
    """threat-model: TM-I7"""
    stack = datastores.stack
    other = secrets.token_urlsafe(32)
    stack.canaries.append(other)
    datastores.postgres.set_password(other)
    try:
        result = run_gateway(["serve"], datastores.env(tmp_path / "pg"))
    finally:
        datastores.postgres.set_password(datastores.postgres_password)
    _one_line(result, stack, "database", "refused the connection or the login (password from secret/gateway/"
                                         "datastores field 'postgres_password')")

    datastores.redis.set_password(datastores.redis_password, other)
    try:
        result = run_gateway(["serve"], datastores.env(tmp_path / "redis"))
    finally:
        datastores.redis.set_password(other, datastores.redis_password)
    _one_line(result, stack, "redis", f"Redis at {datastores.redis.url()} refused the login "
                                      "(secret/gateway/datastores field 'redis_password')")

    kv = stack.root().secrets.kv.v2
    kv.patch(path="gateway/datastores", secret={"redis_password": "hunter2hunter2hunter2"})
    try:
        result = run_gateway(["serve", "--check"], datastores.env(tmp_path / "weak"))
        _one_line(result, stack, "vault secrets", "field 'redis_password' is too short")
        kv.create_or_update_secret(path="gateway/datastores",
                                   secret={"postgres_password": datastores.postgres_password})
        result = run_gateway(["serve", "--check"], datastores.env(tmp_path / "missing"))
        _one_line(result, stack, "vault read", "secret/gateway/datastores has no field 'redis_password'")
        # A command that needs the store exits the same way, before touching it.
        result = run_gateway(["keys", "list"], datastores.env(tmp_path / "cli"))
        _one_line(result, stack, "vault read", "has no field 'redis_password'")
    finally:
        kv.create_or_update_secret(path="gateway/datastores", secret={
            "postgres_password": datastores.postgres_password, "redis_password": datastores.redis_password})
    with contextlib.suppress(FileNotFoundError):
        assert "hunter2" not in (tmp_path / "weak" / "gateway.log").read_text()
