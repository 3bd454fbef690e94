"""Encryption keys for values at rest.

A :class:`Keyring` holds several AES-256 keys, each under a short *key id* ("k1", "k2", ...).
Exactly one of them is the *primary*: new values are sealed with it, while values sealed with
any key of the ring can still be read. Rotation is therefore: add a new key as primary, keep
the old ones until :meth:`EncryptedKeyValueStore.rewrap_all` has moved every value over, then
drop them.

The ring may also carry the old service's ``SECRET_KEY`` (*legacy secret*) so values written in
the old ``hex(iv):hex(ciphertext):hex(tag)`` format can be read (and re-encrypted).

Key material never appears in ``repr()``, ``str()`` or error messages: only key ids do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from typing import Final, final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from connector_core.errors import ValidationError

__all__ = ["HKDF_INFO", "KEY_ID_PATTERN", "KEY_SIZE", "Keyring", "is_valid_key_id"]

KEY_SIZE: Final = 32
"""Bytes in an AES-256 key."""

HKDF_INFO: Final = b"connector-manager/aead/v1"
"""HKDF ``info`` used by :meth:`Keyring.from_master_secret`."""

KEY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
"""What a key id looks like: short, and free of the ``:`` and ``|`` separators of the
envelope and of the associated data (so both stay unambiguous)."""

_FIELD = "keyring"
_B64_CHARS = re.compile(r"[A-Za-z0-9+/]*")


def _invalid(message: str, *, key_id: str | None = None) -> ValidationError:
    path = f"{_FIELD}.{key_id}" if key_id is not None else _FIELD
    return ValidationError(message, errors=[{"path": path, "message": message}])


def is_valid_key_id(key_id: str) -> bool:
    """Whether ``key_id`` is an acceptable key id (see :data:`KEY_ID_PATTERN`)."""
    return KEY_ID_PATTERN.fullmatch(key_id) is not None


def _check_key_id(key_id: str) -> None:
    if not isinstance(key_id, str) or not is_valid_key_id(key_id):
        # The offending value is not echoed: a mangled setting may have put key material here.
        raise _invalid("invalid key id: expected 1-32 characters of letters, digits, '_', '.' or '-'")


def _secret_bytes(secret: str | bytes, what: str) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not raw:
        raise _invalid(f"the {what} must not be empty")
    return raw


def _decode_key(key_id: str, text: str) -> bytes:
    """Standard or URL-safe base64, padding optional, to exactly :data:`KEY_SIZE` bytes."""
    normalized = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    if not normalized or not _B64_CHARS.fullmatch(normalized) or len(normalized) % 4 == 1:
        raise _invalid(f"key {key_id!r} is not valid base64", key_id=key_id)
    try:
        key = base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"key {key_id!r} is not valid base64", key_id=key_id) from None
    if len(key) != KEY_SIZE:
        raise _invalid(
            f"key {key_id!r} must decode to exactly {KEY_SIZE} bytes (got {len(key)})",
            key_id=key_id,
        )
    return key


@final
class Keyring:
    """AES-256 keys by key id, one of them primary; optionally the legacy secret.

    Immutable: rotation builds a new ring (:meth:`rotated`).
    """

    __slots__ = ("_ciphers", "_keys", "_legacy_cipher", "_primary_id")

    _keys: dict[str, bytes]
    _ciphers: dict[str, AESGCM]
    _primary_id: str
    _legacy_cipher: AESGCM | None

    def __init__(
        self,
        keys: Mapping[str, bytes],
        *,
        primary: str | None = None,
        legacy_secret: str | bytes | None = None,
    ) -> None:
        """``keys`` in order of preference; ``primary`` defaults to the first one."""
        if not keys:
            raise _invalid("the keyring needs at least one key")
        checked: dict[str, bytes] = {}
        for key_id, key in keys.items():
            _check_key_id(key_id)
            if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
                raise _invalid(f"key {key_id!r} must be exactly {KEY_SIZE} bytes", key_id=key_id)
            checked[key_id] = bytes(key)
        primary_id = next(iter(checked)) if primary is None else primary
        if primary_id not in checked:
            raise _invalid(f"the primary key id {primary_id!r} is not in the keyring")
        self._keys = checked
        self._ciphers = {key_id: AESGCM(key) for key_id, key in checked.items()}
        self._primary_id = primary_id
        self._legacy_cipher = None
        if legacy_secret is not None:
            raw = _secret_bytes(legacy_secret, "legacy secret")
            self._legacy_cipher = AESGCM(hashlib.sha256(raw).digest())

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def from_master_secret(
        cls,
        secret: str | bytes,
        key_id: str = "k1",
        *,
        legacy_secret: str | bytes | None = None,
    ) -> Keyring:
        """A one-key ring whose key is HKDF-SHA256(secret, info=:data:`HKDF_INFO`)."""
        _check_key_id(key_id)
        raw = _secret_bytes(secret, "master secret")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=HKDF_INFO)
        return cls({key_id: hkdf.derive(raw)}, legacy_secret=legacy_secret)

    @classmethod
    def parse(cls, spec: str, *, legacy_secret: str | bytes | None = None) -> Keyring:
        """Parse ``"k2:BASE64KEY,k1:BASE64KEY"``; the first entry is the primary.

        Raises :class:`ValidationError` naming the key id (never the key) on a bad entry.
        """
        if not isinstance(spec, str):
            raise _invalid("the keyring setting must be a string")
        keys: dict[str, bytes] = {}
        for number, raw_entry in enumerate(spec.split(","), start=1):
            entry = raw_entry.strip()
            if not entry:
                continue
            key_id, sep, key_text = entry.partition(":")
            key_id = key_id.strip()
            if not sep:
                raise _invalid(f"keyring entry #{number} must look like '<key id>:<base64 key>'")
            if not is_valid_key_id(key_id):
                raise _invalid(
                    f"keyring entry #{number} has an invalid key id: expected 1-32 characters "
                    "of letters, digits, '_', '.' or '-' before the ':'"
                )
            if key_id in keys:
                raise _invalid(f"key id {key_id!r} appears more than once", key_id=key_id)
            keys[key_id] = _decode_key(key_id, key_text)
        if not keys:
            raise _invalid("the keyring setting contains no key")
        return cls(keys, legacy_secret=legacy_secret)

    @classmethod
    def generate(cls, key_id: str = "k1", *, legacy_secret: str | bytes | None = None) -> Keyring:
        """A ring with one new random key."""
        _check_key_id(key_id)
        return cls({key_id: os.urandom(KEY_SIZE)}, legacy_secret=legacy_secret)

    def rotated(self, key_id: str, key: bytes | None = None) -> Keyring:
        """A copy with ``key`` (random when omitted) added under ``key_id`` as the new primary.

        The old keys stay readable, as does the legacy secret.
        """
        if key_id in self._keys:
            raise _invalid(f"key id {key_id!r} is already in the keyring", key_id=key_id)
        new_key = os.urandom(KEY_SIZE) if key is None else key
        ring = Keyring({key_id: new_key, **self._keys})
        ring._legacy_cipher = self._legacy_cipher
        return ring

    def without_legacy(self) -> Keyring:
        """A copy that no longer reads the legacy format (after the migration)."""
        return Keyring(self._keys, primary=self._primary_id)

    # -- accessors -------------------------------------------------------------------------------

    def to_spec(self) -> str:
        """The ``"k2:BASE64KEY,k1:BASE64KEY"`` form (primary first) that :meth:`parse` reads.

        This *is* key material: store it like a password. The legacy secret is not included.
        """
        ordered = [self._primary_id, *(k for k in self._keys if k != self._primary_id)]
        return ",".join(f"{key_id}:{base64.b64encode(self._keys[key_id]).decode('ascii')}" for key_id in ordered)

    @property
    def primary_id(self) -> str:
        return self._primary_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id, primary first."""
        return (self._primary_id, *(k for k in self._keys if k != self._primary_id))

    @property
    def has_legacy(self) -> bool:
        return self._legacy_cipher is not None

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def cipher(self, key_id: str) -> AESGCM | None:
        """The AES-GCM cipher for ``key_id``, or None when the ring does not hold it."""
        return self._ciphers.get(key_id)

    def primary_cipher(self) -> AESGCM:
        return self._ciphers[self._primary_id]

    def legacy_cipher(self) -> AESGCM | None:
        """AES-GCM keyed with SHA-256(legacy secret), or None without a legacy secret."""
        return self._legacy_cipher

    def __repr__(self) -> str:
        return f"Keyring(primary={self._primary_id!r}, key_ids={self.key_ids!r}, legacy={self.has_legacy})"

    __str__ = __repr__

    def __copy__(self) -> Keyring:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, object]) -> Keyring:
        return self  # immutable

    def __reduce__(self) -> str | tuple[object, ...]:
        # Refuse pickling: it would write key material wherever the pickle goes.
        raise TypeError("Keyring cannot be pickled")
