"""Authenticated encryption of single values, bound to the path they are stored at.

Envelope (ASCII, self-describing)::

    v1:<key id>:<base64url nonce>:<base64url ciphertext+tag>

AES-256-GCM with a fresh random 96-bit nonce per value; base64url without padding. The
associated data is ``b"connector-manager/v1|" + key id + b"|" + path``: a value copied to
another path, or relabelled with another key id, fails to decrypt.

The old service's format ``hex(iv):hex(ciphertext):hex(tag)`` (AES-256-GCM, key =
SHA-256(utf-8 SECRET_KEY), no associated data, so not bound to a path) is still readable when the
keyring has the legacy secret; :meth:`Aead.needs_rewrap` flags it so a migration re-encrypts it.

Failures raise :class:`CryptoError` whose message names the path and a reason, never key
material, plaintext or ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from typing import Final, NamedTuple, final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adapters.crypto.key_file import KeyringSource
from adapters.crypto.keyring import Keyring, is_valid_key_id
from connector_core.errors import CryptoError

__all__ = [
    "AAD_PREFIX",
    "ENVELOPE_VERSION",
    "NONCE_SIZE",
    "Aead",
    "associated_data",
    "is_legacy",
    "seal_legacy_for_tests",
]

ENVELOPE_VERSION: Final = "v1"
AAD_PREFIX: Final = b"connector-manager/v1|"
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16

# Lower-case hex only (what the old service wrote), so every envelope string maps to one value.
_LEGACY = re.compile(r"((?:[0-9a-f]{2})+):((?:[0-9a-f]{2})*):([0-9a-f]{32})")


def associated_data(key_id: str, path: str) -> bytes:
    """The GCM associated data binding a v1 value to its key id and storage path."""
    return AAD_PREFIX + key_id.encode("ascii") + b"|" + path.encode("utf-8", "surrogatepass")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: by padding needed: the last characters whose unused low bits are zero
_CANONICAL_LAST: Final = {
    1: frozenset(c for i, c in enumerate(_ALPHABET) if not i & 0b11),
    2: frozenset(c for i, c in enumerate(_ALPHABET) if not i & 0b1111),
}


def _unb64url(text: str) -> bytes | None:
    """Strict inverse of :func:`_b64url`: None unless ``text`` is its canonical output.

    Hot path (every secret read): a strict decode of the standard alphabet after swapping
    ``-_`` in, ``+/`` (and padding) refused beforehand, and the unused trailing bits of the
    last character checked directly instead of encoding again."""
    pad = -len(text) % 4
    if pad == 3 or "+" in text or "/" in text or "=" in text:
        return None
    try:
        data = binascii.a2b_base64(text.replace("-", "+").replace("_", "/") + "=" * pad, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    # Non-zero unused trailing bits would decode to the same bytes: refuse them.
    if pad and text[-1] not in _CANONICAL_LAST[pad]:
        return None
    return data


def is_legacy(envelope: str) -> bool:
    """Whether ``envelope`` has the old service's ``hex(iv):hex(ciphertext):hex(tag)`` shape."""
    return isinstance(envelope, str) and _LEGACY.fullmatch(envelope) is not None


class _V1(NamedTuple):
    key_id: str
    nonce: bytes
    sealed: bytes  # ciphertext + tag


def _parse_v1(envelope: str, known: Keyring | None = None) -> _V1 | str:
    """The parts of a well-formed v1 envelope, or the reason (safe to show) it is not one. A key
    id that ``known`` holds is valid (the keyring checked it) without looking again."""
    parts = envelope.split(":")
    if len(parts) != 4 or parts[0] != ENVELOPE_VERSION:
        return "not an encrypted envelope"
    _, key_id, nonce_text, sealed_text = parts
    if not (known is not None and key_id in known) and not is_valid_key_id(key_id):
        return "malformed envelope (key id)"
    nonce = _unb64url(nonce_text)
    if nonce is None or len(nonce) != NONCE_SIZE:
        return "malformed envelope (nonce)"
    sealed = _unb64url(sealed_text)
    if sealed is None or len(sealed) < TAG_SIZE:
        return "malformed envelope (ciphertext)"
    return _V1(key_id, nonce, sealed)


def _failure(path: str | None, reason: str) -> CryptoError:
    where = "a value" if path is None else f"the value at {path!r}"
    metadata: dict[str, str] = {"reason": reason}
    if path is not None:
        metadata["path"] = path
    return CryptoError(f"cannot decrypt {where}: {reason}", metadata=metadata)


@final
class Aead:
    """Seals and opens values with the keys of a :class:`Keyring`."""

    __slots__ = ("_source",)

    def __init__(self, keyring: Keyring | KeyringSource) -> None:
        """``keyring``, or a source of the keyring to use at each call (:class:`KeyFile`: one
        that another process may rotate)."""
        self._source = keyring

    @property
    def keyring(self) -> Keyring:
        source = self._source
        return source if isinstance(source, Keyring) else source.current()

    def seal(self, plaintext: bytes, *, path: str) -> str:
        """Encrypt ``plaintext`` for storage at ``path`` with the primary key."""
        if not isinstance(plaintext, bytes | bytearray | memoryview):
            raise TypeError("plaintext must be bytes")
        ring = self.keyring  # once: a rotation between two reads would pair one key's id with another's cipher
        key_id = ring.primary_id
        nonce = os.urandom(NONCE_SIZE)
        sealed = ring.primary_cipher().encrypt(nonce, bytes(plaintext), associated_data(key_id, path))
        return f"{ENVELOPE_VERSION}:{key_id}:{_b64url(nonce)}:{_b64url(sealed)}"

    def open(self, envelope: str, *, path: str, keyring: Keyring | None = None) -> bytes:
        """Decrypt a v1 (or, with a legacy secret, an old-format) value stored at ``path``, with
        ``keyring`` when given (one the caller read from :attr:`keyring`), else the current one.

        Raises :class:`CryptoError` on a malformed or tampered envelope, an unknown key id, a
        wrong path, or an old-format value without a legacy secret.
        """
        if not isinstance(envelope, str) or not envelope.isascii():
            raise _failure(path, "not an encrypted envelope")
        ring = self.keyring if keyring is None else keyring
        if not envelope.startswith("v1:") and is_legacy(envelope):
            return self._open_legacy(ring, envelope, path)
        parsed = _parse_v1(envelope, ring)
        if isinstance(parsed, str):
            raise _failure(path, parsed)
        cipher = ring.cipher(parsed.key_id)
        if cipher is None:
            raise _failure(path, f"unknown key id {parsed.key_id!r}")
        try:
            return cipher.decrypt(parsed.nonce, parsed.sealed, associated_data(parsed.key_id, path))
        except InvalidTag:
            raise _failure(path, "authentication failed (tampered, wrong key or moved from another path)") from None

    @staticmethod
    def _open_legacy(ring: Keyring, envelope: str, path: str) -> bytes:
        cipher = ring.legacy_cipher()
        if cipher is None:
            raise _failure(path, "legacy format but no legacy secret is configured")
        iv_hex, ct_hex, tag_hex = envelope.split(":")
        iv = bytes.fromhex(iv_hex)
        try:
            return cipher.decrypt(iv, bytes.fromhex(ct_hex) + bytes.fromhex(tag_hex), None)
        except InvalidTag:
            raise _failure(path, "authentication failed (legacy format: tampered or wrong secret)") from None
        except ValueError:  # IV length outside what AES-GCM accepts
            raise _failure(path, "malformed legacy envelope (iv)") from None

    def needs_rewrap(self, envelope: str) -> bool:
        """True for an old-format value or a v1 value not sealed with the primary key.

        Raises :class:`CryptoError` when ``envelope`` is neither.
        """
        if not isinstance(envelope, str) or not envelope.isascii():
            raise _failure(None, "not an encrypted envelope")
        if is_legacy(envelope):
            return True
        parsed = _parse_v1(envelope)
        if isinstance(parsed, str):
            raise _failure(None, parsed)
        return parsed.key_id != self.keyring.primary_id

    def key_id_of(self, envelope: str) -> str | None:
        """The key id of a well-formed v1 envelope; None for anything else (legacy included)."""
        if not isinstance(envelope, str) or not envelope.isascii():
            return None
        parsed = _parse_v1(envelope)
        return None if isinstance(parsed, str) else parsed.key_id

    def rewrap(self, envelope: str, *, path: str) -> str:
        """Open ``envelope`` and seal its plaintext again with the primary key."""
        return self.seal(self.open(envelope, path=path), path=path)

    def __repr__(self) -> str:
        return f"Aead({self._source!r})"

    __str__ = __repr__


def seal_legacy_for_tests(plaintext: bytes, *, legacy_secret: str | bytes, iv: bytes | None = None) -> str:
    """Produce a value in the OLD service's format. For tests and fixtures only.

    ``hex(iv):hex(ciphertext):hex(tag)`` with AES-256-GCM, key = SHA-256(secret as utf-8),
    a random 12-byte IV unless given, and no associated data.
    """
    raw = legacy_secret.encode("utf-8") if isinstance(legacy_secret, str) else legacy_secret
    nonce = os.urandom(NONCE_SIZE) if iv is None else iv
    sealed = AESGCM(hashlib.sha256(raw).digest()).encrypt(nonce, bytes(plaintext), None)
    ciphertext, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
    return f"{nonce.hex()}:{ciphertext.hex()}:{tag.hex()}"
