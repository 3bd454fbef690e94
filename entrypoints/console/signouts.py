"""Signing out ends every console session of the user, not only the cookie of the browser
that signed out: a copied cookie would otherwise stay valid until it ends (up to 8 hours).

Each user (org and user id) has a sign-out generation in the secret store, under
:data:`SIGN_OUTS_PREFIX` (0 when there is no record), named by an HMAC of org and user keyed
with the cookie secret: whoever can list the store's keys cannot tell whose they are, nor
confirm that a known user signed out. A session carries the generation it was
signed in with; signing out raises the user's generation by one, and a session whose
generation is lower is no session. A counter rather than a time: several processes need not
agree on a clock, and a sign-in in the second of a sign-out is not refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from connector_core.errors import Conflict
from connector_core.ports.kv_store import KeyValueStore, Versioned

SIGN_OUTS_PREFIX = "/services/connectorManager/console/signOutCounts/"
_CONTEXT = b"connector-manager console sign-outs v1\x00"


def _key(secret: str, org_id: str, user_id: str) -> str:
    """The record's name: keyed (``secret`` is the cookie secret), so a session cookie and its
    user's record change together when that secret does."""
    name = f"{org_id}\x00{user_id}".encode()
    return SIGN_OUTS_PREFIX + hmac.new(secret.encode("utf-8"), _CONTEXT + name, hashlib.sha256).hexdigest()


def _generation(found: Versioned | None) -> int:
    if found is None:
        return 0
    try:
        value = json.loads(found.value).get("generation")
    except (ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def generation(store: KeyValueStore, secret: str, org_id: str, user_id: str) -> int:
    """The user's sign-out generation: a session signed in with a lower one has ended."""
    return _generation(await store.get(_key(secret, org_id, user_id)))


async def end_sessions(store: KeyValueStore, secret: str, org_id: str, user_id: str) -> None:
    """End every session of the user signed in so far (their generation goes up by one)."""
    key = _key(secret, org_id, user_id)
    found = await store.get(key)
    record = json.dumps({"generation": _generation(found) + 1})
    try:
        await store.put(key, record, expected_revision=found.revision if found is not None else 0)
    except Conflict:
        pass  # another sign-out raised it meanwhile, past every session signed in before
