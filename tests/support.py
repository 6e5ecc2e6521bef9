"""Shared test helpers: real OpenBao, the provider stand-in in a thread, and gateway processes.

The only fake is the LLM provider (gateway.devstack.fake_provider). Vault is the real OpenBao binary; Postgres and
Redis are the machine's services; clients are the openai SDK and httpx over real sockets.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import hvac
import openai
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck
from hypothesis import strategies as st

from gateway.credits.ledger import SqlLedger
from gateway.devstack import fake_provider
from gateway.devstack.openbao import free_port, stop_process
from gateway.keys.format import KeyKind
from gateway.keys.hashing import KeyHasher
from gateway.keys.service import KeyService
from gateway.keys.store import SqlKeyStore
from gateway.store.engine import open_store

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def services_required() -> bool:
    return os.environ.get("GATEWAY_REQUIRE_SERVICES") == "1"


def port_open(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class StandIn:
    """The provider stand-in served from a thread of the test process; ``recorder`` sees every request."""

    def __init__(self, credentials: Collection[str] | None = None,
                 service_accounts: fake_provider.ServiceAccounts | None = None) -> None:
        self.recorder = fake_provider.Recorder()
        self.port = free_port()
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.root_url}/v1"
        config = uvicorn.Config(fake_provider.build_app(self.recorder, credentials, service_accounts),
                                host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> StandIn:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("provider stand-in did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)


def write_policy(path: Path, standin_base: str, extra_models: str = "") -> Path:
    path.write_text(
        f"""version: 1
providers:
  standin:
    api_base: {standin_base}
models:
  - name: chat-model
    provider: standin
    upstream_model: upstream-chat
    mode: chat
    price: {{input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "2"}}
    max_output_tokens: 1000
  - name: other-chat-model
    provider: standin
    upstream_model: upstream-other
    mode: chat
    price: {{input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "2"}}
    max_image_tokens: 1445
  - name: text-model
    provider: standin
    upstream_model: upstream-text
    mode: completion
    price: {{input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "2"}}
  - name: embed-model
    provider: standin
    upstream_model: upstream-embed
    mode: embedding
    price: {{input_usd_per_million_tokens: "0.02"}}
  - name: failing-model
    provider: standin
    upstream_model: standin-error-500
    mode: chat
    price: {{input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "2"}}
  - name: echo-error-model
    provider: standin
    upstream_model: standin-echo-error
    mode: chat
    price: {{input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "2"}}
  - name: slow-model
    provider: standin
    upstream_model: standin-slow-300
    mode: chat
    price: {{input_usd_per_million_tokens: "1", output_usd_per_million_tokens: "2"}}
{extra_models}guardrails:
  secret_scan: true
  deny_patterns:
    - name: no-project-falcon
      pattern: '(?i)project\\s+falcon'
cors:
  allow_origins: ["https://app.example.com"]
rate_limits:
  default_rpm: 1000000
  default_tpm: 1000000000
keys:
  rotation_grace_seconds: 2
credits:
  reservation_ttl_seconds: 900
  sweep_interval_seconds: 60
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Stack:
    """A bootstrapped Vault plus the canary secrets the suite must never see leak."""

    vault_addr: str
    root_token: str
    workdir: Path
    policy_file: Path
    provider_key: str
    master_key: str = ""
    pepper: str = ""
    audit_key: str = ""
    canaries: list[str] = field(default_factory=list)

    def root(self) -> hvac.Client:
        return hvac.Client(url=self.vault_addr, token=self.root_token)

    def load_core(self) -> None:
        """Read master key, pepper and audit key from Vault (root token) and register them as canaries."""
        core = self.root().secrets.kv.v2.read_secret_version(path="gateway/core",
                                                             raise_on_deleted_version=True)["data"]["data"]
        self.master_key, self.pepper, self.audit_key = core["master_key"], core["pepper"], core["audit_key"]
        self.canaries += [self.master_key, self.pepper, self.audit_key]

    def fresh_credentials(self, folder: Path) -> tuple[Path, Path]:
        from gateway.boot.bootstrap import issue_credentials
        from gateway.boot.settings import Settings

        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        role_id_file, secret_id_file = issue_credentials(self.root(), Settings(vault_addr=self.vault_addr), folder)
        self.canaries.append(secret_id_file.read_text())
        return role_id_file, secret_id_file

    def env(self, folder: Path, database_url: str, port: int, **overrides: str) -> dict[str, str]:
        role_id_file, secret_id_file = self.fresh_credentials(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_", "VAULT_", "BAO_"))}
        env.pop("DATABASE_URL", None)
        env.update(
            {
                "GATEWAY_VAULT_ADDR": self.vault_addr,
                "GATEWAY_VAULT_AUTH": "approle",
                "GATEWAY_VAULT_ROLE_ID_FILE": str(role_id_file),
                "GATEWAY_VAULT_SECRET_ID_FILE": str(secret_id_file),
                "GATEWAY_DATABASE_URL": database_url,
                "GATEWAY_POLICY_FILE": str(self.policy_file),
                "GATEWAY_PORT": str(port),
                "GATEWAY_HOST": "127.0.0.1",
            }
        )
        env.update(overrides)
        return env


@dataclass
class TlsStack(Stack):
    """A Stack whose Vault speaks https under a CA of its own."""

    ca_file: Path = Path()

    def root(self) -> hvac.Client:
        return hvac.Client(url=self.vault_addr, token=self.root_token, verify=str(self.ca_file))

# --- TLS to Vault: a Stack behind https, and throwaway CAs and certificates ------------------------------------------


def _subject(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_private_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def write_certificate(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)
    return path


def issue_certificate(common_name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
                      *, server: bool = False, expired: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A throwaway CA (no issuer) or a leaf it signs, for a server on 127.0.0.1 or for a client; ``expired``: its
    validity ended an hour ago."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC) - (timedelta(hours=2) if expired else timedelta())
    builder = (x509.CertificateBuilder().subject_name(_subject(common_name)).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(now + timedelta(hours=1)))
    if issuer is None:
        builder = builder.issuer_name(_subject(common_name)).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True).add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)
        return builder.sign(key, hashes.SHA256()), key
    ca_cert, ca_key = issuer
    builder = builder.issuer_name(ca_cert.subject).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def bootstrapped_tls_stack(vault_addr: str, root_token: str, ca_file: Path, workdir: Path,
                           standin: StandIn) -> TlsStack:
    """Bootstrap a Vault that speaks https under ``ca_file`` (policy, role, core secrets, the stand-in's key)."""
    from gateway.boot.bootstrap import bootstrap
    from gateway.boot.secret import Secret
    from gateway.boot.settings import Settings

    stack = TlsStack(vault_addr, root_token, workdir, write_policy(workdir / "policy.yaml", standin.base_url),
                     "provider-canary-" + secrets.token_urlsafe(24), ca_file=ca_file)
    bootstrap(stack.root(), Settings(vault_addr=vault_addr, vault_cacert=None),
              provider_keys={"standin": Secret(stack.provider_key)}, credentials_dir=workdir / "boot")
    stack.load_core()
    stack.canaries += [stack.provider_key, root_token]
    return stack


def bootstrapped_stack(vault_addr: str, root_token: str, workdir: Path, standin_base: str,
                       provider_key: str) -> Stack:
    """Bootstrap a Vault (policy, role, generated core secrets, the provider key) the way the CLI does, in-process."""
    from gateway.boot.bootstrap import bootstrap
    from gateway.boot.secret import Secret
    from gateway.boot.settings import Settings

    stack = Stack(vault_addr, root_token, workdir, write_policy(workdir / "policy.yaml", standin_base), provider_key)
    bootstrap(stack.root(), Settings(vault_addr=vault_addr), provider_keys={"standin": Secret(provider_key)},
              credentials_dir=workdir / "boot")
    stack.load_core()
    stack.canaries += [provider_key, root_token]
    return stack


class GatewayProcess:
    """``gateway serve`` in a child process, its output captured to a file for the canary scan."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int, args: tuple[str, ...] = ()) -> None:
        self.env = env
        self.args = args
        self.port = port
        self.log_path = log_path
        self.base_url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> GatewayProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(BIN / "gateway"), "serve", *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"gateway did not open its port:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=15)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def run_gateway(args: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "gateway"), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, check=False)


def boot_check(stack: Stack, folder: Path, *, drop: tuple[str, ...] = (), unseen: tuple[str, ...] = (),
               **overrides: str) -> subprocess.CompletedProcess[str]:
    """``gateway serve --check`` with the stack's settings (fresh AppRole credentials in ``folder``), ``overrides``
    on top and the settings in ``drop`` removed. Whatever happens, no port opens and neither a canary nor any of
    ``unseen`` (tokens the test handed the gateway) is printed."""
    port = free_port()
    env = stack.env(folder, f"sqlite:///{folder / 'gw.db'}", port, **overrides)
    for name in drop:
        env.pop(name)
    result = run_gateway(["serve", "--check"], env)
    assert not port_open("127.0.0.1", port)
    assert any_listed(result.stdout + result.stderr, [*stack.canaries, *unseen]) == []
    return result


def assert_runtime_token_only(client: hvac.Client) -> None:
    """The token ``client`` just logged in with is the runtime one (secrets/*-gateway.json): the ``gateway-runtime``
    policy alone, at most 5 minutes and 5 uses (boot needs at most 4). It is revoked after the look."""
    try:
        info = client.auth.token.lookup_self()["data"]
        assert info["policies"] == ["gateway-runtime"]
        assert 0 < info["ttl"] <= 300
        assert 0 < info["num_uses"] <= 5
    finally:
        client.auth.token.revoke_self()


def boot_refusal_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``gateway: boot failed ...`` line of a boot that exited with code 2."""
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("gateway: boot failed")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


def random_token() -> str:
    return secrets.token_urlsafe(24)


def any_listed(haystack: str, needles: list[str]) -> list[str]:
    """The needles (by index, never the value) found in haystack, for assertion messages that do not leak."""
    return [f"canary #{i}" for i, needle in enumerate(needles) if needle and needle in haystack]


Json = dict[str, Any]


def fresh_store(store_url: str, *tables: str) -> Any:
    """The store at ``store_url`` (migrated), with ``tables`` emptied on Postgres: its test database lives for the
    whole session, while each SQLite store is a new file."""
    import sqlalchemy as sa

    from gateway.store.engine import open_store

    engine = open_store(store_url)
    if store_url.startswith("postgresql"):
        with engine.begin() as conn:
            for table in tables:
                conn.execute(sa.text(f"DELETE FROM {table}"))  # nosec B608 - the tests' own table names
    return engine


def empty_audit_store(store_url: str) -> Iterator[Any]:
    """The store at ``store_url`` with an empty audit chain (a genesis head row) and no pending boot alarms, before and
    after the test: the Postgres database is shared by the session, and a gateway would chain a pending alarm."""
    import sqlalchemy as sa

    from gateway.audit.log import GENESIS

    def reset() -> None:
        with engine.begin() as conn:
            for table in ("boot_alarms", "audit_events", "audit_head"):
                conn.execute(sa.text(f"DELETE FROM {table}"))  # nosec B608 - the tests' own table names
            conn.execute(sa.text("INSERT INTO audit_head (id, seq, mac) VALUES (1, 0, :g)"), {"g": GENESIS})

    engine = open_store(store_url)
    reset()
    yield engine
    reset()


def account_state(gateway: RunningGateway, account_id: str) -> Json:
    """The account as the admin API shows it (balance, reservations, recent ledger entries)."""
    response = httpx.get(f"{gateway.base_url}/admin/accounts/{account_id}",
                         headers={"Authorization": f"Bearer {gateway.admin_key}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def wait_until_settled(gateway: RunningGateway, account_id: str, timeout: float = 30) -> Json:
    """The account once nothing is reserved any more (or as it stands when ``timeout`` runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        state = account_state(gateway, account_id)
        if state["reserved_micro_usd"] == 0 or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls at the same moment on their own threads; each result is a value or the exception raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - the test classifies every outcome
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# The fuzz corpus, shared by the fuzz test and the differential property (tests/security). `make fuzz` sets
# GATEWAY_FUZZ_SCALE=10 for ten times the cases.
SCALE = int(os.environ.get("GATEWAY_FUZZ_SCALE", "1"))
FUZZ_SETTINGS: dict[str, Any] = {"deadline": None, "database": None, "derandomize": True,
                                 "suppress_health_check": list(HealthCheck)}
HOSTILE_KEYS = st.sampled_from(sorted(
    {"api_base", "base_url", "api_key", "user_config", "extra_headers", "headers", "extra_body", "metadata",
     "litellm_metadata", "litellm_params", "mock_response", "provider_specific_header", "aws_access_key_id",
     "vertex_credentials", "custom_llm_provider", "fallbacks", "timeout", "callbacks", "model", "messages", "input",
     "prompt", "stream", "stream_options", "max_tokens", "n", "user", "tools", "tool_choice", "response_format",
     "temperature", "stop", "logit_bias", "__proto__", "constructor", "Model", "MODEL", "model\u0000",
     "modеl"}))  # noqa: RUF001 - a Cyrillic letter on purpose
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                        st.floats(allow_nan=False), st.text(max_size=40),
                        st.sampled_from(["chat-model", "embed-model", "text-model", "http://attacker.invalid",
                                         '{"api_base": "http://attacker.invalid"}', "os.environ/LITELLM_MASTER_KEY"]))
JSON = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(HOSTILE_KEYS | st.text(max_size=10), inner,
                                                                          max_size=4)), max_leaves=20)
# Hostile cases an attack review found (each also has a regression test in tests/functional/test_exact_handoff.py).
# json.dumps writes the non-finite floats as NaN and Infinity, which the gateway must refuse with a 400.
HI = [{"role": "user", "content": "Hi"}]
FOUND = st.sampled_from([
    {"model": "chat-model", "messages": HI, "seed": float("inf")},
    {"model": "chat-model", "messages": HI, "seed": float("-inf")},
    {"model": "chat-model", "messages": HI, "logit_bias": {"50256": float("nan")}},
    {"model": "chat-model", "messages": HI, "max_completion_tokens": 1, "max_tokens": 1_000_000_000},
    {"model": "chat-model", "messages": HI, "max_tokens": -5},
    {"model": "chat-model", "messages": HI, "max_tokens": "lots"},
    {"model": "chat-model", "messages": HI, "function_call": {"name": "f", "api_base": "http://attacker.invalid"}},
    {"model": "chat-model", "messages": HI, "reasoning_effort": {"api_key": "x"}},
    {"model": "text-model", "prompt": {"text": "hi"}},
    {"model": "text-model", "prompt": "x&model=chat-model&n=4&api_key=sk-attacker&z="},
    {"model": "embed-model", "input": {"api_base": "http://attacker.invalid"}},
])
BODIES = st.one_of(
    FOUND,
    st.dictionaries(HOSTILE_KEYS, JSON, max_size=8),
    st.fixed_dictionaries({"model": st.sampled_from(["chat-model", "text-model", "embed-model"]),
                           "messages": st.just([{"role": "user", "content": "Hi"}]), "prompt": st.just("x"),
                           "input": st.just("x"), "max_tokens": st.just(3)},
                          optional={"extra": st.dictionaries(HOSTILE_KEYS, JSON, max_size=3)}),
)


class ManualClock:
    """A :class:`gateway.clock.Clock` that moves only when told: a test advances it past a TTL or an expiry instead of
    sleeping. It starts at the real current instant, so records the store stamps with the real time line up."""

    def __init__(self) -> None:
        self._now = datetime.now(UTC)
        self._monotonic = 0.0

    def monotonic(self) -> float:
        return self._monotonic

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds


# --- gateways for tests: keys issued straight into the store, and a gateway process --------------------------


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


def start_gateway(stack: Stack, workdir: Path, name: str, database_url: str, *, args: tuple[str, ...] = (),
                  **env: str) -> RunningGateway:
    port = free_port()
    folder = workdir / name
    environment = stack.env(folder, database_url, port, GATEWAY_LOG_LEVEL="DEBUG", LITELLM_LOG="DEBUG", **env)
    process = GatewayProcess(environment, folder / "gateway.log", port, args).start()
    return RunningGateway(process, Keys(stack, database_url))


# --- OpenAI's published schemas (tests/specs/) ---------------------------------------------------------------------

SPEC = REPO / "tests" / "specs" / "openai-openapi-subset.json"


def _allow_null(schema: Any) -> Any:
    """OpenAPI's ``nullable: true`` (still used in places of the 3.1 document) as JSON Schema: null is allowed too."""
    if isinstance(schema, list):
        return [_allow_null(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _allow_null(value) for key, value in schema.items() if key != "nullable"}
    if schema.get("nullable") is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def spec_errors(schema_name: str, instance: Any) -> list[str]:
    """Where ``instance`` breaks the named schema of OpenAI's API (empty when it validates)."""
    import json

    from jsonschema import Draft202012Validator

    document = json.loads(SPEC.read_text())
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": _allow_null(document["components"])}
    validator = Draft202012Validator(root)
    return [f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message[:200]}"
            for error in validator.iter_errors(instance)]


# --- provider kinds: a gateway whose policy has Anthropic, Azure OpenAI, Gemini and Bedrock providers on the stand-in -

KINDS = ("anthropic", "azure", "gemini", "bedrock")
AZURE_API_VERSION = "2024-10-21"
BEDROCK_REGION = "eu-west-3"
# A Bedrock model id LiteLLM knows to take tools through Converse (and prices from its cost map).
BEDROCK_TOOL_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
# Prices of the kinds policy's models, in USD per million tokens (1 and 2 micro-USD per token).
PRICE = {"input_usd_per_million_tokens": "1", "output_usd_per_million_tokens": "2"}


@dataclass
class KindsStack:
    """A gateway (its own policy) with OpenAI, Anthropic, Azure and Gemini providers, all on one stand-in that accepts
    only the real keys; each kind also has a ``<kind>_wrong`` provider (another key in Vault) and a ``<kind>_redirect``
    one (an endpoint answering 307)."""

    gateway: RunningGateway
    standin: StandIn
    keys: dict[str, str]  # provider name -> its key in Vault
    key: str  # a customer key for every model of the policy
    account: str

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gateway.base_url + "/v1", api_key=key or self.key, max_retries=0,
                             timeout=30)

    def calls(self) -> list[dict[str, Any]]:
        return [c for c in self.standin.recorder.all() if c["path"] != "/_standin/requests"]


def _kinds_model(name: str, provider: str, upstream: str, price: bool = True) -> str:
    text = (f"  - name: {name}\n    provider: {provider}\n    upstream_model: {upstream}\n    mode: chat\n"
            "    max_output_tokens: 1000\n")
    return text + (f"    price: {json.dumps(PRICE)}\n" if price else "")


def kinds_policy(root: str) -> str:
    """The kinds policy for a stand-in at ``root`` (``http://127.0.0.1:PORT``)."""
    providers = ""
    for kind in KINDS:
        extra = {"azure": f"    api_version: '{AZURE_API_VERSION}'\n",
                 "bedrock": f"    region: {BEDROCK_REGION}\n"}.get(kind, "")
        # Gemini's api_base carries the API version: LiteLLM appends /models/<model>:generateContent to it.
        path = "/v1beta" if kind == "gemini" else ""
        for suffix, base in (("", root), ("_wrong", root), ("_redirect", root + "/standin-redirect")):
            providers += f"  {kind}{suffix}:\n    kind: {kind}\n    api_base: {base}{path}\n{extra}"
    providers += f"  bedrock_bad_signature:\n    kind: bedrock\n    api_base: {root}\n    region: {BEDROCK_REGION}\n"
    models = ""
    for kind in KINDS:
        models += _kinds_model(f"{kind}-chat", kind, "standin-chat")
        models += _kinds_model(f"{kind}-failing", kind, "standin-error-500")
        models += _kinds_model(f"{kind}-echo", kind, "standin-echo-error")
        models += _kinds_model(f"{kind}-slow", kind, "standin-slow-6000")
        models += _kinds_model(f"{kind}-wrong-key", f"{kind}_wrong", "standin-chat")
        models += _kinds_model(f"{kind}-redirected", f"{kind}_redirect", "standin-chat")
    # Priced from LiteLLM's cost map under the provider's own name (anthropic's claude-sonnet-4-5, azure/gpt-4o-mini,
    # gemini/gemini-2.5-flash).
    models += _kinds_model("claude-mapped", "anthropic", "claude-sonnet-4-5", price=False)
    models += _kinds_model("azure-mapped", "azure", "gpt-4o-mini", price=False)
    models += _kinds_model("gemini-mapped", "gemini", "gemini-2.5-flash", price=False)
    models += _kinds_model("bedrock-mapped", "bedrock", f"'{BEDROCK_TOOL_MODEL}'", price=False)
    # Priced for images, so that an image reaches the kind's own checks.
    models += _kinds_model("gemini-vision", "gemini", "standin-chat") + "    max_image_tokens: 300\n"
    models += _kinds_model("bedrock-vision", "bedrock", "standin-chat") + "    max_image_tokens: 300\n"
    # Bedrock answers whose usage never comes (a stream without its metadata event).
    models += _kinds_model("bedrock-no-usage", "bedrock", "standin-no-usage")
    # The Bedrock access key id the stand-in knows, with another secret: every signature is wrong.
    models += _kinds_model("bedrock-bad-signature", "bedrock_bad_signature", "standin-chat")
    return (f"version: 1\nproviders:\n  openai_p:\n    api_base: {root}/v1\n{providers}models:\n"
            + _kinds_model("openai-chat", "openai_p", "standin-chat") + models
            + "upstream:\n  timeout_seconds: 3\nrate_limits:\n  default_rpm: 1000000\n  default_tpm: 1000000000\n")


def bedrock_credential(session_token: bool = False) -> str:
    """An AWS credential as Vault holds it for kind bedrock (the JSON text), with random canary values."""
    value = {"aws_access_key_id": "AKIA" + secrets.token_hex(8).upper(),
             "aws_secret_access_key": "canary-" + secrets.token_urlsafe(30)}
    if session_token:
        value["aws_session_token"] = "canary-" + secrets.token_urlsafe(60)
    return json.dumps(value)


def start_kinds_stack(stack: Stack, workdir: Path) -> KindsStack:
    """Write the kinds policy, put its providers' keys in the stack's Vault, start its gateway and stand-in."""
    from gateway.boot.bootstrap import bootstrap
    from gateway.boot.secret import Secret
    from gateway.boot.settings import Settings

    names = ["openai_p", *(f"{kind}{suffix}" for kind in KINDS for suffix in ("", "_wrong", "_redirect"))]
    keys = {name: bedrock_credential() if name.startswith("bedrock") else f"{name}-canary-{secrets.token_urlsafe(18)}"
            for name in names}
    # Bedrock's key id with a secret of its own: the stand-in knows the id, and every signature made with it is wrong.
    keys["bedrock_bad_signature"] = json.dumps({**json.loads(keys["bedrock"]),
                                                "aws_secret_access_key": "canary-" + secrets.token_urlsafe(30)})
    standin = StandIn(credentials=[key for name, key in keys.items()
                                   if not name.endswith(("_wrong", "_bad_signature"))]).start()
    policy_text = kinds_policy(standin.root_url)
    policy_file = workdir / "kinds-policy.yaml"
    policy_file.write_text(policy_text, encoding="utf-8")
    bootstrap(stack.root(), Settings(vault_addr=stack.vault_addr),
              provider_keys={name: Secret(key) for name, key in keys.items()}, credentials_dir=workdir / "kinds-boot")
    stack.canaries += list(keys.values())
    # A Bedrock credential's parts, each on its own (its access key id included: it names the account).
    stack.canaries += [part for name, key in keys.items() if name.startswith("bedrock")
                       for part in json.loads(key).values()]
    gateway = start_gateway(stack, workdir, "gw-kinds", f"sqlite:///{workdir / 'kinds.db'}",
                            GATEWAY_POLICY_FILE=str(policy_file))
    account = gateway.keys.account(100_000_000)
    models = [line.split(": ", 1)[1] for line in policy_text.splitlines() if line.startswith("  - name: ")]
    key, _ = gateway.keys.customer(models=models, account_id=account)
    return KindsStack(gateway, standin, keys, key, account)
