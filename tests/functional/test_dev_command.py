"""``gateway dev``: one command gives a working stack; SIGTERM stops every child."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import openai

from gateway.devstack.openbao import free_port
from tests.support import BIN, REPO, port_open


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


def test_dev_serves_prints_keys_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    keys_file = tmp_path / "keys.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_", "VAULT_", "BAO_"))}
    log = open(tmp_path / "dev.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([str(BIN / "gateway"), "dev", "--port", str(port), "--keys-file", str(keys_file)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + 90
        while not port_open("127.0.0.1", port):
            assert process.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "gateway dev did not open its port"
            time.sleep(0.2)
        assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
        keys = json.loads(keys_file.read_text())
        assert keys["base_url"] == f"http://127.0.0.1:{port}"
        output = (tmp_path / "dev.log").read_text()
        assert keys["customer_key"] in output and "curl" in output and "from openai import OpenAI" in output
        client = openai.OpenAI(base_url=keys["base_url"] + "/v1", api_key=keys["customer_key"], max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
        assert reply.choices[0].message.content == "Hello from the provider stand-in."
        children = _children(process.pid)
        assert len(children) >= 2  # OpenBao and the provider stand-in
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
    time.sleep(0.5)
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()
            and "Z" not in (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])] == []
    assert not port_open("127.0.0.1", port)


def test_a_killed_dev_stack_leaves_no_vault_or_stand_in_behind(tmp_path: Path) -> None:
    """SIGKILL gives ``gateway dev`` no chance to clean up; its OpenBao (holding the core secrets in memory) and the
    stand-in must still go: they get SIGTERM when their parent dies."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "LITELLM_", "VAULT_", "BAO_"))}
    log = open(tmp_path / "dev.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([str(BIN / "gateway"), "dev", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + 90
        while len(_children(process.pid)) < 2:
            assert process.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "gateway dev did not start its children"
            time.sleep(0.2)
        children = _children(process.pid)
    finally:
        process.kill()
        process.wait(timeout=30)
        log.close()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in children if _alive(pid)] == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's exit status is left
