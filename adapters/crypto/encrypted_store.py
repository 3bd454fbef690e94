"""A :class:`KeyValueStore` that encrypts every value before it reaches the inner store.

Values are sealed with :class:`Aead` using the key as the path, so the inner store (etcd, a
database, ...) only ever holds ciphertext, and a value copied to another key does not decrypt.
Revisions and compare-and-swap are the inner store's, passed through unchanged.

Reads of the same stored value are decrypted once: the plaintext is kept (in this process's
memory only, at most :data:`OPENED_MEMO_SIZE` values) under the exact ``(key, envelope)`` pair
it was authenticated for and the keyring that opened it. A changed value, a value moved to
another key or a new keyring (a rotation, a retired key) is a miss and is decrypted (or
refused) again, so the memo answers only what a fresh decryption would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import final

from adapters.crypto.aead import Aead
from adapters.crypto.keyring import Keyring
from adapters.sealing import key_label, rewrap_or_report
from connector_core.errors import Conflict, CryptoError
from connector_core.ports.kv_store import KeyValueStore, Versioned

__all__ = ["OPENED_MEMO_SIZE", "EncryptedKeyValueStore"]

#: how many opened values a store keeps (the oldest goes first)
OPENED_MEMO_SIZE = 1024


@final
class EncryptedKeyValueStore:
    """Encryption at rest over any :class:`KeyValueStore`; itself a ``KeyValueStore``."""

    __slots__ = ("_aead", "_inner", "_opened")

    def __init__(self, inner: KeyValueStore, aead: Aead) -> None:
        self._inner = inner
        self._aead = aead
        #: (key, envelope) -> (the keyring that opened it, its plaintext as last returned)
        self._opened: dict[tuple[str, str], tuple[Keyring, Versioned]] = {}

    @property
    def inner(self) -> KeyValueStore:
        return self._inner

    @property
    def aead(self) -> Aead:
        return self._aead

    def _open(self, key: str, stored: Versioned) -> Versioned:
        ring = self._aead.keyring
        memo = (key, stored.value)
        hit = self._opened.get(memo)
        if hit is not None and hit[0] is ring:
            opened = hit[1]  # immutable: the same object again while the revision is the same
            return opened if opened.revision == stored.revision else Versioned(opened.value, stored.revision)
        plaintext = self._aead.open(stored.value, path=key, keyring=ring)
        try:
            value = plaintext.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise CryptoError(
                f"cannot decrypt the value at {key!r}: the plaintext is not UTF-8",
                metadata={"path": key, "reason": "plaintext is not UTF-8"},
            ) from None
        memos = self._opened
        if len(memos) >= OPENED_MEMO_SIZE:
            with contextlib.suppress(StopIteration, RuntimeError, KeyError):  # another thread got there
                del memos[next(iter(memos))]
        result = Versioned(value, stored.revision)
        memos[memo] = (ring, result)
        return result

    async def get(self, key: str) -> Versioned | None:
        stored = await self._inner.get(key)
        return None if stored is None else self._open(key, stored)

    async def put(self, key: str, value: str, *, expected_revision: int | None = None) -> int:
        envelope = self._aead.seal(value.encode("utf-8", "surrogatepass"), path=key)
        return await self._inner.put(key, envelope, expected_revision=expected_revision)

    async def delete(self, key: str, *, expected_revision: int | None = None) -> bool:
        return await self._inner.delete(key, expected_revision=expected_revision)

    async def list_prefix(self, prefix: str) -> Mapping[str, Versioned]:
        stored = await self._inner.list_prefix(prefix)
        return {key: self._open(key, versioned) for key, versioned in stored.items()}

    async def _sealed(self, prefix: str, exclude: tuple[str, ...]) -> dict[str, Versioned]:
        stored = await self._inner.list_prefix(prefix)
        return {key: value for key, value in stored.items() if not key.startswith(exclude)}

    async def census(self, prefix: str, *, exclude: tuple[str, ...] = ()) -> dict[str, int]:
        """How many values under ``prefix`` (but under none of ``exclude``) each key id seals
        (``legacy``: the old format; ``unreadable``: neither format)."""
        found: dict[str, int] = {}
        for versioned in (await self._sealed(prefix, exclude)).values():
            label = key_label(self._aead, versioned.value)
            found[label] = found.get(label, 0) + 1
        return found

    async def rewrap_all(
        self,
        prefix: str,
        advance: Callable[[int], None] | None = None,
        damaged: Callable[[str], None] | None = None,
        *,
        exclude: tuple[str, ...] = (),
    ) -> int:
        """Re-encrypt with the primary key every value under ``prefix`` (but under none of
        ``exclude``) that needs it.

        Old-format values and values sealed with a non-primary key are rewritten with a
        compare-and-swap on the revision that was read; a value changed meanwhile is left to
        its writer (which used the primary key anyway). Returns how many values were rewritten.
        A value that cannot be decrypted is left as it is and its key told to ``damaged`` (the
        others are still rewritten); without ``damaged`` it raises :class:`CryptoError` naming
        the key (the values rewritten before it stay rewritten: the call can be repeated).
        """
        rewritten = 0
        for key, versioned in (await self._sealed(prefix, exclude)).items():
            envelope = rewrap_or_report(self._aead, versioned.value, key, damaged)
            if envelope is None:
                continue
            if advance is not None:
                advance(1)
            try:
                await self._inner.put(key, envelope, expected_revision=versioned.revision)
            except Conflict:
                continue
            rewritten += 1
        return rewritten

    def __repr__(self) -> str:
        return f"EncryptedKeyValueStore(inner={type(self._inner).__name__}, aead={self._aead!r})"

    __str__ = __repr__
