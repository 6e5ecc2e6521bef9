"""Keys are stored only as HMAC-SHA256 under a pepper that lives in Vault, never in the database."""

from __future__ import annotations

import hashlib
import hmac


class KeyHasher:
    """Computes the stored digest of a key. Holds the pepper; never shows it."""

    __slots__ = ("_pepper",)

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 32:
            raise ValueError("pepper must be at least 32 bytes")
        self._pepper = pepper

    def digest(self, key: str) -> str:
        return hmac.new(self._pepper, key.encode("utf-8"), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return "KeyHasher(pepper='**********')"

    def __reduce__(self) -> str:
        raise TypeError("KeyHasher cannot be pickled")
