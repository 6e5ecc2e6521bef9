"""``gateway secrets``: bootstrap the Vault side and issue secret_ids with an operator token read from a file."""

from __future__ import annotations

from pathlib import Path

from gateway.boot import operator
from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.settings import read_credential_file
from gateway.ops.context import die, open_settings


def bootstrap(token_file: Path, credentials_dir: Path, provider_specs: list[str], rotate_core: bool,
              rotate_master_key: bool = False, *, postgres_password_file: Path | None = None,
              redis_password_file: Path | None = None) -> tuple[Path, Path]:
    """Apply policy, role and secrets; ``provider_specs`` are NAME=PATH; the datastore passwords come from 0600
    files. The role_id and secret_id files."""
    settings = open_settings()
    try:
        provider_keys: dict[str, Secret] = {}
        for spec in provider_specs:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise BootError("bootstrap", f"--provider-key-file {spec!r} must be NAME=PATH")
            provider_keys[name] = Secret(read_credential_file(Path(path), f"--provider-key-file {name}"))
        datastore_passwords: dict[str, Secret] = {}
        for field, file, option in (("postgres_password", postgres_password_file, "--postgres-password-file"),
                                    ("redis_password", redis_password_file, "--redis-password-file")):
            if file is not None:
                datastore_passwords[field] = Secret(read_credential_file(file, option))
        return operator.bootstrap_vault(
            settings, token_file, provider_keys=provider_keys, credentials_dir=credentials_dir,
            rotate_core=rotate_core, rotate_master_key=rotate_master_key, datastore_passwords=datastore_passwords,
        )
    except BootError as exc:
        die(exc)


def issue_secret_id(token_file: Path, credentials_dir: Path) -> tuple[Path, Path]:
    """A fresh single-use secret_id: the role_id and secret_id files."""
    settings = open_settings()
    try:
        return operator.issue_secret_id(settings, token_file, credentials_dir)
    except BootError as exc:
        die(exc)
