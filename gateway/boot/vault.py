"""HAZMAT: reading the gateway's secrets from Vault (KV v2) with hvac, then giving up the token.

Layout under ``<mount>/<path>`` (defaults ``secret/gateway``)::

    core        master_key (LiteLLM master key), pepper (HMAC key for virtual-key digests),
                audit_key (HMAC key of the audit chain)
    providers   one field per provider name in the policy: that provider's API key

A :class:`BootError` names the step and the path or setting that failed; it never carries a value, a token or the
text of an hvac exception (which may echo request data).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable

import hvac
import hvac.exceptions
import requests

from gateway.boot.errors import BootError
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings, read_credential_file

# Values published in docs, tutorials and LiteLLM's own examples; refused as a master key or pepper.
PUBLIC_VALUES = frozenset(
    {
        "sk-1234",
        "sk-12345",
        "sk-123456",
        "sk-1234567890",
        "sk-master-key",
        "sk-litellm",
        "sk-litellm-master-key",
        "sk-my-master-key",
        "sk-password",
        "sk-test",
        "sk-admin",
        "changeme",
        "password",
    }
)
MIN_SECRET_BYTES = 32
MASTER_KEY_PREFIX = "sk-"  # LiteLLM requires it


@dataclasses.dataclass(frozen=True, slots=True)
class VaultSecrets:
    master_key: Secret
    pepper: Secret
    audit_key: Secret
    provider_keys: dict[str, Secret]

    def all_values(self) -> Iterable[Secret]:
        yield self.master_key
        yield self.pepper
        yield self.audit_key
        yield from self.provider_keys.values()


def login(settings: Settings) -> hvac.Client:
    """An authenticated client (AppRole or token, per settings)."""
    if settings.vault_auth == "approle":
        role_id = read_credential_file(settings.vault_role_id_file, "GATEWAY_VAULT_ROLE_ID_FILE")
        secret_id = read_credential_file(settings.vault_secret_id_file, "GATEWAY_VAULT_SECRET_ID_FILE")
        client = hvac.Client(url=settings.vault_addr, timeout=settings.vault_timeout_seconds)
        try:
            client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=settings.vault_approle_mount)
        except hvac.exceptions.InvalidRequest:
            raise BootError("vault login", "AppRole login refused (wrong role_id, or secret_id used, expired or unknown)") from None
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            raise BootError("vault login", "AppRole login refused (permission denied)") from None
        except requests.exceptions.RequestException:
            raise BootError("vault login", f"Vault at {settings.vault_addr} is unreachable") from None
        except hvac.exceptions.VaultError as exc:
            raise BootError("vault login", f"Vault answered an error ({type(exc).__name__})") from None
        finally:
            del secret_id
        # A successful login is proof enough; a lookup-self here would spend one of the token's few uses.
        return client
    token = read_credential_file(settings.vault_token_file, "GATEWAY_VAULT_TOKEN_FILE")
    client = hvac.Client(url=settings.vault_addr, token=token, timeout=settings.vault_timeout_seconds)
    del token
    try:
        authenticated = client.is_authenticated()
    except requests.exceptions.RequestException:
        raise BootError("vault login", f"Vault at {settings.vault_addr} is unreachable") from None
    except hvac.exceptions.VaultError as exc:
        raise BootError("vault login", f"Vault answered an error ({type(exc).__name__})") from None
    if not authenticated:
        raise BootError("vault login", "token refused (invalid, expired or revoked)")
    return client


def _read(client: hvac.Client, settings: Settings, sub_path: str) -> dict[str, object]:
    path = f"{settings.vault_path}/{sub_path}"
    where = f"{settings.vault_mount}/{path}"
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=settings.vault_mount, raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        raise BootError("vault read", f"secret {where} does not exist") from None
    except hvac.exceptions.Forbidden:
        raise BootError("vault read", f"permission denied reading {where}") from None
    except requests.exceptions.RequestException:
        raise BootError("vault read", f"Vault at {settings.vault_addr} is unreachable") from None
    except hvac.exceptions.VaultError as exc:
        raise BootError("vault read", f"reading {where} failed ({type(exc).__name__})") from None
    data = (response or {}).get("data", {}).get("data")
    if not isinstance(data, dict):
        raise BootError("vault read", f"secret {where} has no data")
    return data


def _field(data: dict[str, object], where: str, name: str) -> Secret:
    value = data.get(name)
    if value is None:
        raise BootError("vault read", f"{where} has no field {name!r}")
    if not isinstance(value, str) or not value.strip():
        raise BootError("vault read", f"{where} field {name!r} is empty or not a string")
    if value.startswith("os.environ/"):
        # LiteLLM would resolve this as a reference to an environment variable.
        raise BootError("vault read", f"{where} field {name!r} is an environment reference, not a value")
    return Secret(value)


def _entropy_bits(text: str) -> float:
    """Shannon estimate of the total entropy of ``text`` from its own character frequencies."""
    counts = Counter(text)
    per_char = -sum((n / len(text)) * math.log2(n / len(text)) for n in counts.values())
    return per_char * len(text)


def check_strong(secret: Secret, where: str, *, prefix: str = "") -> None:
    """Refuse a secret that is public, short, or visibly non-random. Raises; never returns a verdict."""
    value = secret.reveal()
    if value.strip() != value:
        raise BootError("vault secrets", f"{where} has leading or trailing whitespace")
    if value in PUBLIC_VALUES or value.lower() in PUBLIC_VALUES:
        raise BootError("vault secrets", f"{where} is a publicly known value; generate a random one")
    if prefix and not value.startswith(prefix):
        raise BootError("vault secrets", f"{where} must start with {prefix!r}")
    body = value[len(prefix) :]
    # 32 random bytes encode to 43 base64url characters or 64 hex characters; anything shorter cannot hold them.
    if len(body) < 43:
        raise BootError("vault secrets", f"{where} is too short: it must carry at least {MIN_SECRET_BYTES} random bytes")
    # Generous floors that random text clears easily: 32 random bytes as hex or base64url score well over 200 bits
    # of Shannon estimate, and almost all their character pairs differ; repeated or patterned text fails one or both.
    bigrams = [body[i : i + 2] for i in range(len(body) - 1)]
    if _entropy_bits(body) < 160 or len(set(bigrams)) < 0.5 * len(bigrams):
        raise BootError("vault secrets", f"{where} does not look random; generate it from a CSPRNG")
    del value, body


def read_secrets(client: hvac.Client, settings: Settings, provider_names: Iterable[str]) -> VaultSecrets:
    core_where = f"{settings.vault_mount}/{settings.vault_path}/core"
    core = _read(client, settings, "core")
    master_key = _field(core, core_where, "master_key")
    pepper = _field(core, core_where, "pepper")
    check_strong(master_key, f"{core_where} field 'master_key'", prefix=MASTER_KEY_PREFIX)
    check_strong(pepper, f"{core_where} field 'pepper'")
    audit_key = _field(core, core_where, "audit_key")
    check_strong(audit_key, f"{core_where} field 'audit_key'")
    names = sorted(set(provider_names))
    provider_keys: dict[str, Secret] = {}
    if names:
        providers_where = f"{settings.vault_mount}/{settings.vault_path}/providers"
        providers = _read(client, settings, "providers")
        for name in names:
            provider_keys[name] = _field(providers, providers_where, name)
    return VaultSecrets(master_key=master_key, pepper=pepper, audit_key=audit_key, provider_keys=provider_keys)


def revoke_own_token(client: hvac.Client) -> None:
    """Give up the token used for boot: after this the process holds no Vault credential."""
    try:
        client.auth.token.revoke_self()
    except (requests.exceptions.RequestException, hvac.exceptions.VaultError):
        raise BootError("vault revoke", "could not revoke the boot token") from None
    finally:
        client.token = None
        client.adapter.close()
