"""HAZMAT: the AWS credential of a provider of kind bedrock, as Vault holds it.

The provider's field in ``<mount>/<path>/providers`` is the text of one JSON object, ``{"aws_access_key_id": ...,
"aws_secret_access_key": ..., "aws_session_token": ...}`` (the session token optional). Boot and ``gateway secrets
bootstrap`` parse it here, and refuse anything else with one line that names the field or file, never a value. The
values reach LiteLLM in memory only, as its ``aws_*`` parameters (gateway/boot/litellm_mount.py).
"""

from __future__ import annotations

import json
import re

REQUIRED = ("aws_access_key_id", "aws_secret_access_key")
OPTIONAL = ("aws_session_token",)
# AWS access key ids are upper-case letters and digits ("AKIA..." for a user's key, "ASIA..." for a temporary one).
ACCESS_KEY_ID = re.compile(r"[A-Z0-9]{16,128}")
# Secret keys and session tokens: printable ASCII without spaces (a secret key is 40 base64 characters, a session
# token a few hundred to a few thousand).
SECRET_TEXT = re.compile(r"[\x21-\x7e]{16,8192}")
SHAPE = ('a JSON object {"aws_access_key_id": ..., "aws_secret_access_key": ...} with an optional '
         '"aws_session_token"')


class CredentialShapeError(ValueError):
    """The text is not a Bedrock credential; the message says why without quoting any value."""


def parse(text: str) -> dict[str, str]:
    """The credential's fields (``aws_access_key_id``, ``aws_secret_access_key`` and, when given,
    ``aws_session_token``), as LiteLLM's Bedrock handler takes them. Raises :class:`CredentialShapeError`."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise CredentialShapeError(f"is not JSON; it must be {SHAPE}") from None
    if not isinstance(value, dict):
        raise CredentialShapeError(f"must be {SHAPE}")
    unknown = sorted(str(name) for name in value if name not in REQUIRED + OPTIONAL)
    if unknown:
        # A role, profile or endpoint here would be another source of credentials or another host.
        shown = unknown[0] if re.fullmatch(r"[A-Za-z0-9_]{1,40}", unknown[0]) else "?"
        raise CredentialShapeError(f"has the key {shown!r}; it must be {SHAPE} and nothing else")
    for name in REQUIRED:
        if name not in value:
            raise CredentialShapeError(f"has no {name!r}; it must be {SHAPE}")
    fields: dict[str, str] = {}
    for name in REQUIRED + OPTIONAL:
        if name not in value:
            continue
        field = value[name]
        pattern = ACCESS_KEY_ID if name == "aws_access_key_id" else SECRET_TEXT
        if not isinstance(field, str) or not pattern.fullmatch(field) or field.startswith("os.environ/"):
            what = ("16 to 128 upper-case letters and digits" if name == "aws_access_key_id"
                    else "16 to 8192 printable characters without spaces")
            raise CredentialShapeError(f"{name!r} must be a string of {what}")
        fields[name] = field
    return fields


def secret_parts(text: str) -> list[str]:
    """Each value of a Bedrock credential held in ``text`` (for the log redaction), or none when it is not one."""
    try:
        return list(parse(text).values())
    except CredentialShapeError:
        return []
