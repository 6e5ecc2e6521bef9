"""TLS to Vault: the CA bundle and client certificate settings are checked, then reach every hvac client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.boot.errors import BootError
from gateway.boot.settings import Settings, load_settings, vault_tls
from gateway.boot.vault import new_client

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _pem(path: Path, mode: int = 0o644) -> Path:
    path.write_text(PEM)
    path.chmod(mode)
    return path


def _key(path: Path, mode: int = 0o600) -> Path:
    path.write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    path.chmod(mode)
    return path


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in ("GATEWAY_VAULT_ADDR", "GATEWAY_VAULT_CACERT", "GATEWAY_VAULT_CLIENT_CERT", "GATEWAY_VAULT_CLIENT_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_without_tls_settings_certifi_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, GATEWAY_VAULT_ADDR="https://vault.internal:8200")
    assert vault_tls(settings) == (True, None)
    client = new_client(settings)
    assert client.adapter.session.verify is True and client.adapter.session.cert is None


def test_ca_and_client_pair_reach_the_hvac_session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca, cert, key = _pem(tmp_path / "ca.pem"), _pem(tmp_path / "cert.pem"), _key(tmp_path / "key.pem")
    settings = _settings(monkeypatch, GATEWAY_VAULT_ADDR="https://vault.internal:8200", GATEWAY_VAULT_CACERT=str(ca),
                         GATEWAY_VAULT_CLIENT_CERT=str(cert), GATEWAY_VAULT_CLIENT_KEY=str(key))
    client = new_client(settings, "a-token")
    assert client.adapter.session.verify == str(ca)
    assert client.adapter.session.cert == (str(cert), str(key))


def test_cacert_with_plain_http_is_a_settings_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(BootError) as caught:
        _settings(monkeypatch, GATEWAY_VAULT_ADDR="http://127.0.0.1:8200",
                  GATEWAY_VAULT_CACERT=str(_pem(tmp_path / "ca.pem")))
    assert caught.value.step == "settings" and "GATEWAY_VAULT_CACERT" in caught.value.message
    assert "\n" not in caught.value.message


def test_plain_http_to_a_remote_vault_stays_refused_with_a_ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(BootError) as caught:
        _settings(monkeypatch, GATEWAY_VAULT_ADDR="http://vault.internal:8200",
                  GATEWAY_VAULT_CACERT=str(_pem(tmp_path / "ca.pem")))
    assert "GATEWAY_VAULT_ADDR" in caught.value.message


@pytest.mark.parametrize("which", ["GATEWAY_VAULT_CLIENT_CERT", "GATEWAY_VAULT_CLIENT_KEY"])
def test_client_cert_and_key_go_together(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, which: str) -> None:
    with pytest.raises(BootError) as caught:
        _settings(monkeypatch, GATEWAY_VAULT_ADDR="https://vault.internal:8200", **{which: str(_pem(tmp_path / "x"))})
    assert "GATEWAY_VAULT_CLIENT_KEY" in caught.value.message


def _refusal(settings: Settings) -> str:
    with pytest.raises(BootError) as caught:
        vault_tls(settings)
    assert caught.value.step == "settings" and "\n" not in caught.value.message
    return caught.value.message


def test_ca_bundle_file_checks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def with_ca(path: Path) -> Settings:
        return _settings(monkeypatch, GATEWAY_VAULT_ADDR="https://vault.internal:8200", GATEWAY_VAULT_CACERT=str(path))

    assert "does not exist" in _refusal(with_ca(tmp_path / "missing.pem"))
    assert "writable by others" in _refusal(with_ca(_pem(tmp_path / "open.pem", 0o666)))
    link = tmp_path / "link.pem"
    link.symlink_to(_pem(tmp_path / "real.pem"))
    assert "symlink" in _refusal(with_ca(link))
    assert "not a regular file" in _refusal(with_ca(tmp_path))
    (tmp_path / "empty.pem").write_text("not a certificate")
    assert "no PEM certificate" in _refusal(with_ca(tmp_path / "empty.pem"))
    foreign = _pem(tmp_path / "foreign.pem")
    if os.geteuid() == 0:
        os.chown(foreign, 12345, 12345)
        assert "belongs to another user" in _refusal(with_ca(foreign))
    for message in (_refusal(with_ca(tmp_path / "missing.pem")),):
        assert message.startswith("GATEWAY_VAULT_CACERT")


@pytest.mark.parametrize(("mode", "words"), [(0o644, "accessible by group or others"),
                                             (0o640, "accessible by group or others")])
def test_client_key_follows_the_credential_file_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: int,
                                                      words: str) -> None:
    settings = _settings(monkeypatch, GATEWAY_VAULT_ADDR="https://vault.internal:8200",
                         GATEWAY_VAULT_CLIENT_CERT=str(_pem(tmp_path / "cert.pem")),
                         GATEWAY_VAULT_CLIENT_KEY=str(_key(tmp_path / "key.pem", mode)))
    message = _refusal(settings)
    assert message.startswith("GATEWAY_VAULT_CLIENT_KEY") and words in message


def test_client_cert_file_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = _settings(monkeypatch, GATEWAY_VAULT_ADDR="https://vault.internal:8200",
                         GATEWAY_VAULT_CLIENT_CERT=str(_pem(tmp_path / "cert.pem", 0o646)),
                         GATEWAY_VAULT_CLIENT_KEY=str(_key(tmp_path / "key.pem")))
    assert _refusal(settings).startswith("GATEWAY_VAULT_CLIENT_CERT")
