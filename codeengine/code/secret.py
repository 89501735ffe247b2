"""A wrapper that keeps secret bytes out of reprs, logs and tracebacks."""

from __future__ import annotations

__all__ = ["Secret"]

import hmac


class Secret:
    """Secret bytes (a pepper, a private key, an API key) whose ``repr`` masks the value."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes | bytearray):
            raise TypeError("Secret holds bytes")
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """The secret itself; call only where it is used, never to log or print."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __len__(self) -> int:
        return len(self._value)
