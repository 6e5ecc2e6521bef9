"""The virtual-key format: recognisable, typed by prefix, and self-checking.

A key looks like ``lgw_<kind>_<43 random base62 chars><6 base62 chars of CRC32>``:

* ``lgw_`` makes leaked keys easy to find for secret scanners (and is not LiteLLM's ``sk-``).
* ``<kind>`` is ``ck`` (customer, valid on ``/v1`` only) or ``ak`` (admin, valid on ``/admin`` only).
* 43 characters drawn uniformly from base62 with :mod:`secrets` carry 256 bits of entropy (43 · log2 62 ≈ 256.03).
* The CRC32 of everything before it, base62-encoded, lets a typo or a made-up string be rejected before any store
  lookup (the GitHub token scheme). It is an integrity check for honest mistakes, not a security boundary.

The regex :data:`KEY_PATTERN` is published in SECURITY.md.
"""

from __future__ import annotations

import enum
import re
import secrets
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BRAND = "lgw"
RANDOM_LENGTH = 43
CHECKSUM_LENGTH = 6


class KeyKind(enum.StrEnum):
    CUSTOMER = "ck"
    ADMIN = "ak"


KEY_PATTERN = re.compile(r"^lgw_(ck|ak)_[0-9A-Za-z]{49}$")


class MalformedKey(ValueError):
    """The string is not a well-formed key of the expected kind (no store lookup was made)."""


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits))


def _checksum(prefix_and_random: str) -> str:
    return _base62(zlib.crc32(prefix_and_random.encode("ascii")), CHECKSUM_LENGTH)


def generate(kind: KeyKind) -> str:
    """A new key of ``kind``. Show it once; store only its HMAC."""
    body = f"{BRAND}_{kind.value}_" + "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return body + _checksum(body)


def check(candidate: str, kind: KeyKind) -> None:
    """Raise :class:`MalformedKey` unless ``candidate`` is a well-formed key of ``kind`` with a valid checksum."""
    if len(candidate) != len(BRAND) + 4 + RANDOM_LENGTH + CHECKSUM_LENGTH or not KEY_PATTERN.match(candidate):
        raise MalformedKey("shape")
    if candidate[len(BRAND) + 1 : len(BRAND) + 3] != kind.value:
        raise MalformedKey("kind")
    body, checksum = candidate[:-CHECKSUM_LENGTH], candidate[-CHECKSUM_LENGTH:]
    # The checksum is public information derived from public text; a plain comparison leaks nothing secret.
    if _checksum(body) != checksum:
        raise MalformedKey("checksum")
