"""A wrapper that keeps a decrypted value out of repr, str, logs and tracebacks.

Every value that came out of sops is a `Secret` from the moment it is decrypted. Code that
needs the value calls `reveal()`, which makes each use of plaintext visible in review.
"""

from __future__ import annotations

from typing import Any


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret holds a string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("connc.Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        # Pickling would copy plaintext into another process' memory or onto disk unnoticed.
        raise TypeError("a Secret cannot be pickled")
