"""The environment check that runs before the Vault login: variables that reroute secrets or weaken TLS are refused,
CA overrides are removed, and LiteLLM's .env loading is switched off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from gateway.boot import litellm_mount
from gateway.boot.errors import BootError

REPO = Path(__file__).resolve().parents[3]
REFUSED = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "Https_Proxy",
           "FTP_PROXY", "USE_LITELLM_PROXY", "SSL_VERIFY", "SSL_CERTIFICATE", "SSL_SECURITY_LEVEL", "SSL_ECDH_CURVE",
           "SSLKEYLOGFILE", "AIOHTTP_TRUST_ENV", "LITELLM_PROXY_API_BASE", "LITELLM_PROXY_API_KEY", "VAULT_CACERT",
           "VAULT_CAPATH", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"]


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    # Every *_proxy variable goes (NO_PROXY too, which the check allows: removing it here changes nothing tested).
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.upper() in litellm_mount.TRANSPORT_ENV:
            monkeypatch.delenv(name)
    for name in (*litellm_mount.NEUTRALIZED_ENV, "LITELLM_MODE", *litellm_mount.FORBIDDEN_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("name", REFUSED)
def test_variables_that_reroute_secrets_or_weaken_tls_are_refused(clean_environ: pytest.MonkeyPatch,
                                                                   name: str) -> None:
    """threat-model: TM-I6"""
    clean_environ.setenv(name, "http://attacker.invalid:3128")
    with pytest.raises(BootError) as caught:
        litellm_mount.check_environment()
    assert caught.value.step == "environment" and caught.value.message.startswith(f"{name} is set")
    assert "attacker.invalid" not in caught.value.line()


def test_no_proxy_is_harmless(clean_environ: pytest.MonkeyPatch) -> None:
    clean_environ.setenv("NO_PROXY", "*")
    clean_environ.setenv("no_proxy", "127.0.0.1")
    litellm_mount.check_environment()


@pytest.mark.parametrize("name", litellm_mount.NEUTRALIZED_ENV)
def test_ca_overrides_are_removed_before_the_vault_login(clean_environ: pytest.MonkeyPatch, tmp_path: Path,
                                                        name: str) -> None:
    """threat-model: TM-I6"""
    bundle = tmp_path / "attacker-ca.pem"
    bundle.write_text("not a CA\n")
    clean_environ.setenv(name, str(bundle))
    litellm_mount.check_environment()
    assert name not in os.environ
    # requests (hvac's transport) no longer picks the bundle up: it verifies against its default trust store.
    settings = requests.Session().merge_environment_settings("https://vault.example", {}, None, None, None)
    assert settings["verify"] is True


def test_litellm_mode_other_than_production_is_refused(clean_environ: pytest.MonkeyPatch) -> None:
    """threat-model: TM-I6"""
    clean_environ.setenv("LITELLM_MODE", "DEV")
    with pytest.raises(BootError, match="LITELLM_MODE"):
        litellm_mount.check_environment()


def test_litellm_does_not_load_a_dotenv_file_after_the_check(tmp_path: Path) -> None:
    """threat-model: TM-I6"""
    # `import litellm` loads the first .env found walking up from its install folder; point that search at a
    # planted file and check nothing from it reaches the environment.
    dotenv_file = tmp_path / ".env"
    dotenv_file.write_text("HTTPS_PROXY=http://attacker.invalid:3128\nPLANTED_BY_DOTENV=yes\n")
    program = (
        "import os, dotenv.main\n"
        f"dotenv.main.find_dotenv = lambda *a, **k: {str(dotenv_file)!r}\n"
        "from gateway.boot import litellm_mount\n"
        "litellm_mount.check_environment()\n"
        "litellm_mount.import_litellm()\n"
        "print('PLANTED_BY_DOTENV' in os.environ, 'HTTPS_PROXY' in os.environ)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_")}
    result = subprocess.run([sys.executable, "-c", program], env=env, cwd=REPO, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["False", "False"]
