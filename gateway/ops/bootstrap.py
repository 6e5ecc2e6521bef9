"""``gateway secrets``: bootstrap the Vault side and issue secret_ids with an operator token read from a file."""

from __future__ import annotations

from pathlib import Path

from gateway.boot import operator
from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.settings import read_credential_file
from gateway.ops.context import die, open_settings


def bootstrap(token_file: Path, credentials_dir: Path, provider_specs: list[str], rotate_core: bool,
              rotate_master_key: bool = False) -> tuple[Path, Path]:
    """Apply policy, role and secrets; ``provider_specs`` are NAME=PATH. The role_id and secret_id files."""
    settings = open_settings()
    try:
        provider_keys: dict[str, Secret] = {}
        for spec in provider_specs:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise BootError("bootstrap", f"--provider-key-file {spec!r} must be NAME=PATH")
            provider_keys[name] = Secret(read_credential_file(Path(path), f"--provider-key-file {name}"))
        return operator.bootstrap_vault(
            settings, token_file, provider_keys=provider_keys, credentials_dir=credentials_dir,
            rotate_core=rotate_core, rotate_master_key=rotate_master_key,
        )
    except BootError as exc:
        die(exc)


def issue_secret_id(token_file: Path, credentials_dir: Path, wrap_ttl: str | None = None) -> tuple[Path, Path]:
    """A fresh single-use secret_id (or a wrapping token for one): the role_id and secret_id files."""
    settings = open_settings()
    try:
        return operator.issue_secret_id(settings, token_file, credentials_dir, wrap_ttl)
    except BootError as exc:
        die(exc)
