"""What storage adapters need from the encryption layer to keep token material sealed."""

from __future__ import annotations

from typing import Protocol


class Sealer(Protocol):
    def seal(self, plaintext: bytes, *, path: str) -> str:
        """Encrypt, binding the ciphertext to ``path``."""
        ...

    def open(self, envelope: str, *, path: str) -> bytes:
        """Decrypt; :class:`CryptoError` when tampered, moved to another path or keyless."""
        ...
