"""HAZMAT: what the host's operator commands and ``gateway dev`` need from Vault, without handing them a Vault client.

``gateway.ops`` (the CLI's store and Vault commands) and ``gateway.devstack`` never import hvac: each Vault login,
secret read, bootstrap and secret_id issue they need happens here, and they get back only what they asked for (secrets
wrapped in :class:`Secret`, or the paths of the credential files written). Errors are :class:`BootError` lines that
name the step, never a value or a token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import hvac
import hvac.exceptions
import requests

from gateway.boot import bootstrap, vault
from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings, read_credential_file


def core_secrets(settings: Settings) -> vault.VaultSecrets:
    """Pepper and audit key (and the master key, unused by the operator commands), and the datastore passwords the
    settings ask for, with the configured credentials; token revoked after."""
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
    datastore_passwords: Mapping[str, Secret] | None = None,
) -> tuple[Path, Path]:
    """``gateway secrets bootstrap`` with the operator token in ``token_file``: the role_id and secret_id files."""
    client = _operator(settings, token_file)
    return bootstrap.bootstrap(
        client, settings, provider_keys=provider_keys, credentials_dir=credentials_dir, rotate_core=rotate_core,
        rotate_master_key=rotate_master_key, datastore_passwords=datastore_passwords,
    )


def issue_secret_id(settings: Settings, token_file: Path, credentials_dir: Path,
                    wrap_ttl: str | None = None) -> tuple[Path, Path]:
    """``gateway secrets issue-secret-id`` with the operator token in ``token_file``: the role_id and secret_id files
    (the secret_id file holds a wrapping token when ``wrap_ttl`` is given)."""
    if wrap_ttl is not None:
        bootstrap.wrap_ttl_seconds(wrap_ttl)  # a bad option fails before the operator token is read
    client = _operator(settings, token_file)
    try:
        return bootstrap.issue_credentials(client, settings, credentials_dir, wrap_ttl)
    except requests.exceptions.RequestException:
        raise BootError("issue secret_id", f"Vault at {settings.vault_addr} is unreachable") from None
    except hvac.exceptions.Forbidden:
        raise BootError("issue secret_id", "Vault refused to issue a secret_id: permission denied by the operator "
                                           "token's policy" + (" (or --wrap-ttl is outside the policy's wrapping "
                                                               "bounds)" if wrap_ttl is not None else "")) from None
    except hvac.exceptions.VaultError as exc:
        raise BootError("issue secret_id", f"Vault refused to issue a secret_id ({type(exc).__name__})") from None


def jwt_setup(settings: Settings, token_file: Path, binding: bootstrap.JwtBinding) -> str:
    """``gateway secrets jwt-setup`` with the operator token in ``token_file``: the jwt method and the gateway's role."""
    client = _operator(settings, token_file)
    return bootstrap.configure_jwt(client, settings, binding)


def cert_setup(settings: Settings, token_file: Path, ca_pem: str, common_name: str) -> str:
    """``gateway secrets cert-setup`` with the operator token in ``token_file``: the cert method and the gateway's
    role."""
    client = _operator(settings, token_file)
    return bootstrap.configure_cert(client, settings, ca_pem, common_name)


# gateway dev only, in its throwaway in-memory OpenBao (never created by `gateway secrets bootstrap`):
# * a role for the CLI with the runtime policy whose secret_id serves any number of logins, from loopback only, for
#   as long as the dev server lives (each command still gets its own short-lived token and revokes it);
# * an operator token that can only issue secret_ids for the gateway's own role (`gateway secrets issue-secret-id`).
DEV_CLI_ROLE = "gateway-dev-cli"
DEV_OPERATOR_POLICY = "gateway-dev-operator"
LOOPBACK_ONLY = ["127.0.0.1/32"]


@dataclasses.dataclass(frozen=True)
class DevAccess:
    """What ``gateway dev`` gets back from its Vault bootstrap: the pepper (for the demo keys) and the files holding
    the CLI's dev login and the dev operator token."""

    pepper: Secret
    cli_role_id_file: Path
    cli_secret_id_file: Path
    operator_token_file: Path


def bootstrap_dev_vault(
    settings: Settings, root_token: Secret, *, provider_keys: Mapping[str, Secret], credentials_dir: Path,
    cli_credentials_dir: Path, operator_token_file: Path,
) -> DevAccess:
    """``gateway dev``: bootstrap its throwaway OpenBao with the root token (the gateway's single-use login goes to
    ``credentials_dir``), add the dev-only CLI role and operator token, and return the pepper the bootstrap
    generated (the dev stack issues its demo keys with it)."""
    client = bootstrap.operator_client(settings, root_token)
    bootstrap.bootstrap(client, settings, provider_keys=provider_keys, credentials_dir=credentials_dir)
    core = client.secrets.kv.v2.read_secret_version(
        path=f"{settings.vault_path}/core", mount_point=settings.vault_mount, raise_on_deleted_version=True
    )["data"]["data"]
    try:
        cli_role_id_file, cli_secret_id_file = _dev_cli_login(client, settings, cli_credentials_dir)
        _dev_operator_token(client, settings, operator_token_file)
    except requests.exceptions.RequestException:
        raise BootError("bootstrap", f"Vault at {settings.vault_addr} is unreachable") from None
    except hvac.exceptions.VaultError as exc:
        raise BootError("bootstrap", f"Vault refused a dev bootstrap step ({type(exc).__name__})") from None
    return DevAccess(Secret(core["pepper"]), cli_role_id_file, cli_secret_id_file, operator_token_file)


def _dev_cli_login(client: hvac.Client, settings: Settings, folder: Path) -> tuple[Path, Path]:
    role = {**bootstrap.role_definition(), "secret_id_num_uses": 0, "secret_id_ttl": "0",
            "secret_id_bound_cidrs": LOOPBACK_ONLY, "token_bound_cidrs": LOOPBACK_ONLY}
    mount = settings.vault_approle_mount
    client.auth.approle.create_or_update_approle(role_name=DEV_CLI_ROLE, mount_point=mount, **role)
    role_id = client.auth.approle.read_role_id(role_name=DEV_CLI_ROLE, mount_point=mount)["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id(role_name=DEV_CLI_ROLE, mount_point=mount)["data"]["secret_id"]
    role_id_file, secret_id_file = folder / "role_id", folder / "secret_id"
    bootstrap.write_private_file(role_id_file, role_id)
    bootstrap.write_private_file(secret_id_file, secret_id)
    del secret_id
    return role_id_file, secret_id_file


def _dev_operator_token(client: hvac.Client, settings: Settings, token_file: Path) -> None:
    client.sys.create_or_update_policy(name=DEV_OPERATOR_POLICY, policy=bootstrap.render_issuer_policy(settings))
    created = client.auth.token.create(policies=[DEV_OPERATOR_POLICY], display_name="gateway-dev-operator")
    bootstrap.write_private_file(token_file, created["auth"]["client_token"])
    del created
