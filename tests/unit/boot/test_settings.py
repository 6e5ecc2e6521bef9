"""Settings and credential files: bad values name the setting; loose file modes are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.boot.errors import BootError
from gateway.boot.settings import load_settings, read_credential_file


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
