"""HAZMAT: the wrapper every secret travels in.

A :class:`Secret` never shows its value through repr, str, format, f-strings, logging or pickle. The only way out is
the explicit :meth:`Secret.reveal`, which is easy to grep for; every call site is in ``gateway/boot/`` or hands the
value straight to a library (hmac, LiteLLM) that needs it.
"""

from __future__ import annotations

import hmac
from typing import NoReturn

_MASK = "**********"


class Secret:
    """An opaque string secret (compare in constant time, reveal explicitly)."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """Return the plaintext. Keep the result out of logs, exceptions and responses."""
        return self._value

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, format_spec: str) -> str:
        return _MASK

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        # Secrets are not meant for sets or dict keys; hashing would make the value's hash observable.
        raise TypeError("Secret is unhashable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret cannot be pickled")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("Secret cannot be pickled")

    def __getstate__(self) -> NoReturn:
        raise TypeError("Secret cannot be pickled")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Secret:
        return self
