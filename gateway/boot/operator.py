"""HAZMAT: what the host's operator commands and ``gateway dev`` need from Vault, without handing them a Vault client.

``gateway.ops`` (the CLI's store and Vault commands) and ``gateway.devstack`` never import hvac: each Vault login,
secret read, bootstrap and secret_id issue they need happens here, and they get back only what they asked for (secrets
wrapped in :class:`Secret`, or the paths of the credential files written). Errors are :class:`BootError` lines that
name the step, never a value or a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import hvac

from gateway.boot import bootstrap, vault
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings, read_credential_file


def core_secrets(settings: Settings) -> vault.VaultSecrets:
    """Pepper and audit key (and the master key, unused by the operator commands) with the configured credentials;
    token revoked after."""
    client = vault.login(settings)
    try:
        return vault.read_secrets(client, settings, [])
    finally:
        vault.revoke_own_token(client)


def _operator(settings: Settings, token_file: Path) -> hvac.Client:
    token = Secret(read_credential_file(token_file, "--operator-token-file"))
    return bootstrap.operator_client(settings, token)


def bootstrap_vault(
    settings: Settings,
    token_file: Path,
    *,
    provider_keys: Mapping[str, Secret],
    credentials_dir: Path,
    rotate_core: bool,
    rotate_master_key: bool = False,
) -> tuple[Path, Path]:
    """``gateway secrets bootstrap`` with the operator token in ``token_file``: the role_id and secret_id files."""
    client = _operator(settings, token_file)
    return bootstrap.bootstrap(
        client, settings, provider_keys=provider_keys, credentials_dir=credentials_dir, rotate_core=rotate_core,
        rotate_master_key=rotate_master_key,
    )


def issue_secret_id(settings: Settings, token_file: Path, credentials_dir: Path) -> tuple[Path, Path]:
    """``gateway secrets issue-secret-id`` with the operator token in ``token_file``: the role_id and secret_id files."""
    client = _operator(settings, token_file)
    return bootstrap.issue_credentials(client, settings, credentials_dir)


def bootstrap_dev_vault(
    settings: Settings, root_token: Secret, *, provider_keys: Mapping[str, Secret], credentials_dir: Path
) -> Secret:
    """``gateway dev``: bootstrap its throwaway OpenBao with the root token, and return the pepper the bootstrap
    generated (the dev stack issues its demo keys with it)."""
    client = bootstrap.operator_client(settings, root_token)
    bootstrap.bootstrap(client, settings, provider_keys=provider_keys, credentials_dir=credentials_dir)
    core = client.secrets.kv.v2.read_secret_version(
        path=f"{settings.vault_path}/core", mount_point=settings.vault_mount, raise_on_deleted_version=True
    )["data"]["data"]
    return Secret(core["pepper"])
