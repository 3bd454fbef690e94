"""Binding a token's sealed material to its org and connector when key rotation seals it again.

Material sealed before 2026-12-04 names neither its org nor its connector (:data:`RECORD_ID_ONLY`:
the associated data binds it to its record id alone), so it opens for whatever org its record
says. Saving the record binds it (:func:`adapters.sealing.seal_token_record`); a record that is
never saved again (a paused connector, one waiting for re-authorization) would stay unbound, so
:func:`reseal_token`, which rotation runs on every token record, binds it then.

Only a record that agrees with itself is bound: its columns (by which it is found), its metadata
(which its material is checked against when opened) and, where the material names them already,
its material must name the same org and connector. A record that does not was changed by
something else than connector-manager (moved to another org by someone who can write to the
store): binding it would hand its tokens to that org for good, so it is left as it is and told to
``damaged``, as material that does not decrypt is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from attrs import field, frozen

from adapters.sealing import TOKEN_BINDING, UNREADABLE, Damaged, Sealer, report, token_path
from connector_core.errors import CryptoError

#: what :func:`binding_of` calls material that names its org and connector
ORG_AND_CONNECTOR = "orgAndConnector"
#: what :func:`binding_of` calls material that names neither (sealed before 2026-12-04)
RECORD_ID_ONLY = "recordIdOnly"


@frozen
class StoredToken:
    """A token record as stored: its id, the org and connector its columns (or fields) say, its
    metadata (a document, or its JSON text) and its sealed material."""

    id: str
    columns: tuple[object, object]
    meta: object
    material: object = field(repr=False)


def _secret(sealer: Sealer, token_id: str, material: str) -> tuple[bytes, dict[str, Any]]:
    """The material's plaintext and what it holds; :class:`CryptoError` when it does not open,
    :class:`ValueError` when what it holds is no token material."""
    plaintext = sealer.open(material, path=token_path(token_id))
    secret = json.loads(plaintext)
    if not isinstance(secret, dict):
        raise ValueError("token material is no JSON object")
    return plaintext, secret


def binding_of(sealer: Sealer, token: StoredToken) -> str:
    """:data:`ORG_AND_CONNECTOR`, :data:`RECORD_ID_ONLY`, or :data:`~adapters.sealing.UNREADABLE`
    when the material does not open (its binding cannot be known)."""
    if not isinstance(token.material, str):
        return UNREADABLE
    try:
        _, secret = _secret(sealer, token.id, token.material)
    except (CryptoError, ValueError):
        return UNREADABLE
    return ORG_AND_CONNECTOR if all(name in secret for name in TOKEN_BINDING) else RECORD_ID_ONLY


def bindings(sealer: Sealer, tokens: Iterable[StoredToken]) -> dict[str, int]:
    """How many of ``tokens`` each :func:`binding_of` label holds."""
    found: dict[str, int] = {}
    for token in tokens:
        label = binding_of(sealer, token)
        found[label] = found.get(label, 0) + 1
    return found


def _names_in_meta(meta: object) -> tuple[object, ...] | None:
    try:
        doc = json.loads(meta) if isinstance(meta, str | bytes) else meta
    except ValueError:
        return None
    return tuple(doc.get(name) for name in TOKEN_BINDING) if isinstance(doc, Mapping) else None


def _disagreement(token: StoredToken, secret: Mapping[str, Any]) -> str | None:
    """Why ``token`` does not agree with itself on its org and connector; None when it does."""
    named = _names_in_meta(token.meta)
    if named is None or not all(isinstance(name, str) for name in named):
        return "its metadata names no org and connector"
    if tuple(token.columns) != named:
        return "its columns and its metadata name different orgs or connectors"
    if any(name in secret and secret[name] != value for name, value in zip(TOKEN_BINDING, named, strict=True)):
        return "its material was sealed for another org or connector than its record names"
    return None


def reseal_token(sealer: Sealer, token: StoredToken, damaged: Damaged | None) -> str | None:
    """``token``'s material sealed again with the primary key and naming the org and connector
    its record names; None when it is so already, or when it is left as it is:

    - material under the primary key that does not open is left alone (as key rotation leaves
      it: it needs no re-encryption, and its binding cannot be known);
    - material that needs re-encrypting but does not open (or holds no token material), and a
      record to bind or re-encrypt that does not agree with itself (module docstring), is told
      to ``damaged`` by its path; without ``damaged`` it raises :class:`CryptoError` naming the
      path."""
    path = token_path(token.id)
    material = token.material
    if not isinstance(material, str):
        report(path, {"reason": "not an encrypted envelope"}, damaged)
        return None
    try:
        stale = sealer.needs_rewrap(material)
    except CryptoError as exc:  # in no encrypted format: as for any other sealed value
        report(path, exc.metadata, damaged)
        return None
    try:
        plaintext, secret = _secret(sealer, token.id, material)
    except CryptoError as exc:
        if stale:
            report(path, exc.metadata, damaged)
        return None
    except ValueError:
        if stale:
            report(path, {"reason": "it holds no token material"}, damaged)
        return None
    bound = all(name in secret for name in TOKEN_BINDING)
    if not stale and bound:
        return None
    why = _disagreement(token, secret)
    if why is not None:
        report(path, {"reason": why}, damaged)
        return None
    if not bound:
        plaintext = json.dumps(secret | dict(zip(TOKEN_BINDING, token.columns, strict=True))).encode()
    return sealer.seal(plaintext, path=path)
