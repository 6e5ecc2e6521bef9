"""``gateway dev``: one command gives a working stack, for HTTP clients and for the CLI; SIGTERM stops every child.

One dev stack serves the tests of this module up to the one that stops it (each start takes about 15 s here). Every
``gateway dev`` runs from its own temporary working directory, so its ``var/dev/`` is not the repository's.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest

from gateway.devstack.openbao import free_port
from tests.support import BIN, port_open

BANNER_LINE = "gateway dev is up"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's exit status is left


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_", "VAULT_", "BAO_"))}


def _readyz(base_url: str) -> int:
    try:
        # The loopback URL of the stack under test.
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class DevStack:
    process: subprocess.Popen[str]
    folder: Path  # the working directory it runs in
    port: int
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)
    # What the test saw the moment the banner's first line arrived: did the port answer, and /readyz with what.
    answered_at_banner: tuple[bool, int] = (False, 0)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return "".join(self.stdout_lines)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A CLI command in a shell that loaded the env file the documented way."""
        script = 'set -a; . var/dev.env; set +a; exec "$0" "$@"'
        return subprocess.run(["sh", "-c", script, str(BIN / "gateway"), *args], cwd=self.folder, env=_clean_env(),
                              capture_output=True, text=True, timeout=60, check=False)


def _start(folder: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    stderr_path = folder / "dev.stderr"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen([str(BIN / "gateway"), "dev", *args], env=_clean_env(), stdout=subprocess.PIPE,
                                   stderr=stderr, cwd=folder, text=True)
    return process, stderr_path


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    folder = tmp_path_factory.mktemp("dev")
    port = free_port()
    process, stderr_path = _start(folder, "--port", str(port), "--keys-file", "keys.json",
                                  "--env-file", "var/dev.env")
    stack = DevStack(process, folder, port, stderr_path)
    banner_seen = threading.Event()

    def read_stdout() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if BANNER_LINE in line and not banner_seen.is_set():
                # Connect at once: the banner must never come before the port answers.
                answered = port_open("127.0.0.1", port)
                stack.answered_at_banner = (answered, _readyz(stack.base_url) if answered else 0)
                banner_seen.set()
            stack.stdout_lines.append(line)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not banner_seen.wait(0.2):
            assert process.poll() is None, stack.stderr()[-3000:]
            assert time.monotonic() < deadline, "gateway dev did not print its banner"
        time.sleep(0.3)  # the rest of the banner
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def test_the_banner_comes_only_once_the_gateway_answers(dev: DevStack) -> None:
    assert dev.answered_at_banner == (True, 200)
    keys_file = dev.folder / "keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    keys = json.loads(keys_file.read_text())
    assert keys["base_url"] == dev.base_url
    output = dev.stdout()
    assert keys["customer_key"] in output and "curl" in output and keys["account_id"] in output
    # The Python example runs as printed: the interpreter that has the openai SDK, not whatever `python` is.
    python_line = next(line for line in output.splitlines() if "from openai import OpenAI" in line)
    assert python_line.strip().startswith(f"{BIN}/python")
    assert f"{dev.folder / 'var' / 'dev'}" in output and "set -a; . var/dev.env; set +a" in output


def test_the_stack_serves_and_the_first_screen_is_quiet(dev: DevStack) -> None:
    keys = json.loads((dev.folder / "keys.json").read_text())
    client = openai.OpenAI(base_url=dev.base_url + "/v1", api_key=keys["customer_key"], max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "Hello from the provider stand-in."
    # Text completions are where LiteLLM leaves an aiohttp session per request for the garbage collector.
    for _ in range(5):
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi")
    assert len(client.embeddings.create(model="text-embedding-3-small", input="Hi").data) == 1
    time.sleep(1)
    screen = dev.stdout() + dev.stderr()
    for noise in ("██", "will NOT be enforced", "Admin UI sign-in", "Unclosed connector", "Set models",
                  "was missed by"):
        assert noise not in screen, noise


def test_the_dev_stack_serves_one_model_per_provider_kind(dev: DevStack) -> None:
    keys = json.loads((dev.folder / "keys.json").read_text())
    client = openai.OpenAI(base_url=dev.base_url + "/v1", api_key=keys["customer_key"], max_retries=0)
    owned = {model.id: model.owned_by for model in client.models.list()}
    assert owned == {"gpt-4o-mini": "openai", "gpt-3.5-turbo-instruct": "openai", "text-embedding-3-small": "openai",
                     "claude-sonnet-4-5": "anthropic", "azure-gpt-4o-mini": "azure", "gemini-2.5-flash": "gemini",
                     "gpt-4o": "openai", "vertex-gemini-2.5-flash": "vertex_ai",
                     "bedrock-claude-3-5-sonnet": "bedrock"}
    # Each on the stand-in's protocol for its kind, which checks the dev key it was given as the real service would
    # (Vertex AI: the bearer token its token endpoint issued for the dev service account's signed assertion; Bedrock:
    # the SigV4 signature); gpt-4o has two deployments (OpenAI-compatible and Azure OpenAI), and either answers.
    for model in ("claude-sonnet-4-5", "azure-gpt-4o-mini", "gemini-2.5-flash", "vertex-gemini-2.5-flash",
                  "bedrock-claude-3-5-sonnet", "gpt-4o"):
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content == "Hello from the provider stand-in."
        stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                                stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == reply.choices[0].message.content


def test_the_cli_works_against_the_dev_stack_with_its_env_file(dev: DevStack) -> None:
    env_file = dev.folder / "var" / "dev.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    text = env_file.read_text()
    keys = json.loads((dev.folder / "keys.json").read_text())
    assert keys["admin_key"] not in text and keys["customer_key"] not in text
    assert "GATEWAY_DATABASE_URL=" in text and "GATEWAY_VAULT_SECRET_ID_FILE=" in text

    listed = dev.cli("keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert {entry["name"] for entry in json.loads(listed.stdout)} >= {"dev admin", "dev customer"}
    shown = dev.cli("accounts", "show", keys["account_id"])
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == keys["account_id"], shown.stderr
    # Commands that read Vault keep working one after the other (each logs in and gives its token up).
    for _ in range(2):
        verified = dev.cli("audit", "verify")
        assert verified.returncode == 0 and "audit chain intact" in verified.stdout, verified.stderr
    checked = dev.cli("ledger", "check")
    assert checked.returncode == 0, checked.stderr
    # The dev operator token issues secret_ids for the gateway's role, and can do nothing else.
    token = dev.folder / "var" / "dev" / "operator-token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    issued = dev.cli("secrets", "issue-secret-id", "--operator-token-file", str(token), "--credentials-dir", "issued")
    assert issued.returncode == 0 and (dev.folder / "issued" / "secret_id").exists(), issued.stderr
    bootstrap = dev.cli("secrets", "bootstrap", "--operator-token-file", str(token), "--credentials-dir", "other")
    assert bootstrap.returncode == 2 and "Forbidden" in bootstrap.stderr
    # The dev logins stay in their 0600 files: not in the env file, the banner or the log.
    secret_id_file = dev.folder / "var" / "dev" / "cli" / "secret_id"
    assert stat.S_IMODE(secret_id_file.stat().st_mode) == 0o600
    for secret in (secret_id_file.read_text(), token.read_text()):
        assert secret not in text and secret not in dev.stdout() and secret not in dev.stderr()


def test_a_port_in_use_is_one_line_and_exit_2_before_any_key(dev: DevStack, tmp_path: Path) -> None:
    started = time.monotonic()
    second = subprocess.run([str(BIN / "gateway"), "dev", "--port", str(dev.port)], cwd=tmp_path, env=_clean_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 2 and second.stdout == ""
    assert second.stderr.strip() == (f"gateway: boot failed at port: 127.0.0.1:{dev.port} is already in use; stop "
                                     "what holds it or choose another port with --port")
    assert time.monotonic() - started < 10 and not (tmp_path / "var").exists()


def test_a_second_stack_in_the_same_folder_is_refused(dev: DevStack) -> None:
    second = subprocess.run([str(BIN / "gateway"), "dev", "--port", str(free_port())], cwd=dev.folder,
                            env=_clean_env(), capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 2 and second.stdout == ""
    assert len(second.stderr.strip().splitlines()) == 1 and "another gateway dev uses" in second.stderr


def test_sigterm_stops_every_child_and_removes_the_vault_side(dev: DevStack) -> None:
    """Runs last among the tests on the shared stack: it stops it."""
    children = _children(dev.process.pid)
    assert len(children) >= 2  # OpenBao and the provider stand-in
    dev.process.send_signal(signal.SIGTERM)
    assert dev.process.wait(timeout=30) == 0
    time.sleep(0.5)
    assert [pid for pid in children if _alive(pid)] == []
    assert not port_open("127.0.0.1", dev.port)
    left = {entry.name for entry in (dev.folder / "var" / "dev").iterdir()}
    assert "gateway.db" in left and not left & {"openbao.log", "boot", "cli", "operator-token"}


def test_the_env_file_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "dev.env").symlink_to(target)
    refused = subprocess.run([str(BIN / "gateway"), "dev", "--port", str(free_port()), "--env-file", "dev.env"],
                             cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and refused.stdout == "" and not target.exists()
    assert len(refused.stderr.strip().splitlines()) == 1 and "is a symlink" in refused.stderr


def test_the_cli_without_a_database_says_so(tmp_path: Path) -> None:
    """No GATEWAY_DATABASE_URL and no store at the default path: one line and exit 2, not an empty store created in
    the working directory and an empty answer."""
    result = subprocess.run([str(BIN / "gateway"), "keys", "list"], cwd=tmp_path, env=_clean_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "GATEWAY_DATABASE_URL is not set" in result.stderr
    assert not (tmp_path / "var").exists()


def test_a_killed_dev_stack_leaves_no_vault_or_stand_in_behind(tmp_path: Path) -> None:
    """SIGKILL gives ``gateway dev`` no chance to clean up; its OpenBao (holding the core secrets in memory) and the
    stand-in must still go: they get SIGTERM when their parent dies."""
    port = free_port()
    process, stderr_path = _start(tmp_path, "--port", str(port))
    try:
        deadline = time.monotonic() + 90
        while len(_children(process.pid)) < 2:
            assert process.poll() is None, stderr_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "gateway dev did not start its children"
            time.sleep(0.2)
        children = _children(process.pid)
    finally:
        process.kill()
        process.wait(timeout=30)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in children if _alive(pid)] == []
