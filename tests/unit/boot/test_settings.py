"""Settings and credential files: bad values name the setting; loose file modes are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.boot.errors import BootError
from gateway.boot.settings import load_settings, read_credential_file, redacted_url


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY_PORT", "GATEWAY_HOST", "GATEWAY_VAULT_ADDR", "GATEWAY_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8090)
    assert settings.vault_mount == "secret" and settings.vault_path == "gateway"
    assert settings.database_url.startswith("sqlite:///var/")
    assert settings.policy_file == Path("policy/gateway.yaml")


@pytest.mark.parametrize(("name", "value"), [
    ("GATEWAY_VAULT_ADDR", "http://vault.internal:8200"),
    ("GATEWAY_VAULT_ADDR", "ftp://127.0.0.1"),
    ("GATEWAY_VAULT_AUTH", "userpass"),
    ("GATEWAY_PORT", "70000"),
    ("GATEWAY_VAULT_PATH", "../escape"),
    ("GATEWAY_VAULT_SECRET_ID_WRAPPED", "maybe"),
    ("GATEWAY_VAULT_JWT_ROLE", "gateway role"),
    ("GATEWAY_VAULT_JWT_MOUNT", "../sys"),
    ("GATEWAY_VAULT_KUBERNETES_MOUNT", "auth/../sys"),
    ("GATEWAY_VAULT_CERT_ROLE", "gateway/role"),
    ("GATEWAY_VAULT_CERT_MOUNT", "../sys"),
])
def test_bad_settings_name_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(BootError) as caught:
        load_settings()
    assert caught.value.step == "settings" and name in caught.value.message


def test_https_and_loopback_http_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for addr in ("https://vault.internal:8200", "http://127.0.0.1:8200", "http://localhost:8200", "http://[::1]:8200"):
        monkeypatch.setenv("GATEWAY_VAULT_ADDR", addr)
        assert load_settings().vault_addr == addr


CERT_LOGIN = {"GATEWAY_VAULT_AUTH": "cert", "GATEWAY_VAULT_ADDR": "https://vault.internal:8200",
              "GATEWAY_VAULT_CLIENT_CERT": "/etc/gateway/vault-client.pem",
              "GATEWAY_VAULT_CLIENT_KEY": "/etc/gateway/vault-client-key.pem"}


def test_cert_login_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CERT_LOGIN.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GATEWAY_VAULT_CERT_ROLE", raising=False)
    monkeypatch.delenv("GATEWAY_VAULT_CERT_MOUNT", raising=False)
    settings = load_settings()
    assert (settings.vault_auth, settings.vault_cert_mount, settings.vault_cert_role) == ("cert", "cert", None)


@pytest.mark.parametrize(("overrides", "unset", "words"), [
    ({"GATEWAY_VAULT_ADDR": "http://127.0.0.1:8200"}, (), "needs an https GATEWAY_VAULT_ADDR"),
    ({}, ("GATEWAY_VAULT_CLIENT_CERT", "GATEWAY_VAULT_CLIENT_KEY"), "needs the client certificate and key"),
    ({}, ("GATEWAY_VAULT_CLIENT_KEY",), "go together"),
], ids=["plain-http", "no-certificate", "certificate-without-key"])
def test_cert_login_needs_https_and_a_client_certificate(monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str],
                                                         unset: tuple[str, ...], words: str) -> None:
    for name, value in {**CERT_LOGIN, **overrides}.items():
        monkeypatch.setenv(name, value)
    for name in unset:
        monkeypatch.delenv(name)
    with pytest.raises(BootError) as caught:
        load_settings()
    assert caught.value.step == "settings"
    assert caught.value.message.startswith("GATEWAY_VAULT_CLIENT_KEY: ") and words in caught.value.message


def test_credential_files(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text("value\n")
    good.chmod(0o600)
    assert read_credential_file(good, "S") == "value"
    for mode in (0o640, 0o604, 0o644, 0o666):
        good.chmod(mode)
        with pytest.raises(BootError, match="accessible by group or others"):
            read_credential_file(good, "S")
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    empty.chmod(0o600)
    with pytest.raises(BootError, match="empty"):
        read_credential_file(empty, "S")
    with pytest.raises(BootError, match="does not exist"):
        read_credential_file(tmp_path / "missing", "S")
    with pytest.raises(BootError, match="is not set"):
        read_credential_file(None, "GATEWAY_VAULT_SECRET_ID_FILE")
    with pytest.raises(BootError, match="not a regular file"):
        read_credential_file(tmp_path, "S")


@pytest.mark.parametrize(("name", "value"), [
    ("GATEWAY_DATABASE_URL", "postgresql+psycopg://gw:hunter2@db.internal/gateway"),
    ("GATEWAY_DATABASE_URL", "postgresql+psycopg://db.internal/gateway?password=hunter2"),
    ("GATEWAY_DATABASE_URL", "postgresql+psycopg://gw@db.internal/gateway?sslmode=require&PASSWORD=hunter2"),
    ("GATEWAY_DATABASE_URL", "postgresql+psycopg://db.internal/gateway?sslpassword=hunter2"),
    ("GATEWAY_DATABASE_URL", "postgresql://gw?x:hunter2@db.internal/gateway"),
    ("GATEWAY_REDIS_URL", "redis://:hunter2@redis.internal:6379/0"),
    ("GATEWAY_REDIS_URL", "redis://redis.internal:6379/0?password=hunter2"),
    ("GATEWAY_REDIS_URL", "rediss://redis.internal:6379/0?ssl_password=hunter2"),
    ("GATEWAY_REDIS_URL", "redis://redis.internal:6379/0?pass%77ord=hunter2"),
    ("GATEWAY_REDIS_URL", "redis://redis.internal:6379/0?token=hunter2"),
    ("GATEWAY_VAULT_ADDR", "https://admin:hunter2@vault.internal:8200"),
])
def test_credentials_in_urls_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """threat-model: TM-I6"""
    monkeypatch.setenv(name, value)
    with pytest.raises(BootError) as caught:
        load_settings()
    assert caught.value.step == "settings" and name in caught.value.message
    assert "hunter2" not in caught.value.line()


@pytest.mark.parametrize("value", [
    "postgresql+psycopg://gw@db.internal:5432/gateway?sslmode=verify-full&sslkey=/etc/gw/client.key&passfile=/x",
    "redis://redis.internal:6379/0?socket_timeout=1", "sqlite:///var/gateway.db",
    "rediss://redis.internal:6379/0?ssl_ca_certs=/etc/gateway/tls/redis-ca.crt&ssl_cert_reqs=required",
])
def test_urls_without_credentials_are_accepted(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    name = "GATEWAY_REDIS_URL" if value.startswith("redis") else "GATEWAY_DATABASE_URL"
    monkeypatch.setenv(name, value)
    assert getattr(load_settings(), name.removeprefix("GATEWAY_").lower()) == value


@pytest.mark.parametrize("query", ["ssl_cert_reqs=none", "ssl_cert_reqs=optional", "ssl_check_hostname=false",
                                   "ssl_check_hostname=0"])
def test_a_redis_url_that_weakens_tls_is_refused(monkeypatch: pytest.MonkeyPatch, query: str) -> None:
    # redis-py takes these from the URL's query: they would turn off the certificate or host name check.
    monkeypatch.setenv("GATEWAY_REDIS_URL", f"rediss://redis.internal:6379/0?ssl_ca_certs=/ca.crt&{query}")
    with pytest.raises(BootError) as caught:
        load_settings()
    assert "GATEWAY_REDIS_URL" in caught.value.message and "must not weaken TLS" in caught.value.message


def test_redacted_url_keeps_host_port_and_database_only() -> None:
    assert redacted_url("redis://u:hunter2@redis.internal:6380/2?password=hunter2#x") == "redis://redis.internal:6380/2"
    assert redacted_url("rediss://[::1]:6379/0") == "rediss://[::1]:6379/0"


def _owned_file(tmp_path: Path, name: str = "secret_id") -> Path:
    path = tmp_path / name
    path.write_text("value\n")
    path.chmod(0o600)
    return path


def test_credential_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """threat-model: TM-S4"""
    path = _owned_file(tmp_path)
    os.chown(path, 65534, 65534)
    with pytest.raises(BootError) as caught:
        read_credential_file(path, "GATEWAY_VAULT_SECRET_ID_FILE")
    assert "belongs to another user" in caught.value.message and "GATEWAY_VAULT_SECRET_ID_FILE" in caught.value.message


def test_credential_file_behind_a_symlink_is_refused(tmp_path: Path) -> None:
    """threat-model: TM-S4"""
    target = _owned_file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(BootError) as caught:
        read_credential_file(link, "GATEWAY_VAULT_SECRET_ID_FILE")
    assert "symlink" in caught.value.message


def test_a_fifo_is_not_a_credential_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(BootError, match="not a regular file"):
        read_credential_file(fifo, "S")
