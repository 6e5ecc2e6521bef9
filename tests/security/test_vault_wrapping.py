"""A response-wrapped secret_id against a real OpenBao: boot unwraps a token that wraps the gateway role's secret_id,
refuses (without unwrapping) one that wraps anything else, and treats a token that was unwrapped already as an
interception: exit 2, one line, a CRITICAL log record, Vault's audit device holding who unwrapped it first, and a
pending alarm in the store that the next good boot moves into the gateway's audit chain."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import hvac
import hvac.exceptions
import pytest
import sqlalchemy as sa

from gateway.audit.log import AuditLog
from gateway.boot.bootstrap import issue_credentials, render_issuer_policy, write_private_file
from gateway.boot.settings import Settings
from gateway.clock import as_utc
from gateway.devstack.openbao import free_port, start_dev_vault
from gateway.devstack.postgres import fresh_database
from gateway.store.engine import open_store
from gateway.store.schema import boot_alarms
from tests.support import (
    Stack,
    StandIn,
    any_listed,
    boot_check,
    boot_refusal_line,
    bootstrapped_stack,
    run_gateway,
    start_gateway,
)

WRAPPED = {"GATEWAY_VAULT_SECRET_ID_WRAPPED": "true"}


def _boot_check(stack: Stack, folder: Path, secret_id_file: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    return boot_check(stack, folder, **WRAPPED, GATEWAY_VAULT_SECRET_ID_FILE=str(secret_id_file), **overrides)


def _critical_records(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    records = []
    for line in result.stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("level") == "CRITICAL":
                records.append(record)
    return records


def _wrapped_secret_id(stack: Stack, folder: Path) -> Path:
    """A wrapping token for a fresh secret_id of the gateway role, as `issue-secret-id --wrap-ttl` writes it."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    _, secret_id_file = issue_credentials(stack.root(), Settings(vault_addr=stack.vault_addr), folder, wrap_ttl="10m")
    stack.canaries.append(secret_id_file.read_text())
    return secret_id_file


def _still_wrapped(stack: Stack, token: str) -> bool:
    try:
        hvac.Client(url=stack.vault_addr).adapter.post("/v1/sys/wrapping/lookup", json={"token": token})
    except hvac.exceptions.InvalidRequest:
        return False
    return True


def _issuer_token(stack: Stack, folder: Path) -> Path:
    """A token with only the wrapped-secret_id issuer's policy (secrets/secret-id-issuer-wrapped.hcl), in a 0600
    file."""
    root = stack.root()
    root.sys.create_or_update_policy(name="gateway-secret-id-issuer-wrapped", policy=render_issuer_policy(
        Settings(vault_addr=stack.vault_addr), wrapped_only=True))
    token = root.auth.token.create(policies=["gateway-secret-id-issuer-wrapped"], no_default_policy=True,
                                   ttl="10m")["auth"]["client_token"]
    stack.canaries.append(token)
    path = folder / "issuer.token"
    write_private_file(path, token)
    return path


def test_issue_secret_id_wraps_and_boot_unwraps(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S5"""
    operator_token = _issuer_token(stack, tmp_path)
    env = {**stack.env(tmp_path / "unused", "sqlite://", free_port()), "HOME": str(tmp_path)}
    issued = run_gateway(["secrets", "issue-secret-id", "--operator-token-file", str(operator_token),
                          "--credentials-dir", str(tmp_path / "boot"), "--wrap-ttl", "10m"], env)
    assert issued.returncode == 0, issued.stderr[-2000:]
    assert "GATEWAY_VAULT_SECRET_ID_WRAPPED=true" in issued.stdout
    token_file = tmp_path / "boot" / "secret_id"
    token = token_file.read_text()
    stack.canaries.append(token)
    assert token_file.stat().st_mode & 0o777 == 0o600
    # What the file holds is a wrapping token of the gateway role's secret-id endpoint, not a secret_id.
    lookup = hvac.Client(url=stack.vault_addr).adapter.post("/v1/sys/wrapping/lookup", json={"token": token})
    assert lookup["data"]["creation_path"] == "auth/approle/role/gateway/secret-id"
    assert any_listed(issued.stdout + issued.stderr, stack.canaries) == []

    result = _boot_check(stack, tmp_path, token_file, GATEWAY_VAULT_ROLE_ID_FILE=str(tmp_path / "boot" / "role_id"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "all boot checks passed" in result.stdout
    assert not _still_wrapped(stack, token)  # boot used it
    assert _critical_records(result) == []


def test_a_token_wrapping_another_path_is_refused_and_left_unused(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S5"""
    # A real secret_id of the gateway's role, wrapped by hand: sys/wrapping/wrap wraps whatever its caller chooses.
    plain = stack.fresh_credentials(tmp_path / "plain-source")[1].read_text()
    forged = stack.root().sys.wrap(payload={"secret_id": plain}, ttl="10m")["wrap_info"]["token"]
    stack.canaries.append(forged)
    token_file = tmp_path / "wrapped"
    write_private_file(token_file, forged)
    line = boot_refusal_line(_boot_check(stack, tmp_path, token_file))
    assert line.startswith("gateway: boot failed at vault unwrap:"), line
    assert "created by 'sys/wrapping/wrap', not by 'auth/approle/role/gateway/secret-id'" in line, line
    assert _still_wrapped(stack, forged)  # refused before unwrapping


def test_a_wrapped_secret_id_of_another_role_is_refused(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S5"""
    root = stack.root()
    root.auth.approle.create_or_update_approle(role_name="gateway-other", token_policies=["default"],
                                              secret_id_num_uses=1, mount_point="approle")
    other = root.auth.approle.generate_secret_id(role_name="gateway-other", wrap_ttl="10m")["wrap_info"]["token"]
    stack.canaries.append(other)
    token_file = tmp_path / "wrapped"
    write_private_file(token_file, other)
    line = boot_refusal_line(_boot_check(stack, tmp_path, token_file))
    assert "created by 'auth/approle/role/gateway-other/secret-id'" in line, line
    assert _still_wrapped(stack, other)


@dataclass
class AuditedStack:
    stack: Stack
    audit_log: Path


@pytest.fixture(scope="module")
def audited(standin: StandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditedStack]:
    """A Vault of its own with a file audit device (OpenBao takes audit devices from its configuration only)."""
    folder = tmp_path_factory.mktemp("audited-vault")
    folder.chmod(0o700)
    audit_log = folder / "vault-audit.log"
    config = folder / "audit.hcl"
    config.write_text(f'audit "file" "to-file" {{\n  options {{\n    file_path = "{audit_log}"\n  }}\n}}\n')
    vault = start_dev_vault(folder / "openbao.log", extra_config=config)
    try:
        yield AuditedStack(bootstrapped_stack(vault.addr, vault.root_token, folder, standin.base_url,
                                              "provider-canary-" + secrets.token_urlsafe(24)), audit_log)
    finally:
        vault.stop()


def test_an_already_unwrapped_token_is_an_interception(audited: AuditedStack, tmp_path: Path) -> None:
    """threat-model: TM-S5"""
    stack, vault_audit_log = audited.stack, audited.audit_log
    token_file = _wrapped_secret_id(stack, tmp_path / "boot")
    # Someone on the delivery path unwraps it first and keeps the secret_id.
    stolen = hvac.Client(url=stack.vault_addr, token=token_file.read_text()).sys.unwrap()["data"]["secret_id"]
    stack.canaries.append(stolen)

    result = _boot_check(stack, tmp_path, token_file)
    line = boot_refusal_line(result)
    assert line.startswith("gateway: boot failed at vault unwrap: the wrapping token in GATEWAY_VAULT_SECRET_ID_FILE "
                           "is unknown to Vault: it was unwrapped already"), line
    critical = _critical_records(result)
    assert len(critical) == 1, result.stderr[-2000:]
    assert critical[0]["reason"] == "wrapping_token_unusable" and "possible interception" in str(critical[0]["msg"])

    # The record of who unwrapped it: Vault's audit device logged the first unwrap and boot's refused lookup.
    entries = [json.loads(line) for line in vault_audit_log.read_text().splitlines()]
    unwraps = [e for e in entries if e["type"] == "response" and e["request"]["path"] == "sys/wrapping/unwrap"
               and not e.get("error")]
    refused_lookups = [e for e in entries if e["request"]["path"] == "sys/wrapping/lookup"
                       and "not valid or does not exist" in e.get("error", "")]
    assert len(unwraps) == 1 and unwraps[0]["request"]["remote_address"] == "127.0.0.1"
    assert len(refused_lookups) == 1
    assert any_listed(vault_audit_log.read_text(), [stolen, token_file.read_text()]) == []
    # And the store holds the alarm for the next boot to chain (test_an_interception_is_chained_by_the_next_good_boot).
    assert [(kind, detail) for _, kind, detail in _pending_alarms(f"sqlite:///{tmp_path / 'gw.db'}")] == [
        ("vault_wrapping_token_unusable", "creation_path=unknown stage=lookup")]


def test_a_plain_secret_id_or_a_damaged_file_in_wrapped_mode_is_no_alarm(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S5"""
    _, secret_id_file = stack.fresh_credentials(tmp_path / "plain-source")
    result = _boot_check(stack, tmp_path, secret_id_file)
    line = boot_refusal_line(result)
    assert "holds a plain secret_id, not a wrapping token" in line, line
    assert _critical_records(result) == []
    damaged = tmp_path / "damaged"
    write_private_file(damaged, "<html>502 Bad Gateway</html>")
    result = _boot_check(stack, tmp_path, damaged)
    assert boot_refusal_line(result).endswith("GATEWAY_VAULT_SECRET_ID_FILE does not hold a Vault wrapping token "
                                              "(damaged or wrong file)")
    assert _critical_records(result) == [] and _alarm_lines(result) == []
    assert _pending_alarms(f"sqlite:///{tmp_path / 'gw.db'}") == []


def test_the_wrapping_token_file_follows_the_secret_id_file_rules(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S5"""
    token_file = _wrapped_secret_id(stack, tmp_path / "boot")
    token_file.chmod(0o640)
    line = boot_refusal_line(_boot_check(stack, tmp_path, token_file))
    assert "at settings: GATEWAY_VAULT_SECRET_ID_FILE" in line and "accessible by group or others" in line, line
    token_file.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(token_file)
    line = boot_refusal_line(_boot_check(stack, tmp_path, link))
    assert "is a symlink" in line, line
    assert _still_wrapped(stack, token_file.read_text())


def test_vault_unreachable_is_not_an_interception(stack: Stack, tmp_path: Path) -> None:
    token_file = _wrapped_secret_id(stack, tmp_path / "boot")
    result = _boot_check(stack, tmp_path, token_file, GATEWAY_VAULT_ADDR=f"http://127.0.0.1:{free_port()}")
    line = boot_refusal_line(result)
    assert line.startswith("gateway: boot failed at vault unwrap: Vault at http://127.0.0.1:") and "unreachable" in line
    assert _critical_records(result) == [] and _alarm_lines(result) == []
    assert _pending_alarms(f"sqlite:///{tmp_path / 'gw.db'}") == []
    assert _still_wrapped(stack, token_file.read_text())


@pytest.mark.parametrize("ttl", ["0", "5s", "25h", "10 minutes", "-1m"])
def test_a_bad_wrap_ttl_is_refused_before_vault(stack: Stack, tmp_path: Path, ttl: str) -> None:
    operator_token = tmp_path / "operator.token"
    write_private_file(operator_token, stack.root_token)
    env = stack.env(tmp_path / "unused", "sqlite://", free_port())
    result = run_gateway(["secrets", "issue-secret-id", "--operator-token-file", str(operator_token),
                          "--credentials-dir", str(tmp_path / "boot"), "--wrap-ttl", ttl], env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gateway: boot failed at issue secret_id: " + ("--wrap-ttl must be between 10s and 24h"
                                                      if ttl in ("5s", "25h") else
                                                      "--wrap-ttl must be a duration such as 600s, 10m or 1h")]
    assert not (tmp_path / "boot" / "secret_id").exists()


def test_the_wrapped_issuer_policy_hands_out_wrapped_secret_ids_only(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S5"""
    operator_token = _issuer_token(stack, tmp_path)
    env = stack.env(tmp_path / "unused", "sqlite://", free_port())
    refused = ("gateway: boot failed at issue secret_id: Vault refused to issue a secret_id: permission denied by the "
               "operator token's policy")
    for wrap, line in (([], refused), (["--wrap-ttl", "2h"],
                                       refused + " (or --wrap-ttl is outside the policy's wrapping bounds)")):
        result = run_gateway(["secrets", "issue-secret-id", "--operator-token-file", str(operator_token),
                              "--credentials-dir", str(tmp_path / "boot"), *wrap], env)
        assert result.returncode == 2, result.stderr[-2000:]
        assert [out for out in result.stderr.splitlines() if out.startswith("gateway:")] == [line]
        assert not (tmp_path / "boot" / "secret_id").exists()


# --- the interception alarm in the gateway's own audit chain (threat-model TM-T16) ---------------------------------


def _pending_alarms(database_url: str) -> list[tuple[datetime, str, str | None]]:
    engine = open_store(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(boot_alarms).order_by(boot_alarms.c.id)).all()
    finally:
        engine.dispose()
    return [(as_utc(row.at), row.kind, row.detail) for row in rows]


def _alarm_lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [record for record in (json.loads(line) for line in result.stderr.splitlines() if line.startswith("{"))
            if "interception alarm" in str(record.get("msg"))]


@pytest.fixture(params=["sqlite", "postgres"])
def alarm_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store of the test's own: the session's Postgres database holds other tests' chains and gateways."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'alarm.db'}"
        return
    request.getfixturevalue("postgres_url")  # fails (not skips) when Postgres is required and missing
    with fresh_database("gw_alarm_") as url:
        yield url


def _intercepted_boot(stack: Stack, folder: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    """A boot whose wrapped secret_id someone else unwrapped first: exit 2, its one line and its CRITICAL record."""
    token_file = _wrapped_secret_id(stack, folder / "boot")
    stolen = hvac.Client(url=stack.vault_addr, token=token_file.read_text()).sys.unwrap()["data"]["secret_id"]
    stack.canaries.append(stolen)
    result = _boot_check(stack, folder, token_file, **overrides)
    assert "is unknown to Vault: it was unwrapped already" in boot_refusal_line(result)
    assert [r["reason"] for r in _critical_records(result)] == ["wrapping_token_unusable"], result.stderr[-2000:]
    return result


def test_an_interception_is_chained_by_the_next_good_boot(stack: Stack, tmp_path: Path, alarm_store: str) -> None:
    """threat-model: TM-T16"""
    before = datetime.now(UTC)
    result = _intercepted_boot(stack, tmp_path / "intercepted", GATEWAY_DATABASE_URL=alarm_store)
    after = datetime.now(UTC)
    assert [(r["level"], r["reason"]) for r in _alarm_lines(result)] == [("WARNING", "alarm_pending")]
    pending = _pending_alarms(alarm_store)
    assert [(kind, detail) for _, kind, detail in pending] == [
        ("vault_wrapping_token_unusable", "creation_path=unknown stage=lookup")]
    raised = pending[0][0]
    assert before <= raised <= after

    # The next boot that logs in chains it before its port opens: the entry precedes that boot's own "boot" entry.
    running = start_gateway(stack, tmp_path, "good", alarm_store)
    try:
        listed = httpx.get(running.base_url + "/admin/audit", params={"limit": 1000},
                           headers={"Authorization": f"Bearer {running.admin_key}"}, timeout=30).json()["data"]
    finally:
        running.process.stop()
    alarms = [e for e in listed if e["event"] == "boot_alarm"]
    assert [(e["actor"], e["subject"], e["reason"]) for e in alarms] == [
        ("system", "vault_wrapping_token_unusable",
         f"raised_at={raised.isoformat(timespec='microseconds')} creation_path=unknown stage=lookup")]
    boots = [e["seq"] for e in listed if e["event"] == "boot"]
    assert boots and alarms[0]["seq"] < min(boots)
    assert '"msg": "alarm of an earlier boot chained into the audit log"' in running.process.output()
    assert _pending_alarms(alarm_store) == []
    verified = run_gateway(["audit", "verify"], stack.env(tmp_path / "verify", alarm_store, free_port()))
    assert verified.returncode == 0 and "audit chain intact" in verified.stdout, verified.stderr[-2000:]
    # The entry is read back with the audit key: the chain holds exactly that alarm, once.
    audit = AuditLog(open_store(alarm_store), stack.audit_key.encode())
    assert [e["subject"] for e in audit.list(event="boot_alarm")] == ["vault_wrapping_token_unusable"]


def test_with_the_store_password_in_vault_no_alarm_can_be_pending(stack: Stack, tmp_path: Path,
                                                                   postgres_url: str) -> None:
    """threat-model: TM-T16"""
    with fresh_database("gw_alarm_") as url:
        open_store(url).dispose()  # migrated: a row the boot wrongly wrote (trust auth lets it in) would be seen
        result = _intercepted_boot(stack, tmp_path, GATEWAY_DATABASE_URL=url,
                                   GATEWAY_DATABASE_PASSWORD_FROM_VAULT="true")
        lines = _alarm_lines(result)
        assert [(r["level"], r["reason"]) for r in lines] == [("WARNING", "store_needs_vault")]
        assert "its password is in Vault" in str(lines[0]["msg"])
        assert _pending_alarms(url) == []


def test_a_store_that_cannot_take_the_alarm_is_one_more_line(stack: Stack, tmp_path: Path) -> None:
    """threat-model: TM-T16"""
    nobody = f"postgresql+psycopg://gateway@127.0.0.1:{free_port()}/gateway"
    result = _intercepted_boot(stack, tmp_path, GATEWAY_DATABASE_URL=nobody)
    assert [(r["level"], r["reason"]) for r in _alarm_lines(result)] == [("ERROR", "store_failed:OperationalError")]
