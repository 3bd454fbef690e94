"""Signing out ends every console session of the user, not only the cookie of the browser
that signed out: a copied cookie would otherwise stay valid until it ends (up to 8 hours).

Each user (org and user id) has a sign-out generation in the secret store, under
:data:`SIGN_OUTS_PREFIX` (0 when there is no record). A session carries the generation it was
signed in with; signing out raises the user's generation by one, and a session whose
generation is lower is no session. A counter rather than a time: several processes need not
agree on a clock, and a sign-in in the second of a sign-out is not refused.
"""

from __future__ import annotations

import hashlib
import json

from connector_core.errors import Conflict
from connector_core.ports.kv_store import KeyValueStore, Versioned

SIGN_OUTS_PREFIX = "/services/connectorManager/console/signOuts/"


def _key(org_id: str, user_id: str) -> str:
    return SIGN_OUTS_PREFIX + hashlib.sha256(f"{org_id}\x00{user_id}".encode()).hexdigest()


def _generation(found: Versioned | None) -> int:
    if found is None:
        return 0
    try:
        value = json.loads(found.value).get("generation")
    except (ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def generation(store: KeyValueStore, org_id: str, user_id: str) -> int:
    """The user's sign-out generation: a session signed in with a lower one has ended."""
    return _generation(await store.get(_key(org_id, user_id)))


async def end_sessions(store: KeyValueStore, org_id: str, user_id: str) -> None:
    """End every session of the user signed in so far (their generation goes up by one)."""
    key = _key(org_id, user_id)
    found = await store.get(key)
    record = json.dumps({"generation": _generation(found) + 1})
    try:
        await store.put(key, record, expected_revision=found.revision if found is not None else 0)
    except Conflict:
        pass  # another sign-out raised it meanwhile, past every session signed in before
