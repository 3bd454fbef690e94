"""What storage adapters need from the encryption layer to keep token material sealed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import cattrs

from adapters.codec import pending_from_doc, pending_to_doc
from connector_core.errors import CryptoError
from connector_core.ports.oauth_state import PendingAuthorization
from connector_core.tokens import TokenRecord, TokenSummary


class Sealer(Protocol):
    def seal(self, plaintext: bytes, *, path: str) -> str:
        """Encrypt, binding the ciphertext to ``path``."""
        ...

    def open(self, envelope: str, *, path: str) -> bytes:
        """Decrypt; :class:`CryptoError` when tampered, moved to another path or keyless."""
        ...

    def needs_rewrap(self, envelope: str) -> bool:
        """Whether ``envelope`` is sealed with another key than the primary (or the old format)."""
        ...

    def key_id_of(self, envelope: str) -> str | None:
        """The key id ``envelope`` is sealed with; None for the old format."""
        ...

    def rewrap(self, envelope: str, *, path: str) -> str:
        """The same plaintext sealed again with the primary key."""
        ...


#: what a census calls a value in the old service's format
LEGACY = "legacy"
#: what a census calls a value in neither format (not sealed by us, or damaged): no rotation
#: can re-encrypt it, so it never counts as under an older key
UNREADABLE = "unreadable"
#: the stores of sealed values a storage backend keeps
TOKENS, OAUTH_STATES = "tokens", "oauthStates"
Census = dict[str, dict[str, int]]
Advance = Callable[[int], None]
#: told the path of each value that cannot be decrypted (damaged, or under a key no longer held)
Damaged = Callable[[str], None]


def rewrap_or_report(sealer: Sealer, old: str, path: str, damaged: Damaged | None) -> str | None:
    """``old`` sealed again with the primary key; None when it needs no rewrap, or when it
    cannot be decrypted and ``damaged`` is given (told ``path``; the value is left as it is).
    Without ``damaged`` such a value raises :class:`CryptoError` naming ``path``."""
    try:
        return sealer.rewrap(old, path=path) if sealer.needs_rewrap(old) else None
    except CryptoError as exc:
        report(path, exc.metadata, damaged)
        return None


def report(path: str, metadata: Mapping[str, Any], damaged: Damaged | None) -> None:
    """Tell ``damaged`` that the value at ``path`` is left as it is; without ``damaged``, raise
    :class:`CryptoError` naming ``path`` and the ``reason`` of ``metadata``."""
    if damaged is None:
        raise CryptoError(
            f"cannot re-encrypt the value at {path!r}: {metadata.get('reason')}", metadata={**metadata, "path": path}
        ) from None
    damaged(path)


class SealedValues(Protocol):
    """The sealed values of a storage backend (token material, pending OAuth states), for key
    rotation."""

    async def census(self) -> Census:
        """How many sealed values each store holds under each key id (``legacy``: old format)."""
        ...

    async def reseal(self, advance: Advance | None = None, damaged: Damaged | None = None) -> int:
        """Re-encrypt with the primary key every sealed value that is under another key, each
        with a compare-and-swap on the value read (a value changed meanwhile was sealed by its
        writer, with the primary key it knew; a later pass sees it). Never changes a record's
        version, so a writer holding it is not refused. ``advance(1)`` per value looked at that
        needed it; returns how many were rewritten. Safe to repeat (resumable after a crash).
        A value that cannot be decrypted is left as it is and its path told to ``damaged`` (the
        others are still re-encrypted); without ``damaged`` it raises :class:`CryptoError`.
        Token material comes out naming its org and connector too (:mod:`adapters.token_binding`):
        a record that does not agree with itself on them is left and told to ``damaged`` alike."""
        ...

    async def token_bindings(self) -> dict[str, int]:
        """How many token records' material names its org and connector, names neither (sealed
        before it did) or cannot be opened (:mod:`adapters.token_binding`)."""
        ...


class NothingSealed:
    """A storage that keeps nothing at rest (in memory): nothing to re-encrypt."""

    async def census(self) -> Census:
        return {}

    async def token_bindings(self) -> dict[str, int]:
        return {}

    async def reseal(self, advance: Advance | None = None, damaged: Damaged | None = None) -> int:
        return 0


def key_label(sealer: Sealer, envelope: object) -> str:
    """The key id sealing ``envelope``, :data:`LEGACY` or :data:`UNREADABLE`."""
    if not isinstance(envelope, str):
        return UNREADABLE
    key_id = sealer.key_id_of(envelope)
    if key_id is not None:
        return key_id
    try:
        sealer.needs_rewrap(envelope)  # True for the old format; raises for anything else
    except CryptoError:
        return UNREADABLE
    return LEGACY


def count(census: Census, store: str, labels: Iterable[str]) -> None:
    for label in labels:
        census.setdefault(store, {}).setdefault(label, 0)
        census[store][label] += 1


#: the secret half of a token record; everything else stays queryable
TOKEN_SECRET_FIELDS = ("access_token", "refresh_token", "id_token")


def token_path(token_id: str) -> str:
    return f"/tokens/{token_id}"


def state_path(state_hash: str) -> str:
    return f"/oauth-state/{state_hash}"


#: what the sealed material of a token also holds, so that it opens only for its own org and
#: connector: the path (the AAD) binds it to its record id alone, and the org and connector are
#: columns anyone with write access to the store could change, handing one org's tokens to another
TOKEN_BINDING = ("org_id", "connector_key")


class MisplacedMaterial(ValueError):
    """A token's sealed material was sealed for another org or connector than its record says."""


def seal_token_record(conv: cattrs.Converter, sealer: Sealer, record: TokenRecord) -> tuple[dict[str, Any], str]:
    """(metadata document without ``version``, sealed material) for one token record."""
    meta: dict[str, Any] = conv.unstructure(record)
    meta.pop("version", None)
    tokens = meta.pop("tokens")
    material = {k: tokens.pop(k) for k in TOKEN_SECRET_FIELDS} | {k: meta[k] for k in TOKEN_BINDING}
    meta["tokens"] = tokens
    return meta, sealer.seal(json.dumps(material).encode(), path=token_path(record.id))


def open_token_record(
    conv: cattrs.Converter, sealer: Sealer, token_id: str, meta: Mapping[str, Any], sealed: str, version: int
) -> TokenRecord:
    """The record; :class:`MisplacedMaterial` when its material was sealed for another org or
    connector (material sealed before it held them opens as before, until the record is next
    saved: every refresh saves it)."""
    doc = dict(meta)
    secret = json.loads(sealer.open(sealed, path=token_path(token_id)))
    for name in TOKEN_BINDING:
        if name in secret and secret.pop(name) != doc.get(name):
            raise MisplacedMaterial(f"the token's sealed material was sealed for another {name}")
    doc["tokens"] = {**doc["tokens"], **secret}
    record = conv.structure(doc, TokenRecord)
    record.version = version
    return record


def token_summary(conv: cattrs.Converter, meta: Mapping[str, Any]) -> TokenSummary:
    """What the metadata says about a token, its material left sealed (lists decrypt nothing)."""
    doc = dict(meta)
    doc["tokens"] = {**doc["tokens"], "access_token": "", "refresh_token": None, "id_token": None}
    return conv.structure(doc, TokenRecord).summary()


def seal_pending(conv: cattrs.Converter, sealer: Sealer, pending: PendingAuthorization) -> str:
    doc = json.dumps(pending_to_doc(conv, pending)).encode()
    return sealer.seal(doc, path=state_path(pending.state_hash))


def open_pending(conv: cattrs.Converter, sealer: Sealer, state_hash: str, sealed: str) -> PendingAuthorization:
    return pending_from_doc(conv, json.loads(sealer.open(sealed, path=state_path(state_hash))))
