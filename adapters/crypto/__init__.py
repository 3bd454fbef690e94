"""Mandatory encryption at rest: keyring, AES-256-GCM envelopes, encrypting key-value store."""

from __future__ import annotations

from adapters.crypto.aead import (
    AAD_PREFIX,
    ENVELOPE_VERSION,
    Aead,
    associated_data,
    is_legacy,
)
from adapters.crypto.encrypted_store import EncryptedKeyValueStore
from adapters.crypto.key_file import KeyFile, KeyringSource
from adapters.crypto.keyring import HKDF_INFO, KEY_SIZE, Keyring

__all__ = [
    "AAD_PREFIX",
    "ENVELOPE_VERSION",
    "HKDF_INFO",
    "KEY_SIZE",
    "Aead",
    "EncryptedKeyValueStore",
    "KeyFile",
    "Keyring",
    "KeyringSource",
    "associated_data",
    "is_legacy",
]
