"""Redis over TLS (``rediss://``, the CA in ``ssl_ca_certs``): against a throwaway ``redis-server`` that speaks TLS only,
the gateway boots, limits and publishes revocations through it, and refuses a server whose certificate does not chain
to the CA it was given, with one line. The Kubernetes manifests use this form (deploy/kubernetes/deployment.yaml).

threat-model: TM-I7
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from gateway.devstack.openbao import free_port, stop_process
from tests.support import (
    Stack,
    any_listed,
    issue_certificate,
    port_open,
    run_gateway,
    start_gateway,
    write_certificate,
    write_private_key,
)


@dataclass
class TlsRedis:
    port: int
    ca_file: Path

    def url(self, ca_file: Path | None = None) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={ca_file or self.ca_file}"


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("GATEWAY_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server is required (GATEWAY_REQUIRE_SERVICES=1) but not found on this machine")
        pytest.skip("redis-server is not found on this machine")
    folder = tmp_path_factory.mktemp("tls-redis")
    ca = issue_certificate("test redis CA")
    server = issue_certificate("127.0.0.1", ca, server=True)
    ca_file = write_certificate(ca[0], folder / "ca.crt")
    port = free_port()
    with open(folder / "server.log", "ab") as out:
        process = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(write_certificate(server[0], folder / "server.crt")),
             "--tls-key-file", str(write_private_key(server[1], folder / "server.key")),
             "--tls-ca-cert-file", str(ca_file), "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", str(folder)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            assert process.poll() is None and time.monotonic() < deadline, (folder / "server.log").read_text()
            time.sleep(0.05)
        yield TlsRedis(port, ca_file)
    finally:
        stop_process(process)


def test_the_gateway_limits_through_redis_over_tls(stack: Stack, tls_redis: TlsRedis, tmp_path: Path) -> None:
    gateway = start_gateway(stack, tmp_path, "gw-tls-redis", f"sqlite:///{tmp_path / 'gateway.db'}",
                            GATEWAY_REDIS_URL=tls_redis.url())
    try:
        key, _ = gateway.keys.customer(rpm_limit=2)
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
        hi = [{"role": "user", "content": "Hi"}]
        for _ in range(2):
            client.chat.completions.create(model="chat-model", messages=hi, max_tokens=5)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="chat-model", messages=hi, max_tokens=5)  # type: ignore[arg-type]
    finally:
        gateway.process.stop()


def test_a_redis_whose_certificate_does_not_chain_to_the_ca_is_refused(stack: Stack, tls_redis: TlsRedis,
                                                                        tmp_path: Path) -> None:
    other_ca = write_certificate(issue_certificate("another CA")[0], tmp_path / "other-ca.crt")
    env = stack.env(tmp_path / "gw", f"sqlite:///{tmp_path / 'gateway.db'}", free_port(),
                    GATEWAY_REDIS_URL=tls_redis.url(other_ca))
    result = run_gateway(["serve", "--check"], env)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("gateway: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("gateway: boot failed at redis: "), lines[0]
    assert f"127.0.0.1:{tls_redis.port}" in lines[0] and "ssl_ca_certs" not in lines[0], lines[0]
    assert any_listed(result.stdout + result.stderr, stack.canaries) == []
    # With the right CA the same boot passes (a fresh secret_id: the refused boot used its own up).
    env = stack.env(tmp_path / "gw-right-ca", f"sqlite:///{tmp_path / 'gateway.db'}", free_port(),
                    GATEWAY_REDIS_URL=tls_redis.url())
    result = run_gateway(["serve", "--check"], env)
    assert result.returncode == 0, result.stderr[-2000:]
