"""One-time sign-in links for the console, printed by ``connector-manager admin-url``.

The link carries 256 random bits; only their SHA-256 is stored, with the identity it signs in
and its end, in the secret store (encrypted, like everything there) under
:data:`LINKS_PREFIX`. Redeeming deletes the record with a compare-and-swap on the revision
read, so a link works once even when two processes (or two clicks) redeem it at the same time,
and an expired one is deleted by the attempt. Issuing a link deletes the expired ones on the
way, and any that cannot be decrypted (damaged, or under a key no longer held) with them: one
bad record never stops new links.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Mapping

from adapters.crypto import EncryptedKeyValueStore
from adapters.sealing import LEGACY, UNREADABLE, key_label
from connector_core.errors import Conflict, CryptoError
from connector_core.ports.iam import Principal
from connector_core.ports.kv_store import KeyValueStore, Versioned

log = logging.getLogger("connector_manager.console")

LINKS_PREFIX = "/services/connectorManager/console/signInLinks/"
#: a printed link must be used within this many seconds by default
DEFAULT_LINK_SECONDS = 300
MAX_LINK_SECONDS = 3600
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


def _key(token: str) -> str:
    return LINKS_PREFIX + hashlib.sha256(token.encode("ascii")).hexdigest()


def link_path(token: str) -> str:
    return f"/admin/link/{token}"


async def issue_link(
    store: KeyValueStore, *, org_id: str, user_id: str, email: str | None, now: int, ttl: int = DEFAULT_LINK_SECONDS
) -> str:
    """Store a new link for this admin identity; returns its token (shown once, never stored).
    Expired links left unused are deleted on the way."""
    if not 0 < ttl <= MAX_LINK_SECONDS:
        raise ValueError(f"a sign-in link lives 1 to {MAX_LINK_SECONDS} seconds")
    await _forget_expired(store, now)
    token = secrets.token_urlsafe(32)
    claims = {"userId": user_id, "orgId": org_id, "isAdmin": True, **({"email": email} if email else {})}
    record = {"claims": claims, "expiresAt": now + ttl}
    await store.put(_key(token), json.dumps(record, sort_keys=True), expected_revision=0)
    return token


async def redeem_link(store: KeyValueStore, token: str, now: int) -> Principal | None:
    """The identity of a link that exists, was not used and has not expired — and the link is
    spent; else None."""
    if not _TOKEN.match(token):
        return None
    key = _key(token)
    found = await store.get(key)
    if found is None:
        return None
    try:
        if not await store.delete(key, expected_revision=found.revision):
            return None
    except Conflict:  # redeemed meanwhile by someone else
        return None
    record = json.loads(found.value)
    if not isinstance(record, dict) or not isinstance(record.get("expiresAt"), int) or record["expiresAt"] <= now:
        return None
    claims = record.get("claims")
    if not isinstance(claims, dict):
        return None
    user, org, email = claims.get("userId"), claims.get("orgId"), claims.get("email")
    if not (isinstance(user, str) and user and isinstance(org, str) and org):
        return None
    return Principal(user_id=user, org_id=org, email=email if isinstance(email, str) else None, claims=claims)


async def _readable_links(store: KeyValueStore) -> Mapping[str, Versioned]:
    """The stored links, each decrypted alone. One that cannot be is deleted (as expired) and its
    path (never its value) logged, when it is damaged: in no envelope format, or under a key
    this process holds. One under a key this process does not hold is left alone: during a key
    rotation another process may already seal with a new key, and its links are valid."""
    raw = store.inner if isinstance(store, EncryptedKeyValueStore) else store
    readable: dict[str, Versioned] = {}
    for key, stored in (await raw.list_prefix(LINKS_PREFIX)).items():
        try:
            found = await store.get(key)
        except CryptoError:
            if isinstance(store, EncryptedKeyValueStore) and _sealed_by_another(store, stored.value):
                continue  # not ours to judge: a process holding that key reads it
            log.warning(
                "the console sign-in link at %s cannot be decrypted (damaged): deleted as expired",
                key,
                extra={"path": key},
            )
            with contextlib.suppress(Conflict):  # redeemed or deleted meanwhile
                await store.delete(key, expected_revision=stored.revision)
            continue
        if found is not None:
            readable[key] = found
    return readable


def _sealed_by_another(store: EncryptedKeyValueStore, envelope: str) -> bool:
    """Whether ``envelope`` names a key this process does not hold."""
    label = key_label(store.aead, envelope)
    return label not in (UNREADABLE, LEGACY) and label not in store.aead.keyring


async def _forget_expired(store: KeyValueStore, now: int) -> None:
    try:
        links = await store.list_prefix(LINKS_PREFIX)
    except CryptoError:  # one at least cannot be decrypted: look at them one by one
        links = await _readable_links(store)
    for key, found in links.items():
        try:
            expired = json.loads(found.value).get("expiresAt", 0) <= now
        except (ValueError, AttributeError, TypeError):
            expired = True
        if expired:
            try:
                await store.delete(key, expected_revision=found.revision)
            except Conflict:
                pass  # redeemed or deleted meanwhile
