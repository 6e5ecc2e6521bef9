"""HAZMAT: Google service-account JSON (the credential of a ``vertex_ai`` provider), checked before it is stored or used.

The JSON holds an RSA private key. LiteLLM hands it to google-auth, which signs an assertion with that key and posts it
to the JSON's own ``token_uri`` for an access token: the token_uri decides where a key-signed credential goes, so it is
a steering point inside the secret itself. Only Google's token endpoint, or a loopback URL for the stand-in, passes
(threat-model TM-S9). Every check raises :class:`BootError` with one line naming the field, never a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from gateway.boot.errors import BootError
from gateway.policy import is_loopback_host

# Where google-auth posts the signed assertion for Google's own accounts; the assertion's audience is this URL
# whatever the token_uri says (google/oauth2/service_account.py, _GOOGLE_OAUTH2_TOKEN_ENDPOINT).
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
# The fields google-auth reads from a service account's JSON (from_service_account_info), each a non-empty string.
REQUIRED_FIELDS = ("type", "client_email", "private_key", "private_key_id", "token_uri")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}")
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# The only universe google-auth exchanges a token for at token_uri; another one switches it to self-signed JWTs
# sent straight to the API, which the gateway has not reviewed.
DEFAULT_UNIVERSE = "googleapis.com"


def is_allowed_token_uri(value: str) -> bool:
    """Google's token endpoint, or an http(s) URL on a loopback address (the stand-in in tests and ``gateway dev``)."""
    if value == GOOGLE_TOKEN_URI:
        return True
    parts = urlsplit(value)
    return (parts.scheme in ("http", "https") and "@" not in parts.netloc and parts.hostname is not None
            and is_loopback_host(parts.hostname) and not parts.query and not parts.fragment)


def parse_service_account(value: str, where: str) -> dict[str, Any]:
    """``value`` as a service account's JSON google-auth can use, or :class:`BootError` naming ``where``."""
    try:
        info = json.loads(value)
    except ValueError:
        raise BootError("provider credentials", f"{where} is not JSON (a Vertex AI provider's field holds the "
                                                "service account's JSON key file)") from None
    if not isinstance(info, dict):
        raise BootError("provider credentials", f"{where} is not a JSON object")
    for name in REQUIRED_FIELDS:
        if not isinstance(info.get(name), str) or not info[name]:
            raise BootError("provider credentials", f"{where} has no {name}")
    if info["type"] != "service_account":
        raise BootError("provider credentials", f"{where}: type must be service_account (other Google credential "
                                                "types are not served)")
    if not _EMAIL.fullmatch(info["client_email"]):
        raise BootError("provider credentials", f"{where}: client_email is not an e-mail address")
    if not _KEY_ID.fullmatch(info["private_key_id"]):
        raise BootError("provider credentials", f"{where}: private_key_id is not a key id")
    if not is_allowed_token_uri(info["token_uri"]):
        raise BootError("provider credentials", f"{where}: token_uri must be {GOOGLE_TOKEN_URI} (or a loopback URL "
                                                "for a stand-in): the signed assertion is sent there")
    if info.get("universe_domain", DEFAULT_UNIVERSE) != DEFAULT_UNIVERSE:
        raise BootError("provider credentials", f"{where}: universe_domain must be {DEFAULT_UNIVERSE}")
    _check_private_key(info["private_key"], where)
    return info


def _check_private_key(pem: str, where: str) -> None:
    # google-auth's own signer loads the key as it will at the first token exchange.
    from google.auth.crypt import RSASigner

    try:
        RSASigner.from_string(pem)  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001 - any failure to load is one line; the exception may quote the key
        raise BootError("provider credentials", f"{where}: private_key is not an RSA private key in PEM") from None


def secret_parts(value: str) -> list[str]:
    """The parts of a service account's JSON that log redaction masks besides the whole: the private key as it is and
    as JSON escapes it (a log line may quote either)."""
    try:
        info = json.loads(value)
    except ValueError:
        return []
    key = info.get("private_key") if isinstance(info, dict) else None
    if not isinstance(key, str):
        return []
    return [key, json.dumps(key)[1:-1], *[line for line in key.splitlines() if len(line) >= 40]]


def check_vertex_credentials(kinds: Mapping[str, str], provider_keys: Mapping[str, Any], where: str) -> None:
    """Each ``vertex_ai`` provider's Vault field (``kinds``: provider name -> kind) holds a usable service account."""
    for name, kind in sorted(kinds.items()):
        if kind == "vertex_ai" and name in provider_keys:
            parse_service_account(provider_keys[name].reveal(), f"{where} field {name!r}")
