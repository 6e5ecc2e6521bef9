"""HAZMAT: reading the gateway's secrets from Vault (KV v2) with hvac, then giving up the token.

Layout under ``<mount>/<path>`` (defaults ``secret/gateway``)::

    core        master_key (LiteLLM master key), pepper (HMAC key for virtual-key digests),
                audit_key (HMAC key of the audit chain)
    providers   one field per provider name in the policy: that provider's API key
    datastores  postgres_password, redis_password: read only when GATEWAY_DATABASE_PASSWORD_FROM_VAULT or
                GATEWAY_REDIS_PASSWORD_FROM_VAULT asks for them

A :class:`BootError` names the step and the path or setting that failed; it never carries a value, a token or the
text of an hvac exception (which may echo request data).
"""

from __future__ import annotations

import dataclasses
import hmac
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable

import hvac
import hvac.exceptions
import requests

from gateway.boot import bedrock_credentials
from gateway.boot.errors import BootError
from gateway.boot.login import login
from gateway.boot.secret import Secret
from gateway.boot.settings import Settings
from gateway.boot.vault_client import new_client, transport_error

__all__ = ["VaultSecrets", "check_distinct", "check_strong", "login", "new_client", "read_secrets", "revoke_own_token",
           "transport_error"]

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
    postgres_password: Secret | None = None
    redis_password: Secret | None = None

    def all_values(self) -> Iterable[Secret]:
        yield self.master_key
        yield self.pepper
        yield self.audit_key
        yield from self.provider_keys.values()
        yield from (value for value in (self.postgres_password, self.redis_password) if value is not None)


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
    except requests.exceptions.RequestException as exc:
        raise transport_error("vault read", settings, exc) from None
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


def _compressed_bits(text: str) -> int:
    """Bits left after zlib removes the repetition it can find (its fixed header and checksum not counted)."""
    return 8 * (len(zlib.compress(text.encode("utf-8"), 9)) - _ZLIB_OVERHEAD)


def _longest_constant_step_run(text: str) -> int:
    """Length of the longest stretch of characters whose code points move by one fixed step: repeats ("aaaa"), the
    alphabet in order ("ABCD", "0123") or backwards, or with a stride ("ACEG")."""
    longest = run = min(len(text), 2)
    for i in range(2, len(text)):
        if ord(text[i]) - ord(text[i - 1]) == ord(text[i - 1]) - ord(text[i - 2]):
            run += 1
        else:
            run = 2
        longest = max(longest, run)
    return longest


_ZLIB_OVERHEAD = len(zlib.compress(b"", 9))
# A run this long in random text is beyond chance: for hex (the smallest alphabet a generator uses) one position in
# 16**8 starts one.
MAX_CONSTANT_STEP_RUN = 9


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
    # Floors that random text of any length clears easily, each catching a different pattern:
    # * Shannon estimate from the character frequencies: few distinct characters or a skewed mix (32 random bytes as
    #   hex or base64url score well over 200 bits);
    # * distinct character pairs: random text shows most of the pairs it can (as many as it has pairs, at most the
    #   square of its alphabet); a repeated block or a short cycle shows few;
    # * what zlib cannot squeeze out, against what the alphabet could carry: periodic text of any length compresses
    #   to almost nothing, random text hardly at all;
    # * no long run with a fixed step (the alphabet in order has every character once and passes the others).
    distinct = len(set(body))
    pairs = len(body) - 1
    bigrams = len({body[i : i + 2] for i in range(pairs)})
    capacity = len(body) * math.log2(max(distinct, 2))
    if (
        _entropy_bits(body) < 160
        or bigrams < 0.5 * min(pairs, distinct * distinct)
        or _compressed_bits(body) < max(160, 0.5 * capacity)
        or _longest_constant_step_run(body) > MAX_CONSTANT_STEP_RUN
    ):
        raise BootError("vault secrets", f"{where} does not look random; generate it from a CSPRNG")
    del value, body


def _forms(value: str) -> set[bytes]:
    """A value and its body without a leading word prefix ("sk-", "sk-proj-"), for the distinctness check."""
    return {value.encode("utf-8"), _PREFIX.sub("", value).encode("utf-8")}


_PREFIX = re.compile(r"^(?:[A-Za-z]{2,8}[-_])+")


def check_distinct(named: dict[str, Secret]) -> None:
    """Refuse two secrets that are the same value, also once a prefix such as "sk-" is set aside: one leaked value
    must not open a second door (the pepper and the audit key are HMAC keys; the master key is sent nowhere but
    LiteLLM; provider keys go to providers). Compared in constant time; the error names the fields only."""
    items = [(where, _forms(secret.reveal())) for where, secret in named.items()]
    for i, (first_where, first) in enumerate(items):
        for second_where, second in items[i + 1 :]:
            same = False
            for a in first:
                for b in second:
                    same |= hmac.compare_digest(a, b)
            if same:
                raise BootError("vault secrets", f"{first_where} and {second_where} hold the same value; generate "
                                                 "each secret separately")


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
    datastores = read_datastore_passwords(client, settings)
    check_distinct({
        f"{core_where} field 'master_key'": master_key,
        f"{core_where} field 'pepper'": pepper,
        f"{core_where} field 'audit_key'": audit_key,
        **{f"{settings.vault_mount}/{settings.vault_path}/providers field {name!r}": key
           for name, key in provider_keys.items()},
        **{f"{settings.vault_mount}/{settings.vault_path}/datastores field {name!r}": password
           for name, password in datastores.items()},
    })
    return VaultSecrets(master_key=master_key, pepper=pepper, audit_key=audit_key, provider_keys=provider_keys,
                        postgres_password=datastores.get("postgres_password"),
                        redis_password=datastores.get("redis_password"))


def check_provider_credentials(settings: Settings, provider_keys: dict[str, Secret], kinds: dict[str, str]) -> None:
    """Each provider's credential has its kind's shape: for kind bedrock, an AWS credential as a JSON object
    (:mod:`gateway.boot.bedrock_credentials`); one line naming the field, never the value."""
    where = f"{settings.vault_mount}/{settings.vault_path}/providers"
    for name, key in sorted(provider_keys.items()):
        if kinds.get(name) == "bedrock":
            try:
                bedrock_credentials.parse(key.reveal())
            except bedrock_credentials.CredentialShapeError as exc:
                raise BootError("vault read", f"{where} field {name!r} (kind bedrock) {exc}") from None


DATASTORE_FIELDS = {"postgres_password": "database_password_from_vault", "redis_password": "redis_password_from_vault"}


def read_datastore_passwords(client: hvac.Client, settings: Settings) -> dict[str, Secret]:
    """The datastore passwords the settings ask Vault for, by field name; none asked, no read (and no token use).
    Each one asked for must be there and strong: a store whose password the settings put in Vault never falls back to
    another source."""
    wanted = [name for name, setting in DATASTORE_FIELDS.items() if getattr(settings, setting)]
    if not wanted:
        return {}
    where = f"{settings.vault_mount}/{settings.vault_path}/datastores"
    data = _read(client, settings, "datastores")
    found: dict[str, Secret] = {}
    for name in wanted:
        found[name] = _field(data, where, name)
        check_strong(found[name], f"{where} field {name!r}")
    return found


def revoke_own_token(client: hvac.Client) -> None:
    """Give up the token used for boot: after this the process holds no Vault credential."""
    try:
        client.auth.token.revoke_self()
    except (requests.exceptions.RequestException, hvac.exceptions.VaultError):
        raise BootError("vault revoke", "could not revoke the boot token") from None
    finally:
        client.token = None  # type: ignore[assignment]  # hvac's stubs say str; None is how a client drops its token
        client.adapter.close()
